import BraidGraph
import BraidTensor

// ONNX ops that Braid translates into several IR primitives (the IR keeps no foreign
// composite): Swish, RMSNormalization, LayerNormalization with its statistics outputs,
// LpNormalization, EyeLike, NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss, Einsum
// (Einsum.swift), Attention (Attention.swift). CastLike maps to the IR's castLike.

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
    t["LpNormalization"] = [v(1) { n in
        let axis = try n.int("axis", default: -1), p = try n.int("p", default: 2)
        let kind: ReduceKind
        switch p {
        case 1: kind = .l1
        case 2: kind = .l2
        default: throw n.error("attribute 'p' = \(p), expected 1 or 2")
        }
        let norm = n.step(.reduce(kind, axes: [axis], keepDims: true, noopWithEmptyAxes: false), [n.input(0)], "norm")
        n.emit(.binary(.div), inputs: [n.input(0), norm])
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
