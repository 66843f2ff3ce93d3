import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// Builds IR graphs node by node for export tests.
struct IRBuilder {
    var nodes: [Node] = []
    var initializers: [String: Tensor] = [:]
    var outputs: [String] = []
    private var rng: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// Adds a node; returns its first output (`count` outputs named `<name>:<i>`).
    @discardableResult
    mutating func add(_ op: Op, _ inputs: [String], _ name: String, count: Int = 1) -> String {
        let outs = count == 1 ? [name] : (0..<count).map { "\(name):\($0)" }
        nodes.append(Node(name: name, op: op, inputs: inputs, outputs: outs, sourceOp: irName(op)))
        return outs[0]
    }

    mutating func weight(_ name: String, _ shape: [Int], positive: Bool = false) -> String {
        var values: [Float] = []
        for _ in 0..<shape.product {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(rng >> 40) / Float(1 << 24)
            values.append(positive ? 0.5 + u : u * 2 - 1)
        }
        initializers[name] = Tensor(shape: shape, floats: values)
        return name
    }

    mutating func ints(_ name: String, _ values: [Int]) -> String {
        initializers[name] = Tensor(shape: [values.count], ints: values.map(Int64.init))
        return name
    }

    mutating func floats(_ name: String, _ values: [Float]) -> String {
        initializers[name] = Tensor(shape: [values.count], floats: values)
        return name
    }

    mutating func scalar(_ name: String, _ v: Float) -> String {
        initializers[name] = Tensor(shape: [], floats: [v])
        return name
    }

    func graph(_ inputs: [ValueDecl]) -> Graph {
        Graph(name: "zoo", inputs: inputs, outputs: outputs.map { ValueDecl(name: $0, dtype: .float32, shape: nil) },
              initializers: initializers, nodes: nodes)
    }

    private func irName(_ op: Op) -> String { String(describing: op).prefix { $0 != "(" }.description }
}

func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var s = seed
    return Tensor(shape: shape, floats: (0..<shape.product).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(s >> 40) / Float(1 << 23) - 1
    })
}

/// A graph using nearly every IR op, exported at several opsets: Braid's own outputs before
/// and after the round trip must agree, and onnxruntime (an independent implementation of
/// each ONNX op the writers chose) must agree with Braid within 1e-4.
final class ExportOpZooTests: XCTestCase {
    static func visionZoo() -> Graph {
        var b = IRBuilder()
        let c1 = b.add(.conv(ConvParams(kernel: [3, 3], strides: [2, 2], pads: [], dilations: [1, 1], group: 1, autoPad: .sameUpper)),
                       ["x", b.weight("w1", [8, 4, 3, 3]), b.weight("b1", [8])], "conv")
        let bn = b.add(.batchNorm(epsilon: 1e-3), [c1, b.weight("bn_s", [8]), b.weight("bn_b", [8]), b.weight("bn_m", [8]),
                                                   b.weight("bn_v", [8], positive: true)], "bn")
        let r1 = b.add(.unary(.relu), [bn], "relu")
        let d2s = b.add(.depthToSpace(blockSize: 2, columnRowDepth: true), [r1], "d2s")
        let s2d = b.add(.spaceToDepth(blockSize: 2), [d2s], "s2d")
        let ct = b.add(.convTranspose(ConvTransposeParams(conv: ConvParams(kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0],
                                                                           dilations: [1, 1], group: 1),
                                                          outputPadding: [0, 0], outputShape: nil)),
                       [s2d, b.weight("wt", [8, 3, 2, 2])], "convT")
        let inorm = b.add(.instanceNorm(epsilon: 1e-5), [ct, b.weight("in_s", [3]), b.weight("in_b", [3])], "inorm")
        let mp = b.add(.pool(PoolParams(kind: .max, kernel: [3, 3], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1],
                                        autoPad: .explicit, ceilMode: true, countIncludePad: false)), [inorm], "maxpool")
        let ap = b.add(.pool(PoolParams(kind: .average, kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1],
                                        autoPad: .explicit, ceilMode: false, countIncludePad: true)), [mp], "avgpool")
        let lrn = b.add(.lrn(size: 3, alpha: 1e-2, beta: 0.75, bias: 1), [ap], "lrn")
        // Keras's ZeroPadding2D then MaxPooling2D (the ResNetV2 stem) on all-negative values,
        // so every border window's maximum is the padding's 0.
        let negative = b.add(.binary(.sub), [b.add(.unary(.neg), [b.add(.unary(.abs), ["x"], "abs_x")], "neg_abs_x"),
                                             b.scalar("tenth", 0.1)], "negative_x")
        let zeroPadded = b.add(.pad(mode: .constant), [negative, b.ints("pads_zero", [0, 0, 1, 1, 0, 0, 1, 1])], "zero_pad")
        b.outputs.append(b.add(.pool(PoolParams(kind: .max, kernel: [3, 3], strides: [2, 2], pads: [0, 0, 0, 0],
                                                dilations: [1, 1], autoPad: .explicit, ceilMode: false, countIncludePad: false)),
                               [zeroPadded], "zero_pad_maxpool"))
        let rz = b.add(.resize(ResizeParams(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor)),
                       [lrn, "", b.floats("rz_scales", [1, 1, 2, 2]), ""], "resize_scales")
        let rz2 = b.add(.resize(ResizeParams(mode: .nearest, coordinate: .asymmetric, nearest: .floor, axes: [2, 3])),
                        [rz, "", "", b.ints("rz_sizes", [5, 5])], "resize_axes")
        let pd = b.add(.pad(mode: .reflect), [rz2, b.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])], "pad")
        let sm = b.add(.softmax(.softmax, axis: 1, coerce2D: true), [pd], "softmax2d")
        let ln = b.add(.layerNorm(axis: -1, epsilon: 1e-5), [sm, b.weight("ln_s", [7]), b.weight("ln_b", [7])], "layernorm")
        let lsm = b.add(.softmax(.logSoftmax, axis: -1, coerce2D: false), [ln], "logsoftmax")

        let unaries: [UnaryFunction] = [.gelu(tanhApproximation: false), .gelu(tanhApproximation: true), .mish, .hardSwish,
                                  .elu(alpha: 0.7), .selu(alpha: 1.6, gamma: 1.05), .celu(alpha: 1.2), .softsign,
                                  .softplus, .leakyRelu(alpha: 0.1), .hardSigmoid(alpha: 0.3, beta: 0.4),
                                  .shrink(bias: 0.1, lambd: 0.2), .thresholdedRelu(alpha: 0.1), .erf, .sigmoid,
                                  .tanh, .abs, .neg, .sin, .cos, .atan, .floor, .ceil, .round, .sign]
        var terms: [String] = []
        for (i, u) in unaries.enumerated() { terms.append(b.add(.unary(u), [ln], "unary\(i)")) }
        let absLn = b.add(.unary(.abs), [ln], "abs_ln")
        let shifted = b.add(.binary(.add), [absLn, b.scalar("one", 1)], "shifted")
        terms.append(b.add(.unary(.log), [shifted], "log"))
        terms.append(b.add(.unary(.sqrt), [shifted], "sqrt"))
        terms.append(b.add(.unary(.reciprocal), [shifted], "reciprocal"))
        terms.append(b.add(.binary(.pow), [shifted, b.scalar("p", 1.5)], "pow"))
        terms.append(b.add(.binary(.mod(fmod: true)), [ln, b.scalar("m", 0.3)], "fmod"))
        let u = b.add(.variadic(.sum), terms + [lsm], "sum_terms")
        let mean = b.add(.variadic(.mean), [u, ln], "mean_terms")
        let vmax = b.add(.variadic(.max), [u, ln, sm], "max_terms")
        let vmin = b.add(.variadic(.min), [mean, vmax], "min_terms")

        b.outputs.append(b.add(.reduce(.mean, axes: [2, 3], keepDims: true, noopWithEmptyAxes: false), [vmin], "reduce_mean"))
        b.outputs.append(b.add(.reduce(.sum, axes: [1], keepDims: false, noopWithEmptyAxes: false), [vmin], "reduce_sum"))
        b.outputs.append(b.add(.reduce(.max, axes: nil, keepDims: true, noopWithEmptyAxes: false), [vmin, b.ints("axes_last", [-1])], "reduce_max"))
        b.outputs.append(b.add(.reduce(.l2, axes: [2, 3], keepDims: false, noopWithEmptyAxes: false), [vmin], "reduce_l2"))
        b.outputs.append(b.add(.reduce(.logSumExp, axes: [3], keepDims: true, noopWithEmptyAxes: false), [vmin], "reduce_lse"))
        b.outputs.append(b.add(.reduce(.sumSquare, axes: nil, keepDims: false, noopWithEmptyAxes: false), [vmin], "reduce_all"))
        b.outputs.append(b.add(.reduce(.min, axes: nil, keepDims: true, noopWithEmptyAxes: true), [vmin], "reduce_noop"))
        let am = b.add(.argExtreme(max: true, axis: 1, keepDims: false, selectLastIndex: false), [vmin], "argmax")
        b.outputs.append(b.add(.cast(to: .float32), [am], "argmax_float"))

        // Dense tail on the pooled features.
        let gp = b.add(.globalPool(.average), [vmin], "gap")
        let gmax = b.add(.globalPool(.max), [vmin], "gmp")
        let pooled = b.add(.binary(.sub), [gp, gmax], "pooled")
        let fl = b.add(.flatten(axis: 1), [pooled], "flatten")
        let gm = b.add(.gemm(transA: false, transB: true, alpha: 0.9, beta: 1.1), [fl, b.weight("wg", [6, 3]), b.weight("bg", [6])], "gemm")
        let mm = b.add(.matMul, [gm, b.weight("wm", [6, 4])], "matmul")
        let cl = b.add(.clip, [mm, b.scalar("lo", -0.5), b.scalar("hi", 0.5)], "clip")
        let pr = b.add(.prelu, [mm, b.weight("slope", [4])], "prelu")
        let pos = b.add(.binary(.greater), [mm, b.scalar("zero", 0)], "positive")
        let sel = b.add(.select, [pos, cl, pr], "where")
        let parts = b.add(.split(axis: 1, count: 2), [sel], "split_equal", count: 2)
        let uneven = b.add(.split(axis: 1, count: 2), [sel, b.ints("split_sizes", [1, 3])], "split_sizes", count: 2)
        let cat = b.add(.concat(axis: 1), [parts, "split_equal:1", uneven, "split_sizes:1"], "concat")
        let rs = b.add(.reshape(allowZero: false), [cat, b.ints("shape", [-1, 2, 4])], "reshape")
        let tr = b.add(.transpose(perm: [0, 2, 1]), [rs], "transpose")
        let us = b.add(.unsqueeze, [tr, b.ints("us_axes", [1])], "unsqueeze")
        let sq = b.add(.squeeze, [us, b.ints("sq_axes", [1])], "squeeze")
        let sl = b.add(.slice, [sq, b.ints("starts", [1]), b.ints("ends", [4]), b.ints("sl_axes", [1])], "slice")
        let tl = b.add(.tile, [sl, b.ints("repeats", [1, 1, 2])], "tile")
        let ex = b.add(.expand, [tl, b.ints("ex_shape", [1, 3, 4])], "expand")
        let ga = b.add(.gather(axis: 2), [ex, b.ints("gather_idx", [3, 0, 1])], "gather")
        b.initializers["ge_idx"] = Tensor(shape: [1, 1, 3], ints: [2, 0, 1])
        let ge = b.add(.gatherElements(axis: 1), [ga, "ge_idx"], "gather_elements")
        let dr = b.add(.dropout, [ge], "dropout")
        let id = b.add(.identity, [dr], "identity")
        let ci = b.add(.cast(to: .int32), [id], "to_int")
        b.outputs.append(b.add(.cast(to: .float32), [ci], "back_to_float"))
        b.outputs.append(id)

        // Shape arithmetic: Shape with start/end, ConstantOfShape, Range, Size.
        let sh = b.add(.shape(start: 1, end: 3), [vmin], "shape_part")
        let filled = b.add(.constantOfShape(value: Tensor(shape: [1], floats: [0.25])), [sh], "filled")
        let sz = b.add(.size, [filled], "size")
        let r = b.add(.range, [b.ints("r_start", [0]).replacingScalar(&b), sz, b.ints("r_step", [1]).replacingScalar(&b)], "range")
        b.outputs.append(b.add(.cast(to: .float32), [r], "range_float"))
        b.outputs.append(b.add(.binary(.add), [filled, b.add(.constant(Tensor(shape: [1], floats: [2])), [], "two")], "filled_plus"))
        return b.graph([ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4), .fixed(8), .fixed(8)])])
    }

    /// Trigonometry, logic, integer arithmetic and the reductions and pools the vision zoo
    /// leaves out; `x` [2, 3, 4] float in [-1, 1), `k` [2, 3, 4] int64.
    static func mathZoo() -> Graph {
        var b = IRBuilder()
        let half = b.add(.binary(.mul), ["x", b.scalar("half", 0.5)], "half_x")
        var terms: [String] = []
        for (i, u) in [UnaryFunction.exp, .tan, .asin, .acos, .atanh, .sinh, .cosh, .asinh].enumerated() {
            terms.append(b.add(.unary(u), [half], "trig\(i)"))
        }
        let absPlus = b.add(.binary(.add), [b.add(.unary(.abs), ["x"], "abs"), b.scalar("one", 1)], "abs_plus")
        terms.append(b.add(.unary(.acosh), [absPlus], "acosh"))
        terms.append(b.add(.binary(.div), ["x", absPlus], "div"))
        terms.append(b.add(.binary(.max), ["x", half], "max"))
        terms.append(b.add(.binary(.min), ["x", half], "min"))
        let trig = b.add(.variadic(.sum), terms, "trig_sum")
        b.outputs.append(trig)

        // Logic on comparisons, back to float.
        let lt = b.add(.binary(.less), ["x", half], "lt")
        let ge = b.add(.binary(.greaterOrEqual), ["x", b.scalar("q", 0.25)], "ge")
        let le = b.add(.binary(.lessOrEqual), ["x", b.scalar("q2", -0.25)], "le")
        let eq = b.add(.binary(.equal), [lt, ge], "eq")
        let nan = b.add(.unary(.isNaN), ["x"], "isnan")
        let inf = b.add(.unary(.isInf), [b.add(.binary(.div), ["x", b.scalar("z", 0)], "div0")], "isinf")
        let logic = b.add(.binary(.xor), [b.add(.binary(.and), [eq, b.add(.unary(.not), [nan], "not")], "and"),
                                          b.add(.binary(.or), [le, inf], "or")], "xor")
        b.outputs.append(b.add(.cast(to: .float32), [logic], "logic_float"))

        // Integer arithmetic.
        let u = b.add(.cast(to: .uint32), ["k"], "k_u32")
        b.initializers["two_u32"] = Tensor(shape: [], ints: [2], dtype: .uint32)
        let shifted = b.add(.binary(.bitShiftRight), [b.add(.binary(.bitShiftLeft), [u, "two_u32"], "shl"), "two_u32"], "shr")
        let m = b.add(.binary(.mod(fmod: false)), ["k", b.add(.constant(Tensor(shape: [], ints: [-3])), [], "minus3")], "mod")
        let ints = b.add(.binary(.add), [b.add(.cast(to: .int64), [shifted], "back_i64"), m], "int_sum")
        b.outputs.append(b.add(.cast(to: .float32), [ints], "ints_float"))

        // Reductions and arg-min.
        b.outputs.append(b.add(.reduce(.prod, axes: [1], keepDims: true, noopWithEmptyAxes: false), [absPlus], "prod"))
        b.outputs.append(b.add(.reduce(.l1, axes: [-1], keepDims: false, noopWithEmptyAxes: false), ["x"], "l1"))
        b.outputs.append(b.add(.reduce(.logSum, axes: [0, 2], keepDims: true, noopWithEmptyAxes: false), [absPlus], "logsum"))
        let amin = b.add(.argExtreme(max: false, axis: -1, keepDims: true, selectLastIndex: true), [b.add(.unary(.round), ["x"], "round")], "argmin")
        b.outputs.append(b.add(.cast(to: .float32), [amin], "argmin_float"))

        // 4-D: Lp pools, hardmax, pads, cubic resize, DCR depth-to-space, Gemm without C.
        let x4 = b.add(.reshape(allowZero: false), ["x", b.ints("shape4d", [2, 4, 3, 1])], "to4d")
        let lp = b.add(.pool(PoolParams(kind: .lp(p: 2), kernel: [2, 1], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1],
                                        autoPad: .explicit, ceilMode: false, countIncludePad: false)), [x4], "lppool")
        b.outputs.append(b.add(.globalPool(.lp(p: 3)), [lp], "global_lp"))
        b.outputs.append(b.add(.softmax(.hardmax, axis: -1, coerce2D: false), ["x"], "hardmax"))
        let edge = b.add(.pad(mode: .edge), [x4, b.ints("pads_e", [0, 0, 1, 0, 0, 0, 0, 2])], "pad_edge")
        let padded = b.add(.pad(mode: .constant), [edge, b.ints("pads_c", [0, 0, 1, 1, 0, 0, 1, 1]), b.scalar("pv", 0.5)], "pad_const")
        let cubic = b.add(.resize(ResizeParams(mode: .cubic, coordinate: .pytorchHalfPixel, nearest: .roundPreferFloor,
                                               cubicCoefficient: -0.5, excludeOutside: true)),
                          [padded, "", b.floats("cubic_scales", [1, 1, 1.5, 2]), ""], "cubic")
        b.outputs.append(cubic)
        b.outputs.append(b.add(.depthToSpace(blockSize: 2, columnRowDepth: false), [x4], "d2s_dcr"))
        let flat = b.add(.flatten(axis: 1), ["x"], "flatten")
        b.outputs.append(b.add(.gemm(transA: true, transB: false, alpha: 1, beta: 1), [flat, b.weight("wa", [2, 5]), ""], "gemm_no_c"))
        b.outputs.append(b.add(.softmax(.softmax, axis: 1, coerce2D: true), ["x"], "softmax_coerced"))
        b.outputs.append(b.add(.softmax(.logSoftmax, axis: 2, coerce2D: true), ["x"], "logsoftmax_last"))
        return b.graph([ValueDecl(name: "x", dtype: .float32, shape: [.fixed(2), .fixed(3), .fixed(4)]),
                        ValueDecl(name: "k", dtype: .int64, shape: [.fixed(2), .fixed(3), .fixed(4)])])
    }

    func testMathZooAtSeveralOpsets() throws {
        let graph = Self.mathZoo()
        let x = randomTensor([2, 3, 4], seed: 11)
        let k = Tensor(shape: [2, 3, 4], ints: (0..<24).map { Int64($0 * 7 % 23 - 11) })
        for (o, t) in zip(graph.outputs, try runGraph(graph, [x, k])) {
            XCTAssertTrue(t.doubleArray.allSatisfy(\.isFinite), "\(o.name) must be finite for the comparison to mean something")
        }
        let dir = try temporaryDirectory(self)
        let opsets = [13, 17, 21]
        for opset in opsets {
            try assertRoundTrip(graph, inputs: [x, k], opset: opset, tolerance: 1e-5, label: "math_opset\(opset)", checkDir: dir)
        }
        try assertONNXRuntimeAgrees(dir, expectModels: opsets.count)
    }

    func testVisionZooAtEveryOpsetFamily() throws {
        let graph = Self.visionZoo()
        let x = randomTensor([2, 4, 8, 8], seed: 7)
        for (o, t) in zip(graph.outputs, try runGraph(graph, [x])) {
            XCTAssertTrue(t.doubleArray.allSatisfy(\.isFinite), "\(o.name) must be finite for the comparison to mean something")
        }
        let dir = try temporaryDirectory(self)
        let opsets = [13, 14, 17, 18, 19, 21]
        for opset in opsets {
            try assertRoundTrip(graph, inputs: [x], opset: opset, tolerance: 1e-5, label: "zoo_opset\(opset)", checkDir: dir)
        }
        try assertONNXRuntimeAgrees(dir, expectModels: opsets.count)
    }

    /// The forms each opset needs, read back from the written model.
    func testWrittenFormsFollowTheOpset() throws {
        let graph = Self.visionZoo()
        func ops(_ opset: Int) throws -> [ONNXNodeProto] { try ONNXExporter(opset: opset).model(graph).graph.nodes }
        let at13 = try ops(13), at21 = try ops(21)
        func node(_ nodes: [ONNXNodeProto], _ name: String) throws -> ONNXNodeProto {
            try XCTUnwrap(nodes.first { $0.name == name }, "no node \(name)")
        }
        // ReduceMean: axes attribute at 13, input at 18+; ReduceSum: input from 13.
        XCTAssertEqual(try node(at13, "reduce_mean").inputs.count, 1)
        XCTAssertEqual(try node(at13, "reduce_mean").attributes.first { $0.name == "axes" }?.ints, [2, 3])
        XCTAssertEqual(try node(at21, "reduce_mean").inputs.count, 2)
        XCTAssertNil(try node(at21, "reduce_mean").attributes.first { $0.name == "axes" })
        XCTAssertEqual(try node(at13, "reduce_sum").inputs.count, 2)
        XCTAssertEqual(try node(at13, "reduce_max").attributes.first { $0.name == "axes" }?.ints, [-1])
        XCTAssertEqual(try node(at13, "reduce_noop").opType, "Identity")
        // Decompositions below the op's opset.
        XCTAssertEqual(try node(at13, "unary0").opType, "Mul", "gelu before 20")
        XCTAssertEqual(try node(at21, "unary0").opType, "Gelu")
        XCTAssertEqual(try node(at13, "unary3").opType, "HardSigmoid", "hardSwish before 14")
        XCTAssertEqual(try node(at13, "layernorm").opType, "ReduceMean")
        XCTAssertEqual(try node(at21, "layernorm").opType, "LayerNormalization")
        XCTAssertEqual(try node(at13, "shape_part").opType, "Shape")
        XCTAssertTrue(at13.contains { $0.name == "shape_part/1" && $0.opType == "Slice" })
        XCTAssertEqual(try node(at21, "shape_part").attributes.first { $0.name == "start" }?.i, 1)
        // coerce2D softmax over axis 1 of a 4-D input: Flatten, Softmax, Reshape.
        XCTAssertEqual(try node(at13, "softmax2d").opType, "Flatten")
        XCTAssertEqual(try node(at13, "softmax2d/2").opType, "Shape")
        XCTAssertEqual(try node(at13, "softmax2d/3").opType, "Reshape")
        // Split without sizes: num_outputs from 18.
        XCTAssertNil(try node(at13, "split_equal").attributes.first { $0.name == "num_outputs" })
        XCTAssertEqual(try node(at21, "split_equal").attributes.first { $0.name == "num_outputs" }?.i, 2)
        // SAME padding resolved from the known 8x8 input: total 1, the extra pad at the end.
        XCTAssertEqual(try node(at13, "conv").attributes.first { $0.name == "pads" }?.ints, [0, 0, 1, 1])
        XCTAssertNil(try node(at13, "conv").attributes.first { $0.name == "auto_pad" })
        // Zero padding read only by a max pooling is written with the fill -0.0, which
        // onnxruntime's Pad fusion leaves alone (it would fill with -inf instead of 0).
        for opset in [13, 21] {
            let written = try ONNXExporter(opset: opset).model(graph).graph
            let fill = try XCTUnwrap(try node(written.nodes, "zero_pad").inputs.dropFirst(2).first, "the Pad has no fill")
            let value = try XCTUnwrap(written.initializers.first { $0.name == fill }, "fill \(fill) is no initializer")
            let floats = try value.tensor(baseDirectory: nil).floatArray
            XCTAssertEqual(floats.map(\.bitPattern), [(-Float(0)).bitPattern], "opset \(opset)")
        }
        // Other constant padding keeps its fill.
        let math = try ONNXExporter(opset: 13).model(Self.mathZoo()).graph
        let kept = try node(math.nodes, "pad_const").inputs[2]
        XCTAssertEqual(try math.initializers.first { $0.name == kept }?.tensor(baseDirectory: nil).floatArray, [0.5])
        // Resize axes: attribute from 18, full-rank operands before.
        XCTAssertEqual(try node(at21, "resize_axes").attributes.first { $0.name == "axes" }?.ints, [2, 3])
        XCTAssertNil(try node(at13, "resize_axes").attributes.first { $0.name == "axes" })
    }
}

private extension String {
    /// Turns a 1-element int initializer into a scalar (Range takes scalars).
    func replacingScalar(_ b: inout IRBuilder) -> String {
        let t = b.initializers[self]!
        b.initializers[self] = Tensor(shape: [], ints: t.intArray)
        return self
    }
}
