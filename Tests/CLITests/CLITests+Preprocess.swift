import BraidONNX
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// Models nobody wrote a manifest entry for: preprocessing and input size from flags,
/// reported by `inspect` and in metrics.json; files traced at batch 1 run at batch 4.
extension CLITests {
    /// ppocr_cls under a name Models/manifest does not know: its input is `[N, 3, H, W]`.
    func unknownClassifier() throws -> String {
        try TestCache.requireFile(ppocr, madeBy: "tools/fetch-models")
        let path = try tempDir() + "/cls.onnx"
        try FileManager.default.copyItem(atPath: ppocr, toPath: path)
        return path
    }

    func testFinetuneNeedsOnlyInputSizeAndRecordsPreprocessing() throws {
        let model = try unknownClassifier()
        let dir = (model as NSString).deletingLastPathComponent
        let data = try TestCache.require("data/digits.csv.gz", madeBy: "tools/fetch-data")
        let base = ["finetune", "--source", model, "--data", data, "--epochs", "1", "--batch", "64", "--method", "linear-probe", "--quiet"]
        try assertFails(base + ["--out", dir + "/none"], mentions: ["cls.onnx", "--input-size", "symbolic spatial dims"])
        try assertFails(base + ["--out", dir + "/bad", "--input-size", "48x96", "--mean", "0.5,0.5"],
                        mentions: ["--mean takes 1 or 3 comma-separated numbers", "0.5,0.5"])
        try assertFails(base + ["--out", dir + "/bad", "--input-size", "48x96", "--preprocess", "other=imagenet"],
                        mentions: ["--preprocess other=imagenet", "no --source named 'other'"])
        let r = try braid(base + ["--out", dir + "/run", "--input-size", "48x96", "--preprocess", "cls=imagenet", "--bgr",
                                  "--std", "0.5"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("preprocessing: BGR NCHW 3x48x96, pixels 0-1, mean [0.485, 0.456, 0.406], std [0.5]"), r.out)
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/metrics.json"))) as? [String: Any]
        let pre = try XCTUnwrap((metrics?["preprocessing"] as? [String: Any])?["cls"] as? [String: Any])
        XCTAssertEqual(pre["channel_order"] as? String, "BGR")
        XCTAssertEqual(pre["range"] as? String, "0-1")
        XCTAssertEqual(pre["mean"] as? [Double], [0.485, 0.456, 0.406])
        XCTAssertEqual(pre["sources"] as? [String: String], ["size": "flag", "layout": "default", "range": "flag", "mean": "flag",
                                                             "std": "flag", "channel_order": "flag"])
    }

    func testInspectSaysWherePreprocessingComesFrom() throws {
        let r = try braid(["inspect", ppocr])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("preprocessing: BGR NCHW 3x48x192, pixels 0-1, mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5] (size: manifest"), r.out)
        let model = try unknownClassifier()
        let none = try braid(["inspect", model])
        XCTAssertTrue(none.out.contains("preprocessing: none ("), none.out)
        XCTAssertTrue(none.out.contains("--input-size"), none.out)
        let j = try braid(["inspect", model, "--input-size", "32x64", "--range", "-1-1", "--json"])
        XCTAssertEqual(j.status, 0, j.err)
        let obj = try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any]
        let pre = try XCTUnwrap(obj?["preprocessing"] as? [String: Any])
        XCTAssertEqual(pre["range"] as? String, "-1-1")
        XCTAssertEqual(pre["height"] as? Int, 32)
        XCTAssertEqual((pre["sources"] as? [String: String])?["range"], "flag")
        XCTAssertEqual((pre["sources"] as? [String: String])?["mean"], "default")
    }

    /// x `[1, 2, 3]` -> Reshape to the constant [1, 6] (`traced`) or ReduceMean over axis 0
    /// (`pinned`), as an exporter that traced at batch 1 writes them.
    func batchOneModel(_ node: ONNXNodeProto, initializers: [ONNXTensorProto] = []) -> [UInt8] {
        var m = ONNXModelProto()
        m.irVersion = 8
        m.opsetImport = [("", 17)]
        m.graph.name = "g"
        m.graph.inputs = [ONNXValueInfoProto(name: "x", type: .tensor(elemType: ONNXDataType.float.rawValue,
                                                                      shape: [.value(1), .value(2), .value(3)]))]
        m.graph.outputs = [ONNXValueInfoProto(name: "y", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: nil))]
        m.graph.initializers = initializers
        m.graph.nodes = [node]
        return m.serialized()
    }

    func testRunGeneralisesABatchOfOne() throws {
        let dir = try tempDir()
        let traced = batchOneModel(ONNXNodeProto(name: "node_view", opType: "Reshape", domain: "", inputs: ["x", "shape"],
                                                 outputs: ["y"], attributes: []),
                                   initializers: [ONNXTensorProto(Tensor(shape: [2], ints: [1, 6]), name: "shape")])
        try Data(traced).write(to: URL(fileURLWithPath: dir + "/traced.onnx"))
        let x = Tensor(shape: [4, 2, 3], floats: (0..<24).map(Float.init))
        try Npy.write(x, path: dir + "/x4.npy")
        let r = try braid(["run", dir + "/traced.onnx", "--input", dir + "/x4.npy", "--output", dir + "/y.npy"])
        XCTAssertEqual(r.status, 0, r.err)
        let y = try Npy.read(path: dir + "/y.npy")
        XCTAssertEqual(y.shape, [4, 6])
        XCTAssertEqual(y.floatArray, x.floatArray)
        let pinned = batchOneModel(ONNXNodeProto(name: "node_mean", opType: "ReduceMean", domain: "", inputs: ["x"], outputs: ["y"],
                                                 attributes: [.ints("axes", [0])]))
        try Data(pinned).write(to: URL(fileURLWithPath: dir + "/pinned.onnx"))
        try assertFails(["run", dir + "/pinned.onnx", "--input", dir + "/x4.npy", "--output", dir + "/z.npy"],
                        mentions: ["node_mean", "reduces over the batch axis", "dynamic_shapes", "dynamic_axes"])
    }

    /// `run --image` on a plain classifier: x `[1, 3, 2, 2]` -> ReduceMean over H and W, so the
    /// scores are the prepared channel means; two images in one batch of a file traced at 1.
    func testRunImageOnAPlainClassifier() throws {
        let dir = try tempDir()
        var m = floatModel("g", input: [.value(1), .value(3), .value(2), .value(2)])
        m.graph.nodes = [ONNXNodeProto(name: "mean", opType: "ReduceMean", domain: "", inputs: ["x"], outputs: ["y"],
                                       attributes: [.ints("axes", [2, 3]), .int("keepdims", 0)])]
        try Data(m.serialized()).write(to: URL(fileURLWithPath: dir + "/means.onnx"))
        try FileManager.default.createDirectory(atPath: dir + "/imgs", withIntermediateDirectories: true)
        try Npy.write(Tensor(shape: [3, 2, 2], floats: [10, 10, 10, 10, 20, 20, 20, 20, 30, 30, 30, 30]), path: dir + "/imgs/a.npy")
        try Npy.write(Tensor(shape: [3, 2, 2], floats: [30, 30, 30, 30, 20, 20, 20, 20, 10, 10, 10, 10]), path: dir + "/imgs/b.npy")
        try assertFails(["run", dir + "/means.onnx", "--image", dir + "/imgs", "--layout", "nchw"],
                        mentions: ["means.onnx", "--preprocess"])
        let none = try braid(["run", dir + "/means.onnx", "--image", dir + "/imgs", "--preprocess", "none", "--top", "1", "--json"])
        XCTAssertEqual(none.status, 0, none.err)
        let obj = try JSONSerialization.jsonObject(with: Data(none.out.utf8)) as? [String: Any]
        let tops = (obj?["results"] as? [[String: Any]])?.map { (($0["top"] as? [[String: Any]])?.first?["class"] as? Int) }
        XCTAssertEqual(tops, [2, 0], none.out)
        // Caffe: BGR, minus the BGR means: image a becomes (30 - 103.9, 20 - 116.8, 10 - 123.7).
        let caffe = try braid(["run", dir + "/means.onnx", "--image", dir + "/imgs/a.npy", "--preprocess", "caffe", "--top", "3"])
        XCTAssertEqual(caffe.status, 0, caffe.err)
        XCTAssertTrue(caffe.out.contains("a.npy: class 0 "), caffe.out)
        XCTAssertTrue(caffe.err.contains("preprocessing: BGR NCHW 3x2x2, pixels 0-255"), caffe.err)
    }
}
