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
    // Add: (A - A_zp) * (A_scale / C_scale) + (B - B_zp) * (B_scale / C_scale), rounded;
    // Mul: (A - A_zp) * (B - B_zp) * (A_scale * B_scale / C_scale), rounded; then + C_zp.
    t["QLinearAdd"] = [v(1) { n in
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
