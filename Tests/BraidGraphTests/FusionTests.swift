import XCTest
import BraidTensor
@testable import BraidGraph
import BraidTestSupport

/// `Passes.fuseConvEpilogues`: which tails it absorbs, and that fused graphs compute what the
/// unfused ones do.
final class FusionTests: XCTestCase {
    private func random(_ shape: [Int], _ scale: Float = 1) -> Tensor {
        var rng = SystemRandomNumberGenerator()
        let n = shape.reduce(1, *)
        return Tensor(shape: shape, floats: (0..<n).map { _ in Float.random(in: -scale...scale, using: &rng) })
    }

    /// Runs `plain` and `fast` on `x` and checks outputs `names` agree within `tolerance`.
    private func assertSameOutputs(_ plain: Graph, _ fast: Graph, x: Tensor, _ names: [String], tolerance: Float = 1e-5,
                                   file: StaticString = #filePath, line: UInt = #line) throws {
        let a = try Executor(graph: plain).run(["x": x]), b = try Executor(graph: fast).run(["x": x])
        for name in names {
            let u = try XCTUnwrap(a[name], file: file, line: line), v = try XCTUnwrap(b[name], file: file, line: line)
            assertClose(v, u, tolerance: Double(tolerance), "\(name) \(x.shape)", file: file, line: line)
        }
    }

    private func conv(_ name: String, _ x: String, _ out: String, group: Int = 1, stride: Int = 1, pad: Int = 1,
                      bias: Bool = true) -> Node {
        Node(name: name, op: .conv(ConvParams(kernel: [], strides: [stride, stride], pads: [pad, pad, pad, pad],
                                             dilations: [], group: group)),
             inputs: [x, name + ".w"] + (bias ? [name + ".b"] : []), outputs: [out], sourceOp: "Conv")
    }

    /// x [2, 4, 9, 11] -> depthwise 3x3 + HardSwish -> 1x1 + Add(x) + Relu -> 3x3/s2 (no bias)
    /// + Clip(0, 6) -> Sum(const [1, 4, 1, 1]) (broadcast residual, as Keras's Add exports) -> Identity -> Sigmoid; plus a conv whose
    /// output is also a graph output, which must stay unfused.
    private func graph() -> Graph {
        let nodes = [
            conv("dw", "x", "a0", group: 4),
            Node(name: "hs", op: .unary(.hardSwish), inputs: ["a0"], outputs: ["a"], sourceOp: "HardSwish"),
            conv("pw", "a", "b0", pad: 0),
            Node(name: "res", op: .binary(.add), inputs: ["x", "b0"], outputs: ["b1"], sourceOp: "Add"),
            Node(name: "relu", op: .unary(.relu), inputs: ["b1"], outputs: ["b"], sourceOp: "Relu"),
            conv("down", "b", "c0", stride: 2, bias: false),
            Node(name: "clip", op: .clip, inputs: ["c0", "zero", "six"], outputs: ["c"], sourceOp: "Clip"),
            conv("last", "c", "d0", pad: 0),
            Node(name: "shift", op: .variadic(.sum), inputs: ["d0", "offset"], outputs: ["d1"], sourceOp: "Sum"),
            Node(name: "same", op: .identity, inputs: ["d1"], outputs: ["d2"], sourceOp: "Identity"),
            Node(name: "sig", op: .unary(.sigmoid), inputs: ["d2"], outputs: ["y"], sourceOp: "Sigmoid"),
            conv("side", "c", "s0", pad: 0),
            Node(name: "sideRelu", op: .unary(.relu), inputs: ["s0"], outputs: ["s"], sourceOp: "Relu"),
        ]
        var inits: [String: Tensor] = ["zero": Tensor(shape: [], floats: [0]), "six": Tensor(shape: [], floats: [6]),
                                       "offset": random([1, 4, 1, 1])]
        for (name, shape) in [("dw", [4, 1, 3, 3]), ("pw", [4, 4, 1, 1]), ("down", [4, 4, 3, 3]), ("last", [4, 4, 1, 1]),
                              ("side", [4, 4, 1, 1])] {
            inits[name + ".w"] = random(shape)
            inits[name + ".b"] = random([shape[0]])
        }
        return Graph(name: "fusion", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
                     outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil), ValueDecl(name: "s0", dtype: .float32, shape: nil),
                               ValueDecl(name: "s", dtype: .float32, shape: nil)],
                     initializers: inits, nodes: nodes)
    }

    func testAbsorbsActivationsResidualsAndClipButNotGraphOutputs() {
        let fused = Passes.fuseConvEpilogues(graph())
        XCTAssertEqual(fused.nodes.map(\.sourceOp),
                       ["Conv+HardSwish", "Conv+Add+Relu", "Conv+Clip", "Conv+Sum+Sigmoid", "Conv", "Relu"])
        guard case .conv(let p) = fused.nodes[1].op else { return XCTFail("not a conv") }
        XCTAssertEqual(p.fusion, ConvFusion(residual: true, activation: .relu))
        XCTAssertEqual(fused.nodes[1].inputs, ["a", "pw.w", "pw.b", "x"])
        guard case .conv(let q) = fused.nodes[2].op else { return XCTFail("not a conv") }
        XCTAssertEqual(q.fusion, ConvFusion(residual: false, activation: .clip(min: 0, max: 6)))
        XCTAssertEqual(fused.nodes[2].inputs, ["b", "down.w", ""])
    }

    func testFusedGraphMatchesUnfused() throws {
        let g = graph()
        for batch in [1, 2] {
            try assertSameOutputs(g, Passes.fuseConvEpilogues(g), x: random([batch, 4, 9, 11], 3), ["y", "s0", "s"])
        }
    }

    /// SiLU as the torch exporters and Braid's Keras importer write it, `Mul(v, Sigmoid(v))`,
    /// after a depthwise convolution (either operand order of the Mul) and after a pointwise
    /// one with a residual: absorbed, and the fused graph computes the same. A Sigmoid whose
    /// output something else also reads, and a Mul of `v` with another Sigmoid, stay.
    func testAbsorbsSiLU() throws {
        let nodes = [
            conv("dw", "x", "a0", group: 4),
            Node(name: "sig", op: .unary(.sigmoid), inputs: ["a0"], outputs: ["a1"], sourceOp: "Sigmoid"),
            Node(name: "mul", op: .binary(.mul), inputs: ["a1", "a0"], outputs: ["a"], sourceOp: "Mul"),
            conv("pw", "a", "b0", pad: 0),
            Node(name: "res", op: .binary(.add), inputs: ["b0", "x"], outputs: ["b1"], sourceOp: "Add"),
            Node(name: "sig2", op: .unary(.sigmoid), inputs: ["b1"], outputs: ["b2"], sourceOp: "Sigmoid"),
            Node(name: "mul2", op: .binary(.mul), inputs: ["b1", "b2"], outputs: ["b"], sourceOp: "Mul"),
            conv("kept", "b", "c0", pad: 0),
            Node(name: "sig3", op: .unary(.sigmoid), inputs: ["c0"], outputs: ["c1"], sourceOp: "Sigmoid"),
            Node(name: "mul3", op: .binary(.mul), inputs: ["c0", "c1"], outputs: ["y"], sourceOp: "Mul"),
            Node(name: "also", op: .unary(.relu), inputs: ["c1"], outputs: ["z"], sourceOp: "Relu"),
            conv("other", "b", "d0", pad: 0),
            Node(name: "sig4", op: .unary(.sigmoid), inputs: ["b"], outputs: ["d1"], sourceOp: "Sigmoid"),
            Node(name: "mul4", op: .binary(.mul), inputs: ["d0", "d1"], outputs: ["w"], sourceOp: "Mul"),
        ]
        var inits: [String: Tensor] = [:]
        for (name, shape) in [("dw", [4, 1, 3, 3]), ("pw", [4, 4, 1, 1]), ("kept", [4, 4, 1, 1]), ("other", [4, 4, 1, 1])] {
            inits[name + ".w"] = random(shape)
            inits[name + ".b"] = random([shape[0]])
        }
        let g = Graph(name: "silu", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
                      outputs: ["y", "z", "w"].map { ValueDecl(name: $0, dtype: .float32, shape: nil) },
                      initializers: inits, nodes: nodes)
        let fused = Passes.fuseConvEpilogues(g)
        XCTAssertEqual(fused.nodes.map(\.sourceOp),
                       ["Conv+Sigmoid+Mul", "Conv+Add+Sigmoid+Mul", "Conv", "Sigmoid", "Mul", "Relu", "Conv", "Sigmoid", "Mul"])
        guard case .conv(let p) = fused.nodes[1].op else { return XCTFail("not a conv") }
        XCTAssertEqual(p.fusion, ConvFusion(residual: true, activation: .silu))
        XCTAssertEqual(fused.nodes[0].outputs, ["a"])
        for batch in [1, 2] {
            try assertSameOutputs(g, fused, x: random([batch, 4, 9, 11], 3), ["y", "z", "w"])
        }
    }

    /// A 3x3 convolution with 32 input channels runs through Winograd's kernel once its weight
    /// is marked constant; with a residual and an activation it matches the plain graph. A
    /// weight that is also a graph input (a default the caller may override) is not marked.
    func testConstantWeightsMarkedAndWinogradMatchesPlain() throws {
        let nodes = [
            conv("big", "x", "a0"),
            Node(name: "res", op: .binary(.add), inputs: ["a0", "x"], outputs: ["a1"], sourceOp: "Add"),
            Node(name: "relu", op: .unary(.relu), inputs: ["a1"], outputs: ["y"], sourceOp: "Relu"),
            conv("free", "x", "z"),
        ]
        let inits = ["big.w": random([32, 32, 3, 3], 0.2), "big.b": random([32]),
                     "free.w": random([32, 32, 3, 3], 0.2), "free.b": random([32])]
        let g = Graph(name: "wino", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil),
                                             ValueDecl(name: "free.w", dtype: .float32, shape: [32, 32, 3, 3].map(Dim.fixed))],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil), ValueDecl(name: "z", dtype: .float32, shape: nil)],
                      initializers: inits, nodes: nodes)
        let fast = try Passes.optimizeForExecution(g)
        let marks = fast.nodes.compactMap { n -> Bool? in
            guard case .conv(let p) = n.op else { return nil }
            return p.fusion?.constantWeights ?? false
        }
        XCTAssertEqual(marks, [true, false])
        try assertSameOutputs(g, fast, x: random([2, 32, 10, 13], 2), ["y", "z"], tolerance: 1e-4)
    }

    /// HardSwish written out as Add, Clip, Mul and Div (ppocr's form) becomes one node that the
    /// convolution before it absorbs; the same with a Mul by 1/6 instead of the Div, after a
    /// non-convolution; a pattern whose intermediate is also a graph output stays as it is (its
    /// Add and Clip become a channel chain).
    func testHardSwishPatternRecognisedAndFused() throws {
        func pattern(_ x: String, _ tag: String, divide: Bool) -> [Node] {
            [Node(name: tag + "add", op: .binary(.add), inputs: [x, "three"], outputs: [tag + "a"], sourceOp: "Add"),
             Node(name: tag + "clip", op: .clip, inputs: [tag + "a", "zero", "six"], outputs: [tag + "c"], sourceOp: "Clip"),
             Node(name: tag + "mul", op: .binary(.mul), inputs: [tag + "c", x], outputs: [tag + "m"], sourceOp: "Mul"),
             divide ? Node(name: tag + "div", op: .binary(.div), inputs: [tag + "m", "six"], outputs: [tag + "y"], sourceOp: "Div")
                    : Node(name: tag + "div", op: .binary(.mul), inputs: [tag + "m", "sixth"], outputs: [tag + "y"], sourceOp: "Mul")]
        }
        let nodes = [conv("pw", "x", "p0", pad: 0)] + pattern("p0", "1", divide: true)
            + [Node(name: "neg", op: .unary(.neg), inputs: ["1y"], outputs: ["n"], sourceOp: "Neg")] + pattern("n", "2", divide: false)
            + pattern("2y", "3", divide: true)
        var inits: [String: Tensor] = ["three": Tensor(shape: [], floats: [3]), "zero": Tensor(shape: [], floats: [0]),
                                       "six": Tensor(shape: [], floats: [6]), "sixth": Tensor(shape: [1], floats: [1.0 / 6])]
        inits["pw.w"] = random([4, 4, 1, 1])
        inits["pw.b"] = random([4])
        let g = Graph(name: "hswish", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
                      outputs: [ValueDecl(name: "3y", dtype: .float32, shape: nil), ValueDecl(name: "3c", dtype: .float32, shape: nil)],
                      initializers: inits, nodes: nodes)
        let fast = try Passes.optimizeForExecution(g)
        XCTAssertEqual(fast.nodes.map(\.sourceOp), ["Conv+Add+Clip+Mul+Div", "Neg", "Add+Clip+Mul+Mul", "Add+Clip", "Mul", "Div"])
        try assertSameOutputs(g, fast, x: random([2, 4, 5, 3], 6), ["3y", "3c"])
    }

    /// GELU written out as PyTorch's exporters write it (Erf of x / sqrt 2 or x * (1 / sqrt 2),
    /// plus 1, times x and 0.5 in each of three orders) becomes one `gelu` node that computes
    /// the same; a pattern whose Erf output is also a graph output stays as written.
    func testGELUPatternRecognised() throws {
        func mul(_ tag: String, _ a: String, _ b: String, _ out: String) -> Node {
            Node(name: tag, op: .binary(.mul), inputs: [a, b], outputs: [out], sourceOp: "Mul")
        }
        func pattern(_ x: String, _ t: String, order: Int) -> [Node] {
            let scale = order == 0
                ? Node(name: t + "div", op: .binary(.div), inputs: [x, "sqrt2"], outputs: [t + "d"], sourceOp: "Div")
                : mul(t + "div", "invsqrt2", x, t + "d")
            let head = [scale,
                        Node(name: t + "erf", op: .unary(.erf), inputs: [t + "d"], outputs: [t + "e"], sourceOp: "Erf"),
                        Node(name: t + "add", op: .binary(.add), inputs: ["one", t + "e"], outputs: [t + "p"], sourceOp: "Add")]
            switch order {
            case 0: return head + [mul(t + "m1", x, t + "p", t + "m"), mul(t + "m2", t + "m", "half", t + "y")]
            case 1: return [mul(t + "h", x, "half", t + "h")] + head + [mul(t + "m1", t + "h", t + "p", t + "y")]
            default: return head + [mul(t + "m1", t + "p", "half", t + "q"), mul(t + "m2", x, t + "q", t + "y")]
            }
        }
        let nodes = pattern("x", "1", order: 0)
            + [Node(name: "neg", op: .unary(.neg), inputs: ["1y"], outputs: ["n"], sourceOp: "Neg")]
            + pattern("n", "2", order: 1) + pattern("2y", "3", order: 2) + pattern("3y", "4", order: 0)
        let inits: [String: Tensor] = ["sqrt2": Tensor(shape: [], floats: [Float(2).squareRoot()]),
                                       "invsqrt2": Tensor(shape: [1], floats: [Float(0.5).squareRoot()]),
                                       "one": Tensor(shape: [], floats: [1]), "half": Tensor(shape: [], floats: [0.5])]
        let g = Graph(name: "gelu", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
                      outputs: [ValueDecl(name: "4y", dtype: .float32, shape: nil), ValueDecl(name: "4e", dtype: .float32, shape: nil)],
                      initializers: inits, nodes: nodes)
        let fast = Passes.recognizeGELU(g)
        XCTAssertEqual(fast.nodes.map(\.sourceOp),
                       ["Div+Erf+Add+Mul+Mul", "Neg", "Mul+Mul+Erf+Add+Mul", "Mul+Erf+Add+Mul+Mul", "Div", "Erf", "Add", "Mul", "Mul"])
        XCTAssertEqual(fast.nodes.filter {
            if case .unary(.gelu(tanhApproximation: false)) = $0.op { return true } else { return false }
        }.count, 3)
        try assertSameOutputs(g, try Passes.optimizeForExecution(g), x: random([2, 3, 37], 5), ["4y", "4e"], tolerance: 2e-6)
    }

    /// Per-channel runs become one channel chain: BatchNormalization, Mul, Add and Relu (the
    /// ONNX zoo's DenseNet, its parameters graph inputs with defaults), and a Sub and Div by
    /// operands that broadcast along the last axis instead (the chain's step-by-step path);
    /// the result matches the plain graph either way.
    func testChannelChainsFuseAndMatchPlain() throws {
        let nodes = [
            Node(name: "bn", op: .batchNorm(epsilon: 1e-5), inputs: ["x", "s", "b", "m", "v"], outputs: ["a"], sourceOp: "BatchNormalization"),
            Node(name: "mul", op: .binary(.mul), inputs: ["w3", "a"], outputs: ["c"], sourceOp: "Mul"),
            Node(name: "add", op: .binary(.add), inputs: ["c", "k3"], outputs: ["d"], sourceOp: "Add"),
            Node(name: "relu", op: .unary(.relu), inputs: ["d"], outputs: ["e"], sourceOp: "Relu"),
            Node(name: "sub", op: .binary(.sub), inputs: ["e", "row"], outputs: ["f"], sourceOp: "Sub"),
            Node(name: "div", op: .binary(.div), inputs: ["f", "two"], outputs: ["y"], sourceOp: "Div"),
        ]
        let v = random([4], 1)
        for i in 0..<4 { v.floats[i] = abs(v.floats[i]) + 0.5 }
        let inits: [String: Tensor] = ["s": random([4]), "b": random([4]), "m": random([4]), "v": v,
                                       "w3": random([4, 1, 1]), "k3": random([1, 4, 1, 1]), "row": random([5]),
                                       "two": Tensor(shape: [1], floats: [2])]
        let g = Graph(name: "chain", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil),
                                              ValueDecl(name: "s", dtype: .float32, shape: [.fixed(4)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)], initializers: inits, nodes: nodes)
        let fast = try Passes.optimizeForExecution(g)
        XCTAssertEqual(fast.nodes.map(\.sourceOp), ["BatchNormalization+Mul+Add+Relu", "Sub+Div"])
        try assertSameOutputs(g, fast, x: random([2, 4, 3, 5], 3), ["y"])
    }


    /// A graph input whose default a pass folds away (here the shape of a constant weight) is
    /// no longer an input: the optimised graph runs on the other inputs alone.
    func testFoldedDefaultInputIsDropped() throws {
        let nodes = [
            Node(name: "w", op: .constantOfShape(value: Tensor(shape: [1], floats: [0.5])), inputs: ["wshape"],
                 outputs: ["k.w"], sourceOp: "ConstantOfShape"),
            Node(name: "k", op: .conv(ConvParams(kernel: [], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [], group: 1)),
                 inputs: ["x", "k.w"], outputs: ["y"], sourceOp: "Conv"),
        ]
        let g = Graph(name: "light", inputs: [ValueDecl(name: "wshape", dtype: .int64, shape: [.fixed(4)]),
                                              ValueDecl(name: "x", dtype: .float32, shape: nil)],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                      initializers: ["wshape": Tensor(shape: [4], ints: [2, 3, 1, 1])], nodes: nodes)
        let fast = try Passes.optimizeForExecution(g)
        XCTAssertEqual(fast.inputs.map(\.name), ["x"])
        let y = try XCTUnwrap(try Executor(graph: fast).run(["x": Tensor(shape: [1, 3, 2, 2], floats: Array(repeating: 1, count: 12))])["y"])
        XCTAssertEqual(y.shape, [1, 2, 2, 2])
        XCTAssertEqual(y.floats[0], 1.5)
    }

    func testClipWithRuntimeBoundAndSharedOutputsStayUnfused() {
        var g = graph()
        g.inputs.append(ValueDecl(name: "six", dtype: .float32, shape: [])) // an overridable bound
        g.nodes[1].inputs = ["a0"]
        g.nodes.append(Node(name: "peek", op: .unary(.neg), inputs: ["a0"], outputs: ["p"], sourceOp: "Neg"))
        g.outputs.append(ValueDecl(name: "p", dtype: .float32, shape: nil))
        let ops = Passes.fuseConvEpilogues(g).nodes.map(\.sourceOp)
        XCTAssertEqual(Array(ops.prefix(4)), ["Conv", "HardSwish", "Conv+Add+Relu", "Conv"])
        XCTAssertTrue(ops.contains("Clip"))
    }

    /// Int64 shape arithmetic reached from an input (TorchScript's ShuffleNet computes
    /// channels per group with Shape -> Div -> ...) is not a channel chain.
    func testIntegerShapeArithmeticIsNotFused() throws {
        let g = Graph(name: "g", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                      initializers: ["two": Tensor(shape: [], ints: [2]), "one": Tensor(shape: [2], ints: [2, 2])],
                      nodes: [
                        Node(name: "n", op: .shape(start: 0, end: nil), inputs: ["x"], outputs: ["n"], sourceOp: "Shape"),
                        Node(name: "half", op: .binary(.div), inputs: ["n", "two"], outputs: ["h"], sourceOp: "Div"),
                        Node(name: "back", op: .binary(.mul), inputs: ["h", "one"], outputs: ["s"], sourceOp: "Mul"),
                        Node(name: "view", op: .reshape(allowZero: false), inputs: ["x", "s"], outputs: ["y"], sourceOp: "Reshape"),
                      ])
        let fused = try Passes.optimizeForExecution(g)
        XCTAssertFalse(fused.nodes.contains { if case .channelChain = $0.op { return true }; return false })
        let y = try XCTUnwrap(try Executor(graph: fused).run(["x": random([2, 4])])["y"])
        XCTAssertEqual(y.shape, [2, 4])
    }
}
