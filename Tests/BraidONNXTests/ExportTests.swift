import BraidGraph
@testable import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// The exporter's file-level behaviour: errors, deduplication, float16 weights, external
/// data, atomic writes, metadata and declared shapes.
final class ExportTests: XCTestCase {
    /// y = relu(x @ w1) @ w2 with `x` [N, 4]; w1 and w2 are 4x4 and (when `same`) identical.
    private func mlp(same: Bool = true, size: Int = 4) -> Graph {
        var b = IRBuilder()
        let w1 = b.weight("w1", [size, size])
        let w2 = b.weight("w2", [size, size])
        if same { b.initializers[w2] = b.initializers[w1]!.copy() }
        let h = b.add(.matMul, ["x", w1], "mm1")
        let r = b.add(.unary(.relu), [h], "relu")
        b.outputs = [b.add(.matMul, [r, w2], "mm2")]
        return b.graph([ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(size)])])
    }

    private func errorText(_ body: () throws -> Any) -> String {
        do { _ = try body(); return "(no error)" } catch { return String(describing: error) }
    }

    func testOpsetOutsideTheWrittenRangeIsRefused() {
        for opset in [12, 22] {
            let e = errorText { try exportONNXBytes(self.mlp(), opset: opset) }
            XCTAssertTrue(e.contains("opset \(opset)") && e.contains("13...21"), e)
        }
    }

    func testTrainingOpsAreRefusedNamingNodeOpAndOpset() throws {
        var b = IRBuilder()
        b.outputs = [b.add(.batchNormTraining(epsilon: 1e-5, momentum: 0.1),
                           ["x", b.weight("s", [2]), b.weight("b", [2]), b.weight("m", [2]), b.weight("v", [2], positive: true)],
                           "bn_train", count: 3)]
        let g = b.graph([ValueDecl(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(2), .fixed(3)])])
        let e = errorText { try exportONNXBytes(g, opset: 15) }
        XCTAssertTrue(e.contains("'bn_train'") && e.contains("batchNormTraining") && e.contains("opset 15")
                      && e.contains("inference"), e)

        // A failed export leaves no file and no temporary behind.
        let dir = try temporaryDirectory(self)
        XCTAssertThrowsError(try exportONNX(g, to: "\(dir)/m.onnx"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    func testFormsAnOpsetCannotExpressAreRefused() throws {
        var b = IRBuilder()
        b.outputs = [b.add(.pad(mode: .wrap), ["x", b.ints("pads", [0, 1, 0, 1])], "wrap_pad")]
        let g = b.graph([ValueDecl(name: "x", dtype: .float32, shape: [.fixed(2), .fixed(3)])])
        let e = errorText { try exportONNXBytes(g, opset: 18) }
        XCTAssertTrue(e.contains("'wrap_pad'") && e.contains("opset 18") && e.contains("needs opset 19"), e)
        XCTAssertNoThrow(try exportONNXBytes(g, opset: 19))

        // Axes only known at run time cannot become ReduceMean 13's attribute.
        var r = IRBuilder()
        r.outputs = [r.add(.reduce(.mean, axes: nil, keepDims: true, noopWithEmptyAxes: false), ["x", "axes"], "mean")]
        let rg = r.graph([ValueDecl(name: "x", dtype: .float32, shape: [.fixed(2), .fixed(3)]),
                          ValueDecl(name: "axes", dtype: .int64, shape: [.fixed(1)])])
        let re = errorText { try exportONNXBytes(rg, opset: 13) }
        XCTAssertTrue(re.contains("'mean'") && re.contains("needs opset 18"), re)
        XCTAssertNoThrow(try exportONNXBytes(rg, opset: 18))

        // allowzero needs Reshape 14 unless the target shape has no zero.
        var z = IRBuilder()
        z.outputs = [z.add(.reshape(allowZero: true), ["x", z.ints("shape", [3, 0])], "reshape0")]
        let zg = z.graph([ValueDecl(name: "x", dtype: .float32, shape: [.fixed(0), .fixed(3)])])
        XCTAssertTrue(errorText { try exportONNXBytes(zg, opset: 13) }.contains("needs opset 14"))
        let at14 = try ONNXExporter(opset: 14).model(zg)
        XCTAssertEqual(at14.graph.nodes[0].attributes.first { $0.name == "allowzero" }?.i, 1)
    }

    func testIdenticalInitializersAreWrittenOnce() throws {
        let g = mlp(same: true)
        let m = try ONNXExporter().model(g)
        XCTAssertEqual(m.graph.initializers.map(\.name), ["w1"])
        XCTAssertEqual(m.graph.nodes.map { $0.inputs }, [["x", "w1"], ["mm1"], ["relu", "w1"]])
        try assertRoundTrip(g, inputs: [randomTensor([3, 4], seed: 1)], label: "dedup")
        XCTAssertEqual(try ONNXExporter().model(mlp(same: false)).graph.initializers.count, 2)
    }

    func testInputsAndOutputsCarryDimsAndMetadataIsWritten() throws {
        let m = try ONNXExporter(opset: 19, metadata: ["classes": "cat,dog", "braid_version": "0.1.0"],
                                 producerVersion: "0.1.0").model(mlp())
        XCTAssertEqual(m.producerName, "braid")
        XCTAssertEqual(m.producerVersion, "0.1.0")
        XCTAssertEqual(m.irVersion, 9)
        XCTAssertEqual(m.opsetImport.map(\.version), [19])
        XCTAssertEqual(m.metadataProps.map(\.key), ["braid_version", "classes"])
        XCTAssertEqual(m.metadataProps.map(\.value), ["0.1.0", "cat,dog"])
        guard case .tensor(let inType, let inDims) = m.graph.inputs[0].type,
              case .tensor(let outType, let outDims) = m.graph.outputs[0].type else {
            return XCTFail("inputs and outputs must be tensors")
        }
        XCTAssertEqual(inType, ONNXDataType.float.rawValue)
        XCTAssertEqual(inDims, [.param("N"), .value(4)])
        // The output's shape was not declared: planning found it follows N.
        XCTAssertEqual(outType, ONNXDataType.float.rawValue)
        XCTAssertEqual(outDims, [.param("N"), .value(4)])

        // A model that cannot be planned keeps undeclared shapes absent and SAME padding as auto_pad.
        var b = IRBuilder()
        b.outputs = [b.add(.conv(ConvParams(kernel: [3], strides: [2], pads: [], dilations: [1], group: 1, autoPad: .sameLower)),
                           ["x", b.weight("w", [2, 2, 3])], "conv")]
        let g = b.graph([ValueDecl(name: "x", dtype: .float32, shape: nil)])
        let c = try ONNXExporter().model(g)
        XCTAssertEqual(String(decoding: try XCTUnwrap(c.graph.nodes[0].attributes.first { $0.name == "auto_pad" }).s, as: UTF8.self), "SAME_LOWER")
        guard case .tensor(_, let noDims) = c.graph.outputs[0].type else { return XCTFail() }
        XCTAssertNil(noDims)
        try assertRoundTrip(g, inputs: [randomTensor([1, 2, 7], seed: 3)], label: "auto_pad")
    }

    func testFloat16WeightsHalveTheFileAndStayClose() throws {
        let g = mlp(same: false, size: 32)
        let full = try exportONNXBytes(g)
        let half = try exportONNXBytes(g, fp16Weights: true)
        XCTAssertLessThan(Double(half.count), 0.6 * Double(full.count))
        let m = try ONNXExporter(fp16Weights: true).model(g)
        XCTAssertEqual(Set(m.graph.initializers.map(\.dataType)), [ONNXDataType.float16.rawValue])
        XCTAssertEqual(m.graph.nodes.prefix(2).map(\.opType), ["Cast", "Cast"])

        let x = randomTensor([2, 32], seed: 5)
        let want = try runGraph(g, [x])
        let got = try runGraph(try importONNX(bytes: half), [x])
        let worst = worstDifference(got, want)
        XCTAssertGreaterThan(worst, 0, "float16 rounding must show")
        XCTAssertLessThan(worst, 1e-2)
        // Each weight is the float16 nearest to the original (half a unit in the last place).
        let back = try importONNX(bytes: half)
        let w1 = try XCTUnwrap(back.initializers.first { $0.key.hasPrefix("w1") }?.value)
        let original = g.initializers["w1"]!
        for k in 0..<w1.count {
            let o = original.floats[k]
            XCTAssertLessThanOrEqual(abs(w1.floats[k] - o), Float(Float16(o).ulp) / 2 * 1.0001)
        }
        let dir = try temporaryDirectory(self)
        try exportONNX(g, to: "\(dir)/fp16.onnx", fp16Weights: true)
        try Npy.write(x, path: "\(dir)/fp16.in0.npy")
        try Npy.write(try runGraph(back, [x])[0], path: "\(dir)/fp16.out0.npy")
        try assertONNXRuntimeAgrees(dir, expectModels: 1)
    }

    func testExternalDataBesideTheModel() throws {
        let g = mlp(same: false, size: 32)
        let dir = try temporaryDirectory(self)
        let path = "\(dir)/ext.onnx"
        try exportONNX(g, to: path, externalData: true)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["ext.onnx", "ext.onnx.data"])
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: "\(dir)/ext.onnx.data")[.size] as? Int)
        XCTAssertGreaterThanOrEqual(size, 2 * 32 * 32 * 4)
        let onnxSize = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        XCTAssertLessThan(onnxSize, 1024)

        let x = randomTensor([2, 32], seed: 9)
        let back = try importONNX(path: path)
        XCTAssertEqual(worstDifference(try runGraph(back, [x]), try runGraph(g, [x])), 0)
        try Npy.write(x, path: "\(dir)/ext.in0.npy")
        try Npy.write(try runGraph(g, [x])[0], path: "\(dir)/ext.out0.npy")
        try assertONNXRuntimeAgrees(dir, expectModels: 1)
    }

    func testExternalDataIsUsedAutomaticallyPastTheLimit() throws {
        let g = mlp(same: false, size: 32)
        var exporter = ONNXExporter()
        exporter.externalThreshold = 4096  // stands in for protobuf's 2 GB
        let dir = try temporaryDirectory(self)
        try exporter.write(g, to: "\(dir)/big.onnx")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/big.onnx.data"))
        XCTAssertTrue(errorText { try exporter.bytes(g) }.contains("2 GB"))
        let x = randomTensor([1, 32], seed: 2)
        XCTAssertEqual(worstDifference(try runGraph(try importONNX(path: "\(dir)/big.onnx"), [x]), try runGraph(g, [x])), 0)
    }

    /// A constant that is itself a graph output stays a Constant node; one that feeds a node
    /// becomes an initializer.
    func testConstantsBecomeInitializersOrConstantNodes() throws {
        var b = IRBuilder()
        let c = b.add(.constant(Tensor(shape: [2], floats: [1.5, -2])), [], "c")
        let k = b.add(.constant(Tensor(shape: [2], floats: [3, 4])), [], "k")
        b.outputs = [c, b.add(.binary(.mul), ["x", k], "scaled")]
        let g = b.graph([ValueDecl(name: "x", dtype: .float32, shape: [.fixed(2)])])
        let m = try ONNXExporter(opset: 13).model(g)
        XCTAssertEqual(m.graph.nodes.map(\.opType), ["Constant", "Mul"])
        XCTAssertEqual(m.graph.initializers.map(\.name), ["k"])
        let x = Tensor(shape: [2], floats: [0.5, 0.25])
        let back = try assertRoundTrip(g, inputs: [x], opset: 13, label: "constants")
        XCTAssertEqual(try runGraph(back, [x]).map(\.floatArray), [[1.5, -2], [1.5, 1]])
    }

    func testWritingIntoAMissingDirectoryLeavesNothing() throws {
        let dir = try temporaryDirectory(self)
        let e = errorText { try exportONNX(self.mlp(), to: "\(dir)/missing/m.onnx", externalData: true) }
        XCTAssertTrue(e.contains("cannot write"), e)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    /// The checker script is itself checked: a wrong Braid output must fail it.
    func testCheckScriptRejectsOutputsThatDisagree() throws {
        let g = mlp(same: false)
        let dir = try temporaryDirectory(self)
        let x = randomTensor([2, 4], seed: 4)
        try exportONNX(g, to: "\(dir)/wrong.onnx")
        try Npy.write(x, path: "\(dir)/wrong.in0.npy")
        let y = try runGraph(g, [x])[0]
        y.floats[3] += 1e-3
        try Npy.write(y, path: "\(dir)/wrong.out0.npy")
        let (status, report) = try runCheckScript(dir)
        XCTAssertEqual(status, 1, report)
        XCTAssertTrue(report.contains("FAIL wrong.onnx: output mm2: differs by"), report)
    }
}
