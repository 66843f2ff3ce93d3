import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

/// Which initializers train: every parameter PyTorch trains in a torch-exported transformer
/// or ConvNeXt (a Linear's weight behind a Transpose and its bias in a following Add, layer
/// scales, position embeddings, class tokens, gathered bias tables, layer-norm scales reached
/// through Identity), and none of the constants around them (an attention scale, a Where's
/// fill values, clip bounds, shapes, indices). Each is attributed to the node where it is
/// first used, so a frozen prefix keeps its own.
final class ParameterDiscoveryTests: XCTestCase {
    static let parameters: Set<String> = ["w0", "b0", "cls", "pos", "lnw", "lnb", "w1", "b1", "table", "ls", "w2", "b2"]
    static let constants: Set<String> = ["half", "fill", "lo", "hi", "tokens.shape", "width", "idx", "axes"]

    /// x [N, 3, 4, 4] -> patch convolution [N, 6, 2, 2] -> 4 tokens of 6, a class token in
    /// front, + position embedding -> layer norm (scale through Identity) -> Linear exported
    /// as MatMul(h, Transpose(w1)) + Add(b1, .) -> * 0.5 -> + table[idx] -> * layer scale ->
    /// Where(mask, fill, .) -> Clip -> MatMul(w2) + b2 -> mean over tokens -> Gemm classifier.
    func graph() -> Graph {
        func t(_ shape: [Int], _ seed: UInt64) -> Tensor { gradTestTensor(shape, seed: seed, range: -0.8...0.8) }
        let conv = ConvParams(kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1)
        let nodes = [
            // Exporters often place a weight's Transpose first, far from its MatMul.
            Node(name: "w1.t", op: .transpose(perm: [1, 0]), inputs: ["w1"], outputs: ["w1t"], sourceOp: "Transpose"),
            Node(name: "patch", op: .conv(conv), inputs: ["x", "w0", "b0"], outputs: ["p"], sourceOp: "Conv"),
            Node(name: "tokens", op: .reshape(allowZero: false), inputs: ["p", "tokens.shape"], outputs: ["p2"], sourceOp: "Reshape"),
            Node(name: "tokens.t", op: .transpose(perm: [0, 2, 1]), inputs: ["p2"], outputs: ["tok"], sourceOp: "Transpose"),
            Node(name: "batch", op: .shape(start: 0, end: 1), inputs: ["tok"], outputs: ["n"], sourceOp: "Shape"),
            Node(name: "cls.shape", op: .concat(axis: 0), inputs: ["n", "width"], outputs: ["cs"], sourceOp: "Concat"),
            Node(name: "cls.expand", op: .expand, inputs: ["cls", "cs"], outputs: ["clsN"], sourceOp: "Expand"),
            Node(name: "cat", op: .concat(axis: 1), inputs: ["clsN", "tok"], outputs: ["h0"], sourceOp: "Concat"),
            Node(name: "pos.add", op: .binary(.add), inputs: ["h0", "pos"], outputs: ["h1"], sourceOp: "Add"),
            Node(name: "lnw.alias", op: .identity, inputs: ["lnw"], outputs: ["lnw2"], sourceOp: "Identity"),
            Node(name: "ln", op: .layerNorm(axis: -1, epsilon: 1e-5), inputs: ["h1", "lnw2", "lnb"], outputs: ["h2"], sourceOp: "LayerNormalization"),
            Node(name: "fc1", op: .matMul, inputs: ["h2", "w1t"], outputs: ["h3"], sourceOp: "MatMul"),
            Node(name: "fc1.bias", op: .binary(.add), inputs: ["b1", "h3"], outputs: ["h4"], sourceOp: "Add"),
            Node(name: "scale", op: .binary(.mul), inputs: ["h4", "half"], outputs: ["h5"], sourceOp: "Mul"),
            Node(name: "bias.gather", op: .gather(axis: 0), inputs: ["table", "idx"], outputs: ["tb"], sourceOp: "Gather"),
            Node(name: "bias.add", op: .binary(.add), inputs: ["h5", "tb"], outputs: ["h6"], sourceOp: "Add"),
            Node(name: "layer.scale", op: .binary(.mul), inputs: ["h6", "ls"], outputs: ["h7"], sourceOp: "Mul"),
            Node(name: "masked", op: .select, inputs: ["mask", "fill", "h7"], outputs: ["h8"], sourceOp: "Where"),
            Node(name: "clip", op: .clip, inputs: ["h8", "lo", "hi"], outputs: ["h9"], sourceOp: "Clip"),
            Node(name: "fc2", op: .matMul, inputs: ["h9", "w2"], outputs: ["h10"], sourceOp: "MatMul"),
            Node(name: "fc2.bias", op: .binary(.add), inputs: ["h10", "b2"], outputs: ["h11"], sourceOp: "Add"),
            Node(name: "pool", op: .reduce(.mean, axes: nil, keepDims: false, noopWithEmptyAxes: false), inputs: ["h11", "axes"],
                 outputs: ["f"], sourceOp: "ReduceMean"),
            Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["f", "wf", "bf"], outputs: ["y"], sourceOp: "Gemm"),
        ]
        let inits: [String: Tensor] = [
            "w0": t([6, 3, 2, 2], 1), "b0": t([6], 2), "cls": t([1, 1, 6], 3), "pos": t([1, 5, 6], 4),
            "lnw": gradTestTensor([6], seed: 5, range: 0.5...1.5), "lnb": t([6], 6), "w1": t([8, 6], 7), "b1": t([8], 8),
            "table": t([7, 8], 9), "ls": gradTestTensor([8], seed: 10, range: 0.2...1), "w2": t([8, 4], 11), "b2": t([4], 12),
            "wf": t([3, 4], 13), "bf": t([3], 14),
            "half": Tensor(shape: [], floats: [0.5]), "fill": Tensor(shape: [5, 8], floats: Array(repeating: -3, count: 40)),
            "mask": Tensor(shape: [5, 8], ints: (0..<40).map { $0 % 9 == 0 ? 1 : 0 }, dtype: .bool),
            "lo": Tensor(shape: [], floats: [-50]), "hi": Tensor(shape: [], floats: [50]),
            "tokens.shape": Tensor(shape: [3], ints: [0, 6, 4]), "width": Tensor(shape: [2], ints: [1, 6]),
            // Row 3 is gathered twice: its gradient sums both uses.
            "idx": Tensor(shape: [5], ints: [0, 3, 3, 6, 1]), "axes": Tensor(shape: [1], ints: [1]),
        ]
        return Graph(name: "vit-like", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(4), .fixed(4)])],
                     outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)], initializers: inits, nodes: nodes)
    }

    func headed() throws -> Graph {
        let g = graph()
        return g.replacingHead(cut: try g.findFeatureCut(), classes: 2, featureSize: 4, seed: 1)
    }

    func testEveryParameterTrainsAndNoConstantDoes() throws {
        let g = try headed()
        // Two units: the patch convolution and fc2 (its weight is an initializer); fc1's weight
        // reaches it through a Transpose, so it is no unit, and unit counts stay as they were.
        XCTAssertEqual(g.layerUnits.filter { !$0.parameters.contains { $0.hasPrefix("head.") } }.map(\.node), ["patch", "fc2"])
        XCTAssertEqual(g.layerUnits.first { $0.node == "fc2" }?.parameters, ["w2", "b2"], "a MatMul's bias Add belongs to its unit")
        let setup = try g.trainingSetup(freezeDepth: 0)
        XCTAssertEqual(setup.trainable, Self.parameters.union(["head.weight", "head.bias"]),
                       "missing \(Self.parameters.subtracting(setup.trainable).sorted()), extra \(setup.trainable.subtracting(Self.parameters).sorted())")
        XCTAssertTrue(setup.trainable.isDisjoint(with: Self.constants))
        // Each new kind of parameter gets the gradient finite differences give it.
        let x = gradTestTensor([2, 3, 4, 4], seed: 21)
        try checkGradients(graph: setup.graph, feed: ["x": x], trainable: setup.trainable, output: "logits", tolerance: 5e-3)
    }

    func testParametersFirstUsedInAFrozenPrefixStayFrozen() throws {
        let g = try headed()
        // Freezing the patch convolution freezes everything used before fc2, the first trained
        // unit: the class token, position embedding, layer norm, fc1 and the tables.
        let one = try g.trainingSetup(freezeDepth: 1)
        XCTAssertEqual(one.trainable, ["w2", "b2", "head.weight", "head.bias"])
        // By name: fc1's weight is attributed to the MatMul that uses it, not to its Transpose.
        let named = try g.trainingSetup(freezeDepth: 0, freezeNames: ["fc1", "pos"])
        XCTAssertFalse(named.trainable.contains("w1") || named.trainable.contains("pos"))
        XCTAssertTrue(named.trainable.isSuperset(of: ["b1", "cls", "table", "ls"]))
        let anchors = g.parameterAnchors
        let fc1 = try XCTUnwrap(g.nodes.firstIndex { $0.name == "fc1" })
        XCTAssertEqual(anchors["w1"], fc1)
    }
}
