import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest
@testable import BraidTraining
import BraidTestSupport

/// Issue 15's torchvision zoo (tools/make-import-zoo torch) must be trainable as imported:
/// every op between the image and the logits has a backward rule (the plan is made, not run).
final class ZooTrainingPlanTests: XCTestCase {
    func check(_ name: String) throws {
        let path = try TestCache.require("import-zoo/\(name).onnx", madeBy: "tools/make-import-zoo torch")
        let graph = try Passes.optimizeForInference(try importONNX(path: path))
        let input = graph.feedInputs[0]
        let shape = (input.shape ?? []).map { $0.value ?? 1 }
        let trainable = Set(graph.initializers.filter { $0.value.dtype.isFloat && $0.value.count > 1 }.keys)
        let plan = try TrainingPlan.make(graph: graph, output: graph.outputs[0].name, trainable: trainable,
                                         feeds: [input.name: shape])
        XCTAssertEqual(plan.output.shape, [1, 1000], name)
    }

    /// The planner refuses an op without a rule on the trained path, so the checks above mean
    /// something: TopK's values have no gradient rule.
    func testAnOpWithoutARuleOnThePathIsRefused() {
        let g = Graph(name: "g", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.fixed(2), .fixed(5)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                      initializers: ["w": Tensor(shape: [5], floats: [1, 2, 3, 4, 5]), "k": Tensor(shape: [1], ints: [2])],
                      nodes: [Node(name: "mul", op: .binary(.mul), inputs: ["x", "w"], outputs: ["xw"], sourceOp: "Mul"),
                              Node(name: "topk", op: .topK(axis: -1, largest: true, sorted: true), inputs: ["xw", "k"],
                                   outputs: ["y", "i"], sourceOp: "TopK")])
        XCTAssertThrowsError(try TrainingPlan.make(graph: g, output: "y", trainable: ["w"], feeds: ["x": [2, 5]]))
    }

    func testSwinT() throws { try check("swin_t_ts"); try check("swin_t_dynamo") }
    func testMaxViTT() throws { try check("maxvit_t_ts"); try check("maxvit_t_dynamo") }
    func testShuffleNetV2() throws { try check("shufflenet_v2_x1_0_ts"); try check("shufflenet_v2_x1_0_dynamo") }
}
