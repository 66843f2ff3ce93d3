import BraidONNX
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// `braid convert --check`: the source and the converted file on the same random inputs, each
/// output's worst difference relative to its scale printed, exit 0 within 1e-3.
extension CLITests {
    /// ResNet's stem pooling (explicit pads, written to Keras as a padding operation and a
    /// `valid` MaxPooling2D) converted to `.keras` and to ONNX at opset 13, each checked.
    func testConvertCheckReportsTheWorstRelativeError() throws {
        let dir = try tempDir()
        var m = floatModel("stem", input: [.param("N"), .value(2), .value(9), .value(9)])
        var kernel = ONNXAttributeProto(name: "kernel_shape", type: .ints)
        kernel.ints = [3, 3]
        var strides = ONNXAttributeProto(name: "strides", type: .ints)
        strides.ints = [2, 2]
        var pads = ONNXAttributeProto(name: "pads", type: .ints)
        pads.ints = [1, 1, 1, 1]
        m.graph.nodes = [ONNXNodeProto(name: "erf", opType: "Erf", domain: "", inputs: ["x"], outputs: ["e"], attributes: []),
                         ONNXNodeProto(name: "pool", opType: "MaxPool", domain: "", inputs: ["e"], outputs: ["y"],
                                       attributes: [kernel, strides, pads])]
        try Data(m.serialized()).write(to: URL(fileURLWithPath: dir + "/stem.onnx"))
        for (out, extra) in [("stem.keras", [String]()), ("stem13.onnx", ["--opset", "13"])] {
            let r = try braid(["convert", dir + "/stem.onnx", dir + "/" + out, "--check"] + extra)
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertTrue(r.out.contains("check: converted model run by Braid"), r.out)
            XCTAssertTrue(r.out.contains("check: output 'y' [2, 2, 5, 5]: worst difference"), r.out)
        }
    }
}

extension CLITests {
    /// An empty opset-17 model with float input `x` of `shape` and output `y` (nodes to add).
    func floatModel(_ name: String, input shape: [ONNXDim]) -> ONNXModelProto {
        var m = ONNXModelProto()
        m.irVersion = 8
        m.opsetImport = [("", 17)]
        m.graph.name = name
        m.graph.inputs = [ONNXValueInfoProto(name: "x", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: shape))]
        m.graph.outputs = [ONNXValueInfoProto(name: "y", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: nil))]
        return m
    }
}
