import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// torchvision classifiers exported by both torch exporters (tools/make-import-zoo torch,
/// random seeded weights) against onnxruntime's outputs on the same input: the largest
/// difference must be within 1e-4 of the output's scale (its largest magnitude). Each runs
/// after the execution passes, as `braid run` runs it.
final class TorchvisionZooTests: XCTestCase {
    func check(_ name: String) throws {
        let dir = RealModelTests.cache.appendingPathComponent("import-zoo")
        let model = dir.appendingPathComponent("\(name).onnx").path
        guard FileManager.default.fileExists(atPath: model) else {
            XCTFail("\(model) missing: run tools/make-import-zoo torch")
            return
        }
        // As `braid run` executes it: inference passes, then the fusions.
        let graph = try Passes.optimizeForExecution(try importONNX(path: model))
        let input = try Npy.read(path: dir.appendingPathComponent("\(name).in0.npy").path)
        let expected = try Npy.read(path: dir.appendingPathComponent("\(name).out0.npy").path)
        let executor = Executor(graph: graph)
        executor.poisonBuffers = true
        let outputs = try executor.run([graph.feedInputs[0].name: input])
        let got = try XCTUnwrap(outputs[graph.outputs[0].name])
        XCTAssertEqual(got.shape, expected.shape, name)
        guard got.shape == expected.shape else { return }
        let err = scaledError(got, expected)
        print("\(name): worst difference / output scale = \(err)")
        XCTAssertTrue(err <= 1e-4, "\(name): worst difference is \(err) of the output's scale")
    }

    func testShuffleNetV2TorchScript() throws { try check("shufflenet_v2_x1_0_ts") }
    func testShuffleNetV2Dynamo() throws { try check("shufflenet_v2_x1_0_dynamo") }
    func testSwinTTorchScript() throws { try check("swin_t_ts") }
    func testSwinTDynamo() throws { try check("swin_t_dynamo") }
    func testMaxViTTTorchScript() throws { try check("maxvit_t_ts") }
    func testMaxViTTDynamo() throws { try check("maxvit_t_dynamo") }
}

/// The largest |got - want| over the largest |want|; NaN anywhere gives NaN (and fails).
func scaledError(_ got: Tensor, _ want: Tensor) -> Double {
    var scale = 0.0, worst = 0.0
    for k in 0..<want.count {
        let a = Double(got.floats[k]), b = Double(want.floats[k])
        if a.isNaN || b.isNaN { return .nan }
        scale = max(scale, abs(b))
        worst = max(worst, abs(a - b))
    }
    return worst / max(scale, 1e-30)
}
