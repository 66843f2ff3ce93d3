import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// `--max-memory` on `braid run --image`: the same one-line error as `run --input`, `bench`
/// and `finetune`, before any image is read; a limit with room runs.
extension RobustnessTests {
    /// The tiny MLP with a 3-class `probabilities` output and the ensemble metadata that
    /// `--image` needs (1 x 8 x 8 gray images).
    func writeTinyEnsemble(to path: String) throws {
        var (m, axis, transB) = tinyModelSkeleton(name: "tiny-ensemble", input: "image", output: "probabilities")
        let w = Tensor(shape: [3, 64], floats: (0..<192).map { Float($0 % 7) / 700 })
        m.graph.initializers = [ONNXTensorProto(w, name: "w"), ONNXTensorProto(Tensor(shape: [3], floats: [0, 0.1, 0.2]), name: "b")]
        m.graph.nodes = [
            ONNXNodeProto(name: "flat", opType: "Flatten", domain: "", inputs: ["image"], outputs: ["f"], attributes: [axis]),
            ONNXNodeProto(name: "fc", opType: "Gemm", domain: "", inputs: ["f", "w", "b"], outputs: ["z"], attributes: [transB]),
            ONNXNodeProto(name: "sm", opType: "Softmax", domain: "", inputs: ["z"], outputs: ["probabilities"], attributes: [axis]),
        ]
        m.metadataProps = [("classes", "[\"a\",\"b\",\"c\"]"), ("input_range", "0..255"), ("input_layout", "NCHW"),
                           ("input_channels", "1"), ("input_height", "8"), ("input_width", "8")]
        try Data(m.serialized()).write(to: URL(fileURLWithPath: path))
    }

    func testMaxMemoryCoversImageRuns() throws {
        let dir = try tempDir()
        try writeTinyEnsemble(to: dir + "/tiny.onnx")
        try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
        for i in 0..<5 {
            let image = Tensor(shape: [1, 8, 8], floats: (0..<64).map { Float(($0 * (i + 3)) % 256) })
            try Npy.write(image, path: dir + "/images/\(i).npy")
        }
        let args = ["run", dir + "/tiny.onnx", "--image", dir + "/images", "--batch", "2"]
        let refused = try braid(args + ["--max-memory", "2K"])
        XCTAssertEqual(refused.status, 1, refused.err)
        XCTAssertEqual(refused.err.split(separator: "\n").count, 1, refused.err)
        XCTAssertTrue(refused.err.contains("braid: error: needs ") && refused.err.contains("more than the memory limit of 2.0 KiB"), refused.err)
        XCTAssertTrue(refused.err.contains("[2, 1, 8, 8] and [1, 1, 8, 8]"), refused.err)
        XCTAssertEqual(refused.out, "", "nothing classified before the check")
        let ok = try braid(args + ["--max-memory", "64M"])
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertEqual(ok.out.split(separator: "\n").count, 5, ok.out)
    }
}
