import BraidGraph
import BraidONNX
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

/// torchvision classifiers exported by both torch exporters (tools/make-import-zoo torch,
/// random seeded weights) against onnxruntime's outputs on the same input: the largest
/// difference must be within 1e-4 of the output's scale (its largest magnitude). Each runs
/// after the execution passes, as `braid run` runs it.
final class TorchvisionZooTests: XCTestCase {
    func check(_ name: String) throws {
        let model = try TestCache.require("import-zoo/\(name).onnx", madeBy: "tools/make-import-zoo torch")
        // As `braid run` executes it: inference passes, then the fusions.
        let graph = try Passes.optimizeForExecution(try importONNX(path: model))
        let input = try TestCache.reference("import-zoo/\(name).in0.npy", madeBy: "tools/make-import-zoo torch")
        let expected = try TestCache.reference("import-zoo/\(name).out0.npy", madeBy: "tools/make-import-zoo torch")
        let executor = Executor(graph: graph)
        executor.poisonBuffers = true
        let outputs = try executor.run([graph.feedInputs[0].name: input])
        let got = try XCTUnwrap(outputs[graph.outputs[0].name])
        let d = assertClose(got, expected, tolerance: 1e-4, floor: 0, name)
        print("\(name): worst difference / output scale = \(d.worst)")
    }

    func testShuffleNetV2TorchScript() throws { try check("shufflenet_v2_x1_0_ts") }
    func testShuffleNetV2Dynamo() throws { try check("shufflenet_v2_x1_0_dynamo") }
    func testSwinTTorchScript() throws { try check("swin_t_ts") }
    func testSwinTDynamo() throws { try check("swin_t_dynamo") }
    func testMaxViTTTorchScript() throws { try check("maxvit_t_ts") }
    func testMaxViTTDynamo() throws { try check("maxvit_t_dynamo") }
}
