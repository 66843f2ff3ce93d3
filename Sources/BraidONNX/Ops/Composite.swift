import BraidGraph
import BraidTensor

// ONNX ops that Braid translates into several IR primitives (the IR keeps no foreign
// composite): Swish, SwiGLU, RMSNormalization, GroupNormalization, MeanVarianceNormalization,
// LayerNormalization with its statistics outputs, LpNormalization, EyeLike, the cosine
// windows, AffineGrid, NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss; Einsum
// (Einsum.swift), Attention (Attention.swift) and the sequence ops (Composite+Sequence.swift)
// are registered here too. CastLike maps to the IR's castLike, LinearAttention to its own op.

let compositeOps: OpTable = {
    var t: OpTable = [:]
    t["Einsum"] = [v(12, translateEinsum)]
    t["Attention"] = [v(23, translateAttention)]
    t["CastLike"] = [v(15) { n in
        // A `like` of a narrow type declared at import rounds onto that type's grid.
        if let code = n.knownElementType(1), let narrow = try narrowTarget(n, code), let to = code.braidType {
            return try emitCast(n, n.input(0), to: to, narrow: narrow)
        }
        n.emit(.castLike, inputs: [n.input(0), n.input(1)])
    }]
    t["Swish"] = [v(24) { n in
        // x * sigmoid(alpha * x)
        let alpha = try n.float("alpha", default: 1)
        var z = n.input(0)
        if alpha != 1 { z = n.step(.binary(.mul), [z, n.constant(floats: [alpha], shape: [], "alpha")], "scaled") }
        n.emit(.binary(.mul), inputs: [n.input(0), n.step(.unary(.sigmoid), [z], "sigmoid")])
    }]
    t["SwiGLU"] = [v(28) { n in
        // a * sigmoid(alpha * a) * b
        let alpha = try n.float("alpha", default: 1)
        var z = n.input(0)
        if alpha != 1 { z = n.step(.binary(.mul), [z, n.constant(floats: [alpha], shape: [], "alpha")], "scaled") }
        let swish = n.step(.binary(.mul), [n.input(0), n.step(.unary(.sigmoid), [z], "sigmoid")], "swish")
        n.emit(.binary(.mul), inputs: [swish, n.input(1)])
    }]
    t["RotaryEmbedding"] = [v(23, translateRotaryEmbedding)]
    // Generalised cosine windows: a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N), N = size when
    // periodic, size - 1 when symmetric.
    let windows: [(String, [Float])] = [("HannWindow", [0.5, 0.5, 0]), ("HammingWindow", [25.0 / 46, 21.0 / 46, 0]),
                                        ("BlackmanWindow", [0.42, 0.5, 0.08])]
    for (name, a) in windows {
        t[name] = [v(17) { n in
            let size = n.step(.cast(to: .int64), [n.input(0)], "size")
            let positions = n.step(.cast(to: .float32), [n.step(.range, [n.constant(Tensor(shape: [], ints: [0]), "start"), size,
                                                                          n.constant(Tensor(shape: [], ints: [1]), "step")], "n")], "n_float")
            var span = n.step(.cast(to: .float32), [size], "size_float")
            if !(try n.bool("periodic", default: true)) {
                span = n.step(.binary(.sub), [span, n.constant(floats: [1], shape: [], "one")], "span")
            }
            let angle = n.step(.binary(.div), [n.step(.binary(.mul), [positions, n.constant(floats: [2 * Float.pi], shape: [], "two_pi")], "scaled"), span], "angle")
            var w = n.step(.binary(.sub), [n.constant(floats: [a[0]], shape: [], "a0"),
                                            n.step(.binary(.mul), [n.constant(floats: [a[1]], shape: [], "a1"), n.step(.unary(.cos), [angle], "cos1")], "term1")], "w1")
            if a[2] != 0 {
                let twice = n.step(.binary(.mul), [angle, n.constant(floats: [2], shape: [], "two")], "angle2")
                w = n.step(.binary(.add), [w, n.step(.binary(.mul), [n.constant(floats: [a[2]], shape: [], "a2"), n.step(.unary(.cos), [twice], "cos2")], "term2")], "w2")
            }
            let code = try n.int("output_datatype", default: 1)
            guard let c = Int32(exactly: code) else { throw n.error("attribute 'output_datatype' = \(code) is not a known type") }
            n.emit(.cast(to: try braidType(code: c, subject: n.name)), inputs: [w])
        }]
    }
    t["RMSNormalization"] = [v(23) { n in
        let axes = try normalizedAxes(n, from: try n.int("axis", default: -1))
        let eps = n.constant(floats: [try n.float("epsilon", default: 1e-5)], shape: [], "epsilon")
        let x = n.input(0)
        let sq = n.step(.binary(.mul), [x, x], "square")
        let ms = n.step(.reduce(.mean, axes: axes, keepDims: true, noopWithEmptyAxes: false), [sq], "mean_square")
        let rms = n.step(.unary(.sqrt), [n.step(.binary(.add), [ms, eps], "plus_eps")], "rms")
        let y = n.step(.binary(.div), [x, rms], "normalized")
        n.emit(.binary(.mul), inputs: [y, n.input(1)], outputs: [n.outputs[0]])
    }]
    t["GroupNormalization"] = [v(18) { n in
        // Statistics over [N, G, -1]; opset 18 scales per group there, 21 per channel on
        // [N, C, -1]; then the input's shape comes back.
        let groups = try n.requiredInt("num_groups")
        let eps = n.constant(floats: [try n.float("epsilon", default: 1e-5)], shape: [], "epsilon")
        let shape = n.step(.shape(start: 0, end: nil), [n.input(0)], "shape")
        let grouped = n.step(.reshape(allowZero: false), [n.input(0), n.constant(ints: [0, groups, -1], "grouped_shape")], "grouped")
        let mean = n.step(.reduce(.mean, axes: [2], keepDims: true, noopWithEmptyAxes: false), [grouped], "mean")
        let centred = n.step(.binary(.sub), [grouped, mean], "centred")
        let variance = n.step(.reduce(.mean, axes: [2], keepDims: true, noopWithEmptyAxes: false),
                              [n.step(.binary(.mul), [centred, centred], "square")], "variance")
        let std = n.step(.unary(.sqrt), [n.step(.binary(.add), [variance, eps], "plus_eps")], "std")
        var y = n.step(.binary(.div), [centred, std], "normalized")
        let column = n.constant(ints: [1, -1, 1], "column")
        if n.opset < 21 {
            y = n.step(.binary(.mul), [y, n.step(.reshape(allowZero: false), [n.input(1), column], "scale_g")], "scaled")
            y = n.step(.binary(.add), [y, n.step(.reshape(allowZero: false), [n.input(2), column], "bias_g")], "biased")
        } else {
            y = n.step(.reshape(allowZero: false), [n.step(.reshape(allowZero: false), [y, shape], "restored"),
                                                      n.constant(ints: [0, 0, -1], "per_channel")], "per_channel_view")
            y = n.step(.binary(.mul), [y, n.step(.reshape(allowZero: false), [n.input(1), column], "scale_c")], "scaled")
            y = n.step(.binary(.add), [y, n.step(.reshape(allowZero: false), [n.input(2), column], "bias_c")], "biased")
        }
        n.emit(.reshape(allowZero: false), inputs: [y, shape])
    }]
    t["MeanVarianceNormalization"] = [v(9) { n in
        // (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9) over `axes`.
        let axes = try n.ints("axes") ?? [0, 2, 3]
        let mean = Op.reduce(.mean, axes: axes, keepDims: true, noopWithEmptyAxes: false)
        let m = n.step(mean, [n.input(0)], "mean")
        let ex2 = n.step(mean, [n.step(.binary(.mul), [n.input(0), n.input(0)], "square")], "mean_square")
        let std = n.step(.unary(.sqrt), [n.step(.binary(.sub), [ex2, n.step(.binary(.mul), [m, m], "mean_squared")], "variance")], "std")
        let denom = n.step(.binary(.add), [std, n.constant(floats: [1e-9], shape: [], "epsilon")], "denominator")
        n.emit(.binary(.div), inputs: [n.step(.binary(.sub), [n.input(0), m], "centred"), denom])
    }]
    t["AffineGrid"] = [v(20, translateAffineGrid)]
    t["ReverseSequence"] = [v(10, translateReverseSequence)]
    t["STFT"] = [v(17, translateSTFT)]
    t["CausalConvWithState"] = [v(27, translateCausalConv)]
    t["TensorScatter"] = [v(24, translateTensorScatter)]
    t["LinearAttention"] = [v(27) { n in
        guard let qh = try n.int("q_num_heads"), let kvh = try n.int("kv_num_heads") else {
            throw n.error("attributes 'q_num_heads' and 'kv_num_heads' are required")
        }
        let rule = try n.string("update_rule", default: "gated_delta")
        let gated = rule == "gated" || rule == "gated_delta", delta = rule == "delta" || rule == "gated_delta"
        guard ["linear", "gated", "delta", "gated_delta"].contains(rule) else { throw n.error("attribute 'update_rule' = '\(rule)' is not known") }
        guard gated == !n.input(4).isEmpty, delta == !n.input(5).isEmpty else {
            throw n.error("update_rule '\(rule)' needs decay exactly when gated and beta exactly when delta-corrected")
        }
        let scale = try n.float("scale").flatMap { $0 == 0 ? nil : $0 }
        n.emit(.linearAttention(qHeads: qh, kvHeads: kvh, scale: scale), inputs: (0..<6).map { n.input($0) },
               outputs: [n.outputs[0], n.outputUsed(1) ? n.outputs[1] : n.temporary("state")])
    }]
    t["LpNormalization"] = [v(1) { n in
        let axis = try n.int("axis", default: -1), p = try n.int("p", default: 2)
        let kind: ReduceFunction
        switch p {
        case 1: kind = .l1
        case 2: kind = .l2
        default: throw n.error("attribute 'p' = \(p), expected 1 or 2")
        }
        let norm = n.step(.reduce(kind, axes: [axis], keepDims: true, noopWithEmptyAxes: false), [n.input(0)], "norm")
        // An all-zero slice stays zero (0 / 0 would be NaN).
        let safe = n.step(.binary(.max), [norm, n.constant(floats: [Float.leastNormalMagnitude], shape: [], "tiny")], "safe_norm")
        n.emit(.binary(.div), inputs: [n.input(0), safe])
    }]
    t["EyeLike"] = [v(9) { n in
        // ones(shape(x)) upper triangle from k minus the one from k + 1: the k-th diagonal.
        let k = try n.int("k", default: 0)
        let shape = n.step(.shape(start: 0, end: nil), [n.input(0)], "shape")
        let ones = n.step(.constantOfShape(value: Tensor(shape: [1], floats: [1])), [shape], "ones")
        let upper = n.step(.triangle(upper: true), [ones, n.constant(ints: [k], "k")], "from_k")
        let above = n.step(.triangle(upper: true), [ones, n.constant(ints: [k + 1], "k1")], "from_k1")
        let eye = n.step(.binary(.sub), [upper, above], "eye")
        if let code = try n.int("dtype") {
            guard let c = Int32(exactly: code) else { throw n.error("attribute 'dtype' = \(code) is not a known type") }
            n.emit(.cast(to: try braidType(code: c, subject: n.name)), inputs: [eye])
        } else {
            n.emit(.castLike, inputs: [eye, n.input(0)])
        }
    }]
    t["NegativeLogLikelihoodLoss"] = [v(12) { n in
        try negativeLogLikelihood(n, logProb: n.input(0), target: n.input(1), weight: n.input(2), output: n.outputs[0])
    }]
    t["SoftmaxCrossEntropyLoss"] = [v(12) { n in
        let logProb = n.outputUsed(1) ? n.outputs[1] : n.temporary("log_prob")
        n.emit(.softmax(.logSoftmax, axis: 1, coerce2D: false), inputs: [n.input(0)], outputs: [logProb])
        try negativeLogLikelihood(n, logProb: logProb, target: n.input(1), weight: n.input(2), output: n.outputs[0])
    }]
    return t
}()

extension NodeTranslation {
    /// Emits one IR node writing a fresh temporary value; returns the value's name.
    func step(_ op: Op, _ inputs: [String], _ role: String) -> String {
        let out = temporary(role)
        emit(op, inputs: inputs, outputs: [out])
        return out
    }
}

/// The axes from `axis` to the last: negative ones need no rank, others the input's rank at
/// import.
private func normalizedAxes(_ n: NodeTranslation, from axis: Int) throws -> [Int] {
    if axis < 0 { return Array(axis...(-1)) }
    guard let rank = n.knownShape(0)?.count else {
        throw n.error("attribute 'axis' = \(axis) needs the input's rank at import; use a negative axis")
    }
    return Array(axis..<rank)
}

/// LayerNormalization with its Mean and InvStdDev outputs used: the arithmetic in IR
/// primitives (statistics over the axes from `axis`, kept as size-1 axes).
func layerNormWithStatistics(_ n: NodeTranslation) throws {
    let axes = try normalizedAxes(n, from: try n.int("axis", default: -1))
    let eps = n.constant(floats: [try n.float("epsilon", default: 1e-5)], shape: [], "epsilon")
    let x = n.input(0)
    let reduceMean = Op.reduce(.mean, axes: axes, keepDims: true, noopWithEmptyAxes: false)
    let mean = n.outputUsed(1) ? n.outputs[1] : n.temporary("mean")
    n.emit(reduceMean, inputs: [x], outputs: [mean])
    let centred = n.step(.binary(.sub), [x, mean], "centred")
    let variance = n.step(reduceMean, [n.step(.binary(.mul), [centred, centred], "square")], "variance")
    let std = n.step(.unary(.sqrt), [n.step(.binary(.add), [variance, eps], "plus_eps")], "std")
    let inv = n.outputUsed(2) ? n.outputs[2] : n.temporary("inv_std")
    n.emit(.unary(.reciprocal), inputs: [std], outputs: [inv])
    let scaled = n.step(.binary(.mul), [n.step(.binary(.mul), [centred, inv], "normalized"), n.input(1)], "scaled")
    if n.input(2).isEmpty {
        n.emit(.identity, inputs: [scaled], outputs: [n.outputs[0]])
    } else {
        n.emit(.binary(.add), inputs: [scaled, n.input(2)], outputs: [n.outputs[0]])
    }
}

/// `loss[i] = -logProb[i, target[i], ...] * weight[target[i]]`, zero where the target is
/// `ignore_index`; reduced by `reduction` (mean divides by the sum of the weights used).
private func negativeLogLikelihood(_ n: NodeTranslation, logProb: String, target: String, weight: String, output: String) throws {
    let reduction = try n.string("reduction", default: "mean")
    guard ["none", "sum", "mean"].contains(reduction) else {
        throw n.error("attribute 'reduction' = '\(reduction)', expected 'none', 'sum' or 'mean'")
    }
    let ignore = try n.int("ignore_index")
    var safe = target, valid: String?
    if let ignore {
        let ig = n.constant(Tensor(shape: [], ints: [Int64(ignore)]), "ignore_index")
        valid = n.step(.unary(.not), [n.step(.binary(.equal), [target, ig], "ignored")], "valid")
        let zeroIndex = n.step(.castLike, [n.constant(Tensor(shape: [], ints: [0]), "zero_index"), target], "zero_index_typed")
        safe = n.step(.select, [valid!, target, zeroIndex], "safe_target")
    }
    let axis1 = n.constant(ints: [1], "class_axis")
    let picked = n.step(.gatherElements(axis: 1), [logProb, n.step(.unsqueeze, [safe, axis1], "target_column")], "picked")
    var loss = n.step(.unary(.neg), [n.step(.squeeze, [picked, axis1], "picked_squeezed")], "nll")
    var weights: String?
    if !weight.isEmpty { weights = n.step(.gather(axis: 0), [weight, safe], "target_weight") }
    if let valid {
        let zero = n.constant(floats: [0], shape: [], "zero")
        weights = n.step(.select, [valid, weights ?? n.constant(floats: [1], shape: [], "one"), zero], "used_weight")
    }
    if let w = weights { loss = n.step(.binary(.mul), [loss, w], "weighted") }
    let all = Op.reduce(.sum, axes: nil, keepDims: false, noopWithEmptyAxes: false)
    switch reduction {
    case "none":
        n.emit(.identity, inputs: [loss], outputs: [output])
    case "sum":
        n.emit(all, inputs: [loss], outputs: [output])
    default:
        guard var w = weights else {
            n.emit(.reduce(.mean, axes: nil, keepDims: false, noopWithEmptyAxes: false), inputs: [loss], outputs: [output])
            return
        }
        // The weights used, broadcast to the loss's shape (a bare `valid` mask is a scalar 1).
        w = n.step(.binary(.add), [w, n.step(.binary(.mul), [loss, n.constant(floats: [0], shape: [], "zero_b")], "zeros")], "weights_full")
        n.emit(.binary(.div), inputs: [n.step(all, [loss], "total"), n.step(all, [w], "weight_total")], outputs: [output])
    }
}


/// AffineGrid: the normalised coordinates of every output position, `(x, y[, z], 1)` with x
/// along the last axis, times theta^T: `[N, s, s + 1]` -> grid `[N, spatial..., s]`. The size
/// operand must be known before the run (its values shape the grid).
@Sendable private func translateAffineGrid(_ n: NodeTranslation) throws {
    let align = try n.bool("align_corners", default: false)
    guard let s = n.knownShape(1).map({ $0[0] - 2 }) ?? n.knownShape(0).map({ $0[1] }), s == 2 || s == 3 else {
        throw n.error("AffineGrid needs 2 or 3 spatial axes known at import (from size's length or theta's shape)")
    }
    let size = n.step(.cast(to: .int64), [n.input(1)], "size")
    let spatial = n.step(.slice, [size, n.constant(ints: [2], "sp_start"), n.constant(ints: [2 + s], "sp_end")], "spatial")
    let zero = n.constant(Tensor(shape: [], ints: [0]), "zero"), one = n.constant(Tensor(shape: [], ints: [1]), "one")
    // Per spatial axis (in data order), its coordinates broadcast over the spatial shape.
    var coordinates: [String] = []
    for axis in 0..<s {
        let len = n.step(.gather(axis: 0), [spatial, n.constant(Tensor(shape: [], ints: [Int64(axis)]), "axis\(axis)")], "len\(axis)")
        let i = n.step(.cast(to: .float32), [n.step(.range, [zero, len, one], "i\(axis)")], "if\(axis)")
        let lenF = n.step(.cast(to: .float32), [len], "lenf\(axis)")
        let c: String
        if align {
            // -1 + 2 i / (len - 1), with len 1 giving -1.
            let span = n.step(.binary(.max), [n.step(.binary(.sub), [lenF, n.constant(floats: [1], shape: [], "one_f\(axis)")], "span\(axis)"),
                                              n.constant(floats: [1], shape: [], "min_span\(axis)")], "safe_span\(axis)")
            c = n.step(.binary(.sub), [n.step(.binary(.div), [n.step(.binary(.mul), [i, n.constant(floats: [2], shape: [], "two\(axis)")], "twice\(axis)"), span], "ratio\(axis)"),
                                      n.constant(floats: [1], shape: [], "shift\(axis)")], "coord\(axis)")
        } else {
            // (2 i + 1) / len - 1
            let odd = n.step(.binary(.add), [n.step(.binary(.mul), [i, n.constant(floats: [2], shape: [], "two\(axis)")], "twice\(axis)"),
                                             n.constant(floats: [1], shape: [], "one_f\(axis)")], "odd\(axis)")
            c = n.step(.binary(.sub), [n.step(.binary(.div), [odd, lenF], "ratio\(axis)"), n.constant(floats: [1], shape: [], "shift\(axis)")], "coord\(axis)")
        }
        let others = (0..<s).filter { $0 != axis }
        let placed = n.step(.unsqueeze, [c, n.constant(ints: others, "place\(axis)")], "placed\(axis)")
        coordinates.append(n.step(.expand, [placed, spatial], "full\(axis)"))
    }
    let ones = n.step(.constantOfShape(value: Tensor(shape: [1], floats: [1])), [spatial], "ones")
    let last = n.constant(ints: [-1], "component_axis")
    // Components x (last axis) first, then y[, z], then 1.
    let components = coordinates.reversed() + [ones]
    let base = n.step(.concat(axis: -1), components.map { n.step(.unsqueeze, [$0, last], $0 + "_c") }, "base")
    let flat = n.step(.reshape(allowZero: false), [base, n.constant(ints: [-1, s + 1], "flat_shape")], "base_flat")
    let grid = n.step(.matMul, [flat, n.step(.transpose(perm: [0, 2, 1]), [n.input(0)], "theta_t")], "grid_flat")
    let batch = n.step(.slice, [size, n.constant(ints: [0], "n_start"), n.constant(ints: [1], "n_end")], "batch")
    let shape = n.step(.concat(axis: 0), [batch, spatial, n.constant(ints: [s], "components")], "grid_shape")
    n.emit(.reshape(allowZero: false), inputs: [grid, shape])
}
