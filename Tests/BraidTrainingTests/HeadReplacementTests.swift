import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

/// The new head must be the only producer of `logits`, whatever the source called its values.
final class HeadReplacementTests: XCTestCase {
    /// x [N, 4] -> Conv-free backbone: Gemm(4 -> 6) -> Relu -> classifier Gemm(6 -> 5) named `output`.
    func source(outputName: String) -> Graph {
        var rng = SplitMix64(seed: 3)
        func t(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-1, 1) }) }
        return Graph(name: "s", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4)])],
                     outputs: [ValueDecl(name: outputName, dtype: .float32, shape: nil)],
                     initializers: ["w1": t([6, 4]), "b1": t([6]), "w2": t([5, 6]), "b2": t([5])],
                     nodes: [Node(name: "fc1", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1),
                                  inputs: ["x", "w1", "b1"], outputs: ["h"], sourceOp: "Gemm"),
                             Node(name: "relu", op: .unary(.relu), inputs: ["h"], outputs: ["r"], sourceOp: "Relu"),
                             Node(name: "fc2", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1),
                                  inputs: ["r", "w2", "b2"], outputs: [outputName], sourceOp: "Gemm")])
    }

    func gradients(_ g: Graph) throws -> (Float, [String: [Float]]) {
        let cut = try g.findFeatureCut()
        let head = g.replacingHead(cut: cut, classes: 3, featureSize: 6, seed: 9)
        XCTAssertEqual(head.nodes.filter { $0.outputs.contains("logits") }.count, 1, "one producer of logits")
        let plan = try TrainingPlan.make(graph: head, output: "logits", trainable: ["w1", "b1", "head.weight"],
                                         feeds: ["x": [2, 4]])
        for i in 0..<8 { plan.inputs[0].tensor.floats[i] = Float(i % 5) * 0.3 - 0.5 }
        plan.forward()
        let loss = softmaxCrossEntropy(logits: plan.output, labels: [0, 2], grad: plan.outputGrad)
        plan.backward()
        return (loss, plan.grads.mapValues(\.floatArray))
    }

    func testSourceOutputNamedLogitsTrainsLikeAnyOtherName() throws {
        let (lossA, a) = try gradients(source(outputName: "output"))
        let (lossB, b) = try gradients(source(outputName: "logits"))
        XCTAssertEqual(lossA, lossB)
        XCTAssertEqual(Set(a.keys), ["w1", "b1", "head.weight"])
        for (name, ga) in a {
            let gb = try XCTUnwrap(b[name], name)
            XCTAssertTrue(ga.contains { $0 != 0 }, "\(name): gradient is all zero")
            XCTAssertEqual(ga, gb, name)
        }
    }

    func testRenamingKeepsOtherNamesAndAvoidsTakenOnes() {
        var g = source(outputName: "logits")
        g.initializers["logits.source"] = Tensor(shape: [1], floats: [0])
        let (r, map) = g.renamingValues(["logits"])
        XCTAssertEqual(map, ["logits": "logits.source2"])
        XCTAssertEqual(r.outputs.map(\.name), ["logits.source2"])
        XCTAssertEqual(r.nodes.last?.outputs, ["logits.source2"])
        XCTAssertEqual(r.nodes.first?.inputs, ["x", "w1", "b1"])
    }
}
