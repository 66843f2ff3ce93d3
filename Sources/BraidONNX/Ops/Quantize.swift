import BraidGraph
import BraidTensor

// Linear quantization -> IR primitives on float32: DequantizeLinear is (x - zero_point) *
// scale, QuantizeLinear rounds x / scale half to even, adds the zero point and saturates to
// the target type (float8/float4 targets round onto their grid instead), QLinearMatMul is a
// MatMul between the two, DynamicQuantizeLinear finds uint8 scale and zero point from the
// data's range. Per-axis scales need the data's rank at import, blocked scales its shape.

let quantizeOps: OpTable = {
    var t: OpTable = [:]
    t["DequantizeLinear"] = [v(10) { n in
        let axis = n.opset >= 13 ? try n.int("axis", default: 1) : 1
        let block = try n.int("block_size", default: 0)
        let (scale, zp) = try aligned(n, scale: 1, zeroPoint: 2, axis: axis, block: block)
        var x = n.step(.cast(to: .float32), [n.input(0)], "x_float")
        if let zp { x = n.step(.binary(.sub), [x, n.step(.cast(to: .float32), [zp], "zp_float")], "centred") }
        n.emit(.binary(.mul), inputs: [x, scale], outputs: [n.outputs[0]])
    }]
    t["QuantizeLinear"] = [v(10) { n in
        let axis = n.opset >= 13 ? try n.int("axis", default: 1) : 1
        let block = try n.int("block_size", default: 0)
        let (scale, zp) = try aligned(n, scale: 1, zeroPoint: 2, axis: axis, block: block)
        var target = n.knownElementType(2) ?? .uint8
        if n.input(2).isEmpty, let code = try n.int("output_dtype"), code != 0 {
            guard let c = Int32(exactly: code), let t = ONNXDataType(rawValue: c) else { throw n.error("attribute 'output_dtype' = \(code) is not a known type") }
            target = t
        }
        let saturate = n.opset >= 19 ? try n.bool("saturate", default: true) : true
        try quantize(n, n.step(.binary(.div), [n.input(0), scale], "scaled"), zeroPoint: zp, to: target,
                     saturate: saturate, output: n.outputs[0])
    }]
    // QLinearMatMul and QLinearConv accumulate the centred integers ((q - zero point), exact in
    // float32 while partial sums stay below 2^24), add the int32 bias, then requantize as
    // onnxruntime does: round-half-to-even(acc * (x_scale * w_scale / y_scale)) + y_zero_point,
    // the multiplier computed in float32 in that order (per output channel when w_scale is).
    t["QLinearMatMul"] = [v(10) { n in
        // b_scale / b_zero_point may be per column [N]: they broadcast along the last axis.
        let acc = n.step(.matMul, [centredInteger(n, 0, 2, "a"), centredInteger(n, 3, 5, "b")], "acc")
        let multiplier = n.step(.binary(.div), [n.step(.binary(.mul), [n.input(1), n.input(4)], "ab_scale"), n.input(6)], "multiplier")
        try requantizeScaled(n, n.step(.binary(.mul), [acc, multiplier], "scaled"), zeroPoint: 7)
    }]
    t["QLinearConv"] = [v(10) { n in
        let params = try convParams(n, weight: 3)
        let channelShape = [-1] + Array(repeating: 1, count: params.kernel.count)
        var inputs = [centredInteger(n, 0, 2, "x"), centredInteger(n, 3, 5, "w", perChannelRank: params.kernel.count + 2)]
        if !n.input(8).isEmpty { inputs.append(n.step(.cast(to: .float32), [n.input(8)], "bias_float")) }
        let acc = n.step(.conv(params), inputs, "acc")
        var multiplier = n.step(.binary(.div), [n.step(.binary(.mul), [n.input(1), n.input(4)], "xw_scale"), n.input(6)], "multiplier")
        if let s = n.knownShape(4), s.product > 1 {
            multiplier = n.step(.reshape(allowZero: false), [multiplier, n.constant(ints: channelShape, "channel_shape")], "multiplier_c")
        }
        try requantizeScaled(n, n.step(.binary(.mul), [acc, multiplier], "scaled"), zeroPoint: 7)
    }]
    // Integer products computed in float32 (exact while partial sums stay below 2^24).
    t["ConvInteger"] = [v(10) { n in
        let params = try convParams(n)
        // A per-output-channel weight zero point [M] applies along the weight's first axis.
        let y = n.step(.conv(params), [centredInteger(n, 0, 2, "x"),
                                       centredInteger(n, 1, 3, "w", perChannelRank: params.kernel.count + 2)], "conv")
        n.emit(.cast(to: .int32), inputs: [y])
    }]
    t["MatMulInteger"] = [v(10) { n in
        n.emit(.cast(to: .int32), inputs: [n.step(.matMul, [centredInteger(n, 0, 2, "a"), centredInteger(n, 1, 3, "b")], "product")])
    }]
    t["DynamicQuantizeLinear"] = [v(11) { n in
        let all = { (k: ReduceFunction) in Op.reduce(k, axes: nil, keepDims: false, noopWithEmptyAxes: false) }
        let zero = n.constant(floats: [0], shape: [], "zero")
        let lo = n.step(.binary(.min), [n.step(all(.min), [n.input(0)], "data_min"), zero], "range_min")
        let hi = n.step(.binary(.max), [n.step(all(.max), [n.input(0)], "data_max"), zero], "range_max")
        let scale = n.outputUsed(1) ? n.outputs[1] : n.temporary("scale")
        // An all-zero input has no range: scale 1 as onnxruntime takes it (the spec's formula
        // divides by zero there; the quantized values are 0 with either choice).
        let range = n.step(.binary(.sub), [hi, lo], "range")
        let spread = n.step(.binary(.div), [range, n.constant(floats: [255], shape: [], "levels")], "spread")
        n.emit(.select, inputs: [n.step(.binary(.equal), [range, zero], "no_range"),
                                 n.constant(floats: [1], shape: [], "unit_scale"), spread], outputs: [scale])
        let zpReal = n.step(.binary(.sub), [zero, n.step(.binary(.div), [lo, scale], "min_scaled")], "zp_real")
        let zpRounded = n.step(.clip, [n.step(.unary(.round), [zpReal], "zp_round"), zero,
                                       n.constant(floats: [255], shape: [], "zp_max")], "zp_clipped")
        let zpOut = n.outputUsed(2) ? n.outputs[2] : n.temporary("zero_point")
        n.emit(.cast(to: .uint8), inputs: [zpRounded], outputs: [zpOut])
        try quantize(n, n.step(.binary(.div), [n.input(0), scale], "scaled"), zeroPoint: zpRounded, to: .uint8,
                     saturate: true, output: n.outputs[0], zeroPointIsFloat: true)
    }]
    return t
}()

/// Input `x` minus zero point `zp` (when present) in float32: integer values. With
/// `perChannelRank`, a zero point of more than one element is reshaped to [C, 1, ...] of that
/// rank (a convolution weight's output channels).
func centredInteger(_ n: NodeTranslation, _ x: Int, _ zp: Int, _ role: String, perChannelRank: Int? = nil) -> String {
    let f = n.step(.cast(to: .float32), [n.input(x)], role + "_float")
    guard !n.input(zp).isEmpty else { return f }
    var z = n.step(.cast(to: .float32), [n.input(zp)], role + "_zp")
    if let rank = perChannelRank, let s = n.knownShape(zp), s.product > 1 {
        let shape = n.constant(ints: [s.product] + Array(repeating: 1, count: rank - 1), role + "_zp_shape")
        z = n.step(.reshape(allowZero: false), [z, shape], role + "_zp_c")
    }
    return n.step(.binary(.sub), [f, z], role + "_centred")
}

/// The integer range of a quantized integer type, or nil for float targets.
private func integerRange(_ t: ONNXDataType) -> (Float, Float)? {
    switch t {
    case .uint8: return (0, 255)
    case .int8: return (-128, 127)
    case .uint16: return (0, 65535)
    case .int16: return (-32768, 32767)
    case .int32: return (-2_147_483_648, 2_147_483_647)
    case .uint4: return (0, 15)
    case .int4: return (-8, 7)
    case .uint2: return (0, 3)
    case .int2: return (-2, 1)
    default: return nil
    }
}

/// `scaled + zero point` saturated into `to`, written to `output`.
func quantize(_ n: NodeTranslation, _ scaled: String, zeroPoint: String?, to: ONNXDataType, saturate: Bool,
                      output: String, zeroPointIsFloat: Bool = false) throws {
    guard let dtype = to.braidType else { throw n.error("cannot quantize to \(to.name)") }
    let zpFloat = zeroPoint.flatMap { $0.isEmpty ? nil : $0 }.map {
        zeroPointIsFloat ? $0 : n.step(.cast(to: .float32), [$0], "zp_float")
    }
    if let (lo, hi) = integerRange(to) {
        var y = n.step(.unary(.round), [scaled], "rounded")
        if let zpFloat { y = n.step(.binary(.add), [y, zpFloat], "shifted") }
        y = n.step(.clip, [y, n.constant(floats: [lo], shape: [], "lo"), n.constant(floats: [hi], shape: [], "hi")], "saturated")
        n.emit(.cast(to: dtype), inputs: [y], outputs: [output])
        return
    }
    guard let format = to.narrowFormat else { throw n.error("cannot quantize to \(to.name)") }
    var y = scaled
    if let zpFloat { y = n.step(.binary(.add), [y, zpFloat], "shifted") }
    n.emit(.unary(.narrow(format, saturate: saturate)), inputs: [y], outputs: [output])
}

/// Scale and zero point shaped to broadcast against the data: per tensor as they are,
/// per axis as `[C, 1, ...]`, blocked repeated `block` times along `axis` and cut to its size.
private func aligned(_ n: NodeTranslation, scale: Int, zeroPoint: Int, axis: Int, block: Int) throws -> (String, String?) {
    let zp = n.input(zeroPoint).isEmpty ? nil : n.input(zeroPoint)
    let scaleShape = n.knownShape(scale)
    // A scale computed by the graph (shape unknown at import) is taken as per tensor.
    guard let s = scaleShape, s.product != 1 || block > 0 else { return (n.input(scale), zp) }
    guard let xShape = n.knownShape(0) else {
        throw n.error("a per-axis or blocked scale needs the data's shape at import")
    }
    let r = xShape.count, a = axis < 0 ? axis + r : axis
    guard a >= 0 && a < r else { throw n.error("attribute 'axis' = \(axis) is outside rank \(r)") }
    func fit(_ v: String, _ role: String) -> String {
        if block > 0 {
            // [.., nb, ..] -> [.., nb, block, ..] -> [.., nb * block, ..] -> first D along axis.
            guard let s = scaleShape, s.count == r else { return v }
            let u = n.step(.unsqueeze, [v, n.constant(ints: [a + 1], role + "_axis")], role + "_u")
            var target = s
            target.insert(block, at: a + 1)
            let e = n.step(.expand, [u, n.constant(ints: target, role + "_target")], role + "_e")
            var flat = s
            flat[a] = s[a] * block
            let f = n.step(.reshape(allowZero: false), [e, n.constant(ints: flat, role + "_flat")], role + "_flat")
            return n.step(.slice, [f, n.constant(ints: [0], role + "_start"), n.constant(ints: [xShape[a]], role + "_end"),
                                   n.constant(ints: [a], role + "_slice_axis")], role + "_blocked")
        }
        let shape = [xShape[a]] + Array(repeating: 1, count: r - a - 1)
        return n.step(.reshape(allowZero: false), [v, n.constant(ints: shape, role + "_shape")], role + "_per_axis")
    }
    let zpPerTensor = n.knownShape(zeroPoint).map { $0.product == 1 } ?? false
    return (fit(n.input(scale), "scale"), zp.map { zpPerTensor ? $0 : fit($0, "zp") })
}
