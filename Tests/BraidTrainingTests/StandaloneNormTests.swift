import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

/// Batch norms and layer norms outside any layer unit (DenseNet's batch norms before their
/// convolutions) train with the units around them, as PyTorch's fine-tuning trains them.
final class StandaloneNormTests: XCTestCase {
    func graph() -> Graph {
        var rng = SplitMix64(seed: 8)
        func t(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(0.5, 1.5) }) }
        let conv = ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
        let nodes = [
            Node(name: "c1", op: .conv(conv), inputs: ["x", "w1", "b1"], outputs: ["h1"], sourceOp: "Conv"),
            Node(name: "bn1", op: .batchNorm(epsilon: 1e-5), inputs: ["h1", "s1", "o1", "m1", "v1"], outputs: ["h2"], sourceOp: "BatchNormalization"),
            Node(name: "r1", op: .unary(.relu), inputs: ["h2"], outputs: ["h3"], sourceOp: "Relu"),
            Node(name: "bn2", op: .batchNorm(epsilon: 1e-5), inputs: ["h3", "s2", "o2", "m2", "v2"], outputs: ["h4"], sourceOp: "BatchNormalization"),
            Node(name: "c2", op: .conv(conv), inputs: ["h4", "w2", "b2"], outputs: ["h5"], sourceOp: "Conv"),
            Node(name: "bn3", op: .batchNorm(epsilon: 1e-5), inputs: ["h5", "s3", "o3", "m3", "v3"], outputs: ["h6"], sourceOp: "BatchNormalization"),
            Node(name: "gap", op: .globalPool(.average), inputs: ["h6"], outputs: ["p"], sourceOp: "GlobalAveragePool"),
            Node(name: "flat", op: .flatten(axis: 1), inputs: ["p"], outputs: ["f"], sourceOp: "Flatten"),
            Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["f", "wf", "bf"], outputs: ["y"], sourceOp: "Gemm"),
        ]
        var inits: [String: Tensor] = ["w1": t([4, 1, 3, 3]), "b1": t([4]), "w2": t([4, 4, 3, 3]), "b2": t([4]),
                                       "wf": t([3, 4]), "bf": t([3])]
        for k in 1...3 { for (p, v) in [("s", t([4])), ("o", t([4])), ("m", t([4])), ("v", t([4]))] { inits["\(p)\(k)"] = v } }
        return Graph(name: "pre", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1), .fixed(5), .fixed(5)])],
                     outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)], initializers: inits, nodes: nodes)
    }

    func setup(depth: Int) throws -> TrainingSetup {
        let g = graph()
        return try g.replacingHead(cut: g.findFeatureCut(), classes: 2, featureSize: 4, seed: 1).trainingSetup(freezeDepth: depth)
    }

    func testStandaloneBatchNormTrainsWithTheUnitsAfterTheFirstTrainedOne() throws {
        let all = try setup(depth: 0)
        XCTAssertTrue(all.trainable.isSuperset(of: ["s2", "o2", "s1", "o1", "s3", "o3"]), "\(all.trainable.sorted())")
        XCTAssertFalse(all.trainable.contains("m2") || all.trainable.contains("v2"), "running statistics are not parameters")
        let bn2 = try XCTUnwrap(all.graph.nodes.first { $0.name == "bn2" })
        guard case .batchNormTraining = bn2.op else { return XCTFail("bn2 runs in inference mode: \(bn2.op)") }
        // Frozen through the first unit: bn2 sits before the first trained convolution and stays frozen.
        let one = try setup(depth: 1)
        XCTAssertFalse(one.trainable.contains("s2"))
        XCTAssertTrue(one.trainable.isSuperset(of: ["w2", "s3", "o3"]))
        guard case .batchNorm = try XCTUnwrap(one.graph.nodes.first { $0.name == "bn2" }).op else {
            return XCTFail("a frozen standalone batch norm must keep its running statistics")
        }
        // The whole plan differentiates with the standalone parameters in it.
        let plan = try TrainingPlan.make(graph: all.graph, output: "logits", trainable: all.trainable, feeds: ["x": [3, 1, 5, 5]])
        for i in 0..<75 { plan.inputs[0].tensor.floats[i] = Float(i % 7) / 7 - 0.4 }
        plan.forward()
        _ = softmaxCrossEntropy(logits: plan.output, labels: [0, 1, 1], grad: plan.outputGrad)
        plan.backward()
        XCTAssertTrue(try XCTUnwrap(plan.grads["s2"]).floatArray.contains { $0 != 0 })
    }
}
