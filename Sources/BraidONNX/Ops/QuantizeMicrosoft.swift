import BraidGraph
import BraidTensor

// onnxruntime's com.microsoft quantized ops, the ones its quantize_static writes in the
// QOperator format beside ONNX's QLinearConv and QLinearMatMul. Each is lowered as its
// contrib-op spec reads: the int8/uint8 inputs dequantized ((q - zero point) * scale), the
// float op, then quantized with the output's scale and zero point (round half to even,
// saturated to the zero point's type, uint8 when it has none). QGemm, QLinearAdd, QLinearMul
// and QLinearGlobalAveragePool follow onnxruntime's arithmetic (integer accumulation, its
// scale ratios), so they round as it does; Softmax, Sigmoid and Concat onnxruntime computes
// through lookup tables of the same function, which can differ by one step.

let microsoftOps: OpTable = {
    var t: OpTable = [:]
    // A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp. As onnxruntime's kernels compute them:
    // Add: (A - A_zp) * (A_scale / C_scale) + (B - B_zp) * (B_scale / C_scale), rounded (with
    // constant scales and zero points exactly as onnxruntime's x86 kernel: `onnxruntimeAdd`);
    // Mul: (A - A_zp) * (B - B_zp) * (A_scale * B_scale / C_scale), rounded; then + C_zp.
    t["QLinearAdd"] = [v(1) { n in
        if try onnxruntimeAdd(n) { return }
        func part(_ x: Int, _ role: String) -> String {
            let ratio = n.step(.binary(.div), [n.input(x + 1), n.input(6)], role + "_ratio")
            return n.step(.binary(.mul), [centredInteger(n, x, x + 2, role), ratio], role + "_scaled")
        }
        try requantizeScaled(n, n.step(.binary(.add), [part(0, "a"), part(3, "b")], "scaled"), zeroPoint: 7)
    }]
    t["QLinearMul"] = [v(1) { n in
        let product = n.step(.binary(.mul), [centredInteger(n, 0, 2, "a"), centredInteger(n, 3, 5, "b")], "product")
        let multiplier = n.step(.binary(.div), [n.step(.binary(.mul), [n.input(1), n.input(4)], "ab_scale"), n.input(6)], "multiplier")
        try requantizeScaled(n, n.step(.binary(.mul), [product, multiplier], "scaled"), zeroPoint: 7)
    }]
    // X, x_scale, x_zp, y_scale, y_zp.
    // As onnxruntime's MLAS kernel: the sum of the centred integers times x_scale / (y_scale *
    // pixels), rounded, + y_zp.
    t["QLinearGlobalAveragePool"] = [v(1) { n in
        guard try !n.bool("channels_last", default: false) else {
            throw n.error("channels_last = 1 is not supported (NCHW data expected)")
        }
        // [N, C, pixels]: the integer sum over the pixels, times x_scale / (y_scale * pixels).
        let centred = centredInteger(n, 0, 2, "x")
        let flat = n.step(.reshape(allowZero: false), [centred, n.constant(ints: [0, 0, -1], "flat_shape")], "flat")
        let sum = n.step(.reduce(.sum, axes: [2], keepDims: true, noopWithEmptyAxes: false), [flat], "sum")
        let pixels = n.step(.cast(to: .float32), [n.step(.shape(start: 2, end: 3), [flat], "pixels_int")], "pixels")
        let multiplier = n.step(.binary(.div), [n.input(1), n.step(.binary(.mul), [n.input(3), pixels], "y_scale_pixels")], "multiplier")
        let scaled = n.step(.binary(.mul), [sum, multiplier], "scaled_flat")
        // Back to the pooled shape [N, C, 1, ...].
        let pooledShape = n.step(.shape(start: 0, end: nil), [n.step(.globalPool(.average), [centred], "pooled")], "pooled_shape")
        try requantizeScaled(n, n.step(.reshape(allowZero: false), [scaled, pooledShape], "scaled"), zeroPoint: 4)
    }]
    t["QLinearAveragePool"] = [v(1) { n in
        guard try !n.bool("channels_last", default: false) else {
            throw n.error("channels_last = 1 is not supported (NCHW data expected)")
        }
        let params = try poolParams(n, .average, dilations: false, ceil: true, includePad: true)
        try requantize(n, n.step(.pool(params), [dequantized(n, 0, 1, 2, "x")], "pooled"), scale: 3, zeroPoint: 4)
    }]
    t["QLinearSigmoid"] = [v(1) { n in
        try requantize(n, n.step(.unary(.sigmoid), [dequantized(n, 0, 1, 2, "x")], "sigmoid"), scale: 3, zeroPoint: 4)
    }]
    t["QLinearLeakyRelu"] = [v(1) { n in
        let alpha = try n.float("alpha", default: 0.01)
        try requantize(n, n.step(.unary(.leakyRelu(alpha: alpha)), [dequantized(n, 0, 1, 2, "x")], "leaky"), scale: 3, zeroPoint: 4)
    }]
    // The `opset` attribute is the opset of the Softmax it replaced (before 13: 2-D coercion).
    t["QLinearSoftmax"] = [v(1) { n in
        let opset = try n.requiredInt("opset")
        let axis = try n.int("axis", default: opset < 13 ? 1 : -1)
        let y = n.step(.softmax(.softmax, axis: axis, coerce2D: opset < 13), [dequantized(n, 0, 1, 2, "x")], "softmax")
        try requantize(n, y, scale: 3, zeroPoint: 4)
    }]
    // Y_scale, Y_zp, then (X, X_scale, X_zp) per input.
    t["QLinearConcat"] = [v(1) { n in
        let count = n.inputs.count - 2
        guard count > 0, count % 3 == 0 else { throw n.error("expected Y_scale, Y_zero_point and (X, scale, zero point) triples, got \(n.inputs.count) inputs") }
        let parts = (0..<count / 3).map { k in dequantized(n, 2 + 3 * k, 3 + 3 * k, 4 + 3 * k, "x\(k)") }
        let y = n.step(.concat(axis: try n.requiredInt("axis")), parts, "concat")
        try requantize(n, y, scale: 0, zeroPoint: 1)
    }]
    // A, a_scale, a_zp, B, b_scale, b_zp, C (int32, scale a_scale * b_scale), y_scale, y_zp;
    // float output when y_scale is absent. b_scale may be per output column.
    t["QGemm"] = [v(1) { n in
        let transA = try n.bool("transA", default: false), transB = try n.bool("transB", default: false)
        let alpha = try n.float("alpha", default: 1)
        if n.input(7).isEmpty {
            // Float output: the dequantized product.
            let a = dequantized(n, 0, 1, 2, "a")
            let b = dequantized(n, 3, 4, 5, "b", perChannelAxis: transB ? 0 : nil)
            var inputs = [a, b]
            if !n.input(6).isEmpty {
                let c = n.step(.cast(to: .float32), [n.input(6)], "c_float")
                let cscale = n.step(.binary(.mul), [n.input(1), n.input(4)], "c_scale")
                inputs.append(n.step(.binary(.mul), [c, cscale], "c_real"))
            }
            n.emit(.gemm(transA: transA, transB: transB, alpha: alpha, beta: 1), inputs: inputs, outputs: [n.outputs[0]])
            return
        }
        // Quantized output: the integer accumulator plus C, times alpha * a_scale * b_scale / y_scale.
        // A per-column zero point of B^T [N, K] is centred along its rows.
        let b = centredInteger(n, 3, 5, "b", perChannelRank: transB ? 2 : nil)
        var inputs = [centredInteger(n, 0, 2, "a"), b]
        if !n.input(6).isEmpty { inputs.append(n.step(.cast(to: .float32), [n.input(6)], "c_float")) }
        let acc = n.step(.gemm(transA: transA, transB: transB, alpha: 1, beta: 1), inputs, "acc")
        var multiplier = n.step(.binary(.div), [n.step(.binary(.mul), [n.input(1), n.input(4)], "ab_scale"), n.input(7)], "multiplier")
        if alpha != 1 { multiplier = n.step(.binary(.mul), [multiplier, n.constant(floats: [alpha], shape: [], "alpha")], "alpha_multiplier") }
        try requantizeScaled(n, n.step(.binary(.mul), [acc, multiplier], "scaled"), zeroPoint: 8)
    }]
    return t
}()

/// (input `x` - zero point `zp`) * scale `scale` in float32; the zero point may be absent.
/// `perChannelAxis` 0 reshapes a per-channel scale and zero point to [C, 1] (rows of a 2-D B).
private func dequantized(_ n: NodeTranslation, _ x: Int, _ scale: Int, _ zp: Int, _ role: String,
                         perChannelAxis: Int? = nil) -> String {
    var s = n.input(scale)
    if perChannelAxis == 0, let shape = n.knownShape(scale), shape.product > 1 {
        s = n.step(.reshape(allowZero: false), [s, n.constant(ints: [shape.product, 1], role + "_column")], role + "_scale_c")
    }
    let centred = centredInteger(n, x, zp, role, perChannelRank: perChannelAxis == 0 ? 2 : nil)
    return n.step(.binary(.mul), [centred, s], role + "_real")
}

/// Rounds `scaled` (already divided by the output scale), adds the node's input `zeroPoint`
/// and saturates into its type (uint8 when it has none), as the first output.
func requantizeScaled(_ n: NodeTranslation, _ scaled: String, zeroPoint: Int) throws {
    let zp = n.input(zeroPoint)
    try quantize(n, scaled, zeroPoint: zp.isEmpty ? nil : zp, to: n.knownElementType(zeroPoint) ?? .uint8,
                 saturate: true, output: n.outputs[0])
}

/// Quantizes `real` with the node's inputs `scale` and `zeroPoint` into its first output.
private func requantize(_ n: NodeTranslation, _ real: String, scale: Int, zeroPoint: Int) throws {
    let zp = n.input(zeroPoint)
    try quantize(n, n.step(.binary(.div), [real, n.input(scale)], "scaled"), zeroPoint: zp.isEmpty ? nil : zp,
                 to: n.knownElementType(zeroPoint) ?? .uint8, saturate: true, output: n.outputs[0])
}

/// QLinearAdd as onnxruntime's x86 kernel (MLAS, AVX2) computes it, when the scales and zero
/// points are constants: with ratios `rA = A_scale / C_scale`, `rB = B_scale / C_scale` and
/// `fixed = C_zp - (rA * A_zp + rB * B_zp)` in float32, each output is
/// `round_half_even(fma(A, rA, fma(B, rB, fixed)))` saturated, A and B the raw integers (a
/// one-element B is folded into `fixed` first: `fixed + B * rB`, two roundings). The kernel's
/// fused multiply-adds round once where a multiply and an add round twice, which moves a
/// value at a rounding boundary one step; Braid's IR has no fused multiply-add, so each one is
/// rebuilt from float32 operations that round as it does: the ratio split as `hi + lo` (its
/// 12 leading significant bits, then the rest), so that `x * hi` and `x * lo` are exact for
/// 8-bit integers x, and the sum `x * hi + c` with its exact rounding error (Knuth's two-sum)
/// added to `x * lo` before the last rounding. This equals the single rounding except where
/// that sum lands exactly between two floats after a first rounding (double rounding), which
/// does not move an integer label of 8-bit data in practice. Returns false (the generic
/// lowering applies) when a scale or zero point is not an initializer.
private func onnxruntimeAdd(_ n: NodeTranslation) throws -> Bool {
    func scalar(_ i: Int) -> Float? {
        guard let t = n.initializerValue(i), t.count == 1 else { return nil }
        return t.dtype.isFloat ? t.floats[0] : Float(t.ints[0])
    }
    guard let sA = scalar(1), let zA = scalar(2),
          let sB = scalar(4), let zB = scalar(5),
          let sC = scalar(6), let zC = scalar(7),
          sA.isFinite, sB.isFinite, sC.isNormal else { return false }
    // 8-bit data only (onnxruntime computes 16-bit types another way, and `fusedMultiplyAdd`
    // is exact for up to 12-bit integers); the output's type is its zero point's.
    let eightBit: Set<ONNXDataType> = [.int8, .uint8]
    guard let outType = n.knownElementType(7), eightBit.contains(outType),
          n.knownElementType(2).map(eightBit.contains) ?? false,
          n.knownElementType(5).map(eightBit.contains) ?? false else { return false }
    let rA = sA / sC, rB = sB / sC
    let products = rA * zA + rB * zB
    let fixed = zC - products
    let a = n.step(.cast(to: .float32), [n.input(0)], "a_float")
    let b = n.step(.cast(to: .float32), [n.input(3)], "b_float")
    let result: String
    if n.knownShape(3)?.product == 1 {
        let shifted = n.step(.binary(.add), [n.constant(floats: [fixed], shape: [], "fixed"),
                                             n.step(.binary(.mul), [b, n.constant(floats: [rB], shape: [], "b_ratio")], "b_scaled")],
                             "fixed_b")
        result = fusedMultiplyAdd(n, a, rA, shifted, "a")
    } else {
        let inner = fusedMultiplyAdd(n, b, rB, n.constant(floats: [fixed], shape: [], "fixed"), "b")
        result = fusedMultiplyAdd(n, a, rA, inner, "a")
    }
    try quantize(n, result, zeroPoint: nil, to: outType, saturate: true, output: n.outputs[0])
    return true
}

/// `x * ratio + c` rounded once to float32, for integer-valued `x` of at most 12 significant
/// bits and a constant `ratio` (see `onnxruntimeAdd`).
private func fusedMultiplyAdd(_ n: NodeTranslation, _ x: String, _ ratio: Float, _ c: String, _ role: String) -> String {
    let hi = Float(bitPattern: ratio.bitPattern & ~0xFFF), lo = ratio - hi
    let p1 = n.step(.binary(.mul), [x, n.constant(floats: [hi], shape: [], role + "_ratio_hi")], role + "_p1")
    let p2 = n.step(.binary(.mul), [x, n.constant(floats: [lo], shape: [], role + "_ratio_lo")], role + "_p2")
    // Two-sum: s + e == p1 + c exactly.
    let s = n.step(.binary(.add), [p1, c], role + "_s")
    let bv = n.step(.binary(.sub), [s, p1], role + "_bv")
    let av = n.step(.binary(.sub), [s, bv], role + "_av")
    let e = n.step(.binary(.add), [n.step(.binary(.sub), [p1, av], role + "_ea"),
                                   n.step(.binary(.sub), [c, bv], role + "_eb")], role + "_e")
    return n.step(.binary(.add), [s, n.step(.binary(.add), [e, p2], role + "_tail")], role + "_fma")
}
