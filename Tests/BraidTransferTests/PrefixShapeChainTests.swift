import BraidGraph
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// Torch exports compute a Reshape's target from the image's shape (Shape -> Gather ->
/// Unsqueeze -> Concat). Such values are not per-image activations: the prefix cache must not
/// cut there (it used to, and fine-tuning stopped with "the frozen prefix's cut ... is not a
/// batch-leading float value").
final class PrefixShapeChainTests: XCTestCase {
    func graph() -> Graph {
        var rng = SplitMix64(seed: 4)
        func t(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-0.5, 0.5) }) }
        let conv = ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
        let nodes = [
            Node(name: "c1", op: .conv(conv), inputs: ["x", "w1", "b1"], outputs: ["h1"], sourceOp: "Conv"),
            Node(name: "r1", op: .unary(.relu), inputs: ["h1"], outputs: ["h2"], sourceOp: "Relu"),
            Node(name: "shape", op: .shape(start: 0, end: nil), inputs: ["x"], outputs: ["s"], sourceOp: "Shape"),
            Node(name: "gather", op: .gather(axis: 0), inputs: ["s", "zero"], outputs: ["n"], sourceOp: "Gather"),
            Node(name: "unsq", op: .unsqueeze, inputs: ["n", "axes"], outputs: ["n1"], sourceOp: "Unsqueeze"),
            Node(name: "cat", op: .concat(axis: 0), inputs: ["n1", "minus1"], outputs: ["target"], sourceOp: "Concat"),
            Node(name: "flat", op: .reshape(allowZero: false), inputs: ["h2", "target"], outputs: ["f"], sourceOp: "Reshape"),
            Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["f", "wf", "bf"],
                 outputs: ["y"], sourceOp: "Gemm"),
        ]
        return Graph(name: "shapechain",
                     inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1), .fixed(4), .fixed(4)])],
                     outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                     initializers: ["w1": t([2, 1, 3, 3]), "b1": t([2]), "wf": t([3, 32]), "bf": t([3]),
                                    "zero": Tensor(shape: [], ints: [0]), "axes": Tensor(shape: [1], ints: [0]),
                                    "minus1": Tensor(shape: [1], ints: [-1])],
                     nodes: nodes)
    }

    func testNoCutAtShapeValuesWhenEverythingTrains() throws {
        let g = graph().replacingHead(cut: try graph().findFeatureCut(), classes: 2, featureSize: 32, seed: 1)
        let setup = try g.trainingSetup(freezeDepth: 0)
        XCTAssertNil(PrefixSplit.find(graph: setup.graph, input: "x", trainable: setup.trainable))
    }

    func testCutAtActivationsWhenTheConvolutionIsFrozen() throws {
        // The shape chain then lies wholly inside the frozen prefix: the cut is the reshaped
        // activation, flattened for the head.
        let g = graph().replacingHead(cut: try graph().findFeatureCut(), classes: 2, featureSize: 32, seed: 1)
        let setup = try g.trainingSetup(freezeDepth: 1)
        let split = try XCTUnwrap(PrefixSplit.find(graph: setup.graph, input: "x", trainable: setup.trainable))
        XCTAssertEqual(split.cuts, ["head.features"])
    }
}
