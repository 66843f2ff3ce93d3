import BraidGraph
import Foundation
import BraidTensor

/// Convolutions. Keras kernels are `[k..., in, out]` (depthwise: `[k..., in, multiplier]`,
/// transpose: `[k..., out, in]`); the IR wants `[out, in/group, k...]` (transpose:
/// `[in, out, k...]`), so kernels are permuted once at import.
let convLayers: [String: LayerTranslator] = [
    "Conv1D": { ctx, ins in try conv(ctx, ins, spatial: 1) },
    "Conv2D": { ctx, ins in try conv(ctx, ins, spatial: 2) },
    "Convolution1D": { ctx, ins in try conv(ctx, ins, spatial: 1) },
    "Convolution2D": { ctx, ins in try conv(ctx, ins, spatial: 2) },
    "DepthwiseConv1D": { ctx, ins in try depthwise(ctx, ins, spatial: 1, separable: false) },
    "DepthwiseConv2D": { ctx, ins in try depthwise(ctx, ins, spatial: 2, separable: false) },
    "SeparableConv1D": { ctx, ins in try depthwise(ctx, ins, spatial: 1, separable: true) },
    "SeparableConv2D": { ctx, ins in try depthwise(ctx, ins, spatial: 2, separable: true) },
    "Conv2DTranspose": { ctx, ins in try convTranspose(ctx, ins, spatial: 2) },
    "Conv1DTranspose": { ctx, ins in try convTranspose(ctx, ins, spatial: 1) },
]

/// Kernel size, strides, dilations and padding of a Keras conv or pooling layer.
struct Geometry {
    var kernel: [Int]
    var strides: [Int]
    var dilations: [Int]
    var padding: String

    init(_ ctx: LayerContext, spatial s: Int, kernelKey: String = "kernel_size", stridesDefault: [Int]? = nil) throws {
        guard let k = ctx.config.ints(kernelKey, count: s) ?? (kernelKey == "pool_size" ? Array(repeating: 2, count: s) : nil),
              k.count == s else { throw ctx.err("missing or bad '\(kernelKey)'") }
        kernel = k
        strides = ctx.config.ints("strides", count: s) ?? stridesDefault ?? Array(repeating: 1, count: s)
        dilations = ctx.config.ints("dilation_rate", count: s) ?? Array(repeating: 1, count: s)
        padding = (ctx.config.string("padding") ?? ctx.config.string("border_mode") ?? "valid").lowercased()
        guard strides.count == s, dilations.count == s else { throw ctx.err("bad strides or dilation_rate") }
        // Zero strides divide by zero in the output size; huge values overflow it.
        for (key, values) in [(kernelKey, kernel), ("strides", strides), ("dilation_rate", dilations)] {
            guard values.allSatisfy({ (1...Geometry.maxExtent).contains($0) }) else {
                throw ctx.err("'\(key)' \(values) must lie in 1...\(Geometry.maxExtent)")
            }
        }
        guard ["valid", "same", "causal"].contains(padding) else { throw ctx.err("unsupported padding '\(padding)'") }
    }

    /// The largest kernel size, stride or dilation accepted from a config.
    static let maxExtent = 1 << 16

    var effective: [Int] { zip(kernel, dilations).map { ($0 - 1) * $1 + 1 } }

    var convParams: (pads: [Int], autoPad: AutoPad) {
        switch padding {
        case "same": return (Array(repeating: 0, count: 2 * kernel.count), .sameUpper)
        case "causal": return ([effective[0] - 1, 0], .explicit)
        default: return (Array(repeating: 0, count: 2 * kernel.count), .explicit)
        }
    }

    func outputSize(_ input: [Int?]) -> [Int?] {
        zip(input, zip(effective, strides)).map { n, ks in
            guard let n else { return nil }
            let (k, s) = ks
            return padding == "valid" ? max((n - k) / s + 1, 0) : (n + s - 1) / s
        }
    }
}

/// Keras kernel `[k..., a, b]` -> IR `[b, a, k...]`.
private func kernelToIR(_ w: Tensor) -> Tensor {
    let s = w.rank - 2
    return permuted(w, [s + 1, s] + Array(0..<s))
}

private func bias(_ ctx: LayerContext, _ w: WeightCursor, _ n: Int) throws -> [String] {
    guard ctx.config.bool("use_bias") ?? true else { return [] }
    return [try ctx.weightConstant("bias") { try w.take("bias", shape: [n]) }]
}

private func conv(_ ctx: LayerContext, _ ins: [KTensor], spatial s: Int) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [s + 2])
    let g = try Geometry(ctx, spatial: s)
    guard let filters = ctx.config.int("filters") else { throw ctx.err("no 'filters'") }
    guard let cin = x.channels else { throw ctx.err("input channel count unknown") }
    let groups = ctx.config.int("groups") ?? 1
    guard groups >= 1, cin % groups == 0 else { throw ctx.err("\(cin) input channels not divisible by groups \(groups)") }
    let useBias = ctx.config.bool("use_bias") ?? true
    let w = try ctx.weights(useBias ? ["kernel", "bias"] : ["kernel"])
    let kernel = try w.take("kernel", shape: g.kernel.map { $0 } + [cin / groups, filters])
    let k = try ctx.weightConstant("kernel") { kernelToIR(kernel) }
    let (pads, autoPad) = g.convParams
    let p = ConvParams(kernel: g.kernel, strides: g.strides, pads: pads, dilations: g.dilations, group: groups, autoPad: autoPad)
    let y = ctx.add(.conv(p), [x.name, k] + (try bias(ctx, w, filters)))
    let shape = [nil] + g.outputSize(x.spatial) + [filters]
    return [try ctx.activation(KTensor(name: y, shape: shape, channelsFirst: true))]
}

/// DepthwiseConv and SeparableConv (a depthwise conv, then a 1x1 conv with the bias).
private func depthwise(_ ctx: LayerContext, _ ins: [KTensor], spatial s: Int, separable: Bool) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [s + 2])
    let g = try Geometry(ctx, spatial: s)
    guard let cin = x.channels else { throw ctx.err("input channel count unknown") }
    let mult = ctx.config.int("depth_multiplier") ?? 1
    let useBias = ctx.config.bool("use_bias") ?? true
    let filters = separable ? ctx.config.int("filters") : cin * mult
    guard let filters else { throw ctx.err("no 'filters'") }
    let names = (separable ? ["depthwise_kernel", "pointwise_kernel"] : ["depthwise_kernel"]) + (useBias ? ["bias"] : [])
    let w = try ctx.weights(names)
    // Keras 3 calls a DepthwiseConv's kernel "kernel", Keras 2 "depthwise_kernel".
    let dk = try w.take("depthwise_kernel", aliases: separable ? [] : ["kernel"], shape: g.kernel.map { $0 } + [cin, mult])
    let dw = try ctx.weightConstant("depthwise_kernel") {
        // [k..., C, M] -> [C*M, k...] (output channel c*M + m, as TensorFlow orders it) -> [C*M, 1, k...].
        let flat = dk.reshaped(g.kernel + [cin * mult])
        return permuted(flat, [s] + Array(0..<s)).reshaped([cin * mult, 1] + g.kernel)
    }
    let (pads, autoPad) = g.convParams
    let p = ConvParams(kernel: g.kernel, strides: g.strides, pads: pads, dilations: g.dilations, group: cin, autoPad: autoPad)
    let shape = [nil] + g.outputSize(x.spatial)
    if !separable {
        let y = ctx.add(.conv(p), [x.name, dw] + (try bias(ctx, w, filters)))
        return [try ctx.activation(KTensor(name: y, shape: shape + [filters], channelsFirst: true))]
    }
    let d = ctx.add(.conv(p), [x.name, dw], suffix: "depthwise")
    let pk = try w.take("pointwise_kernel", shape: Array(repeating: 1, count: s) + [cin * mult, filters])
    let pw = try ctx.weightConstant("pointwise_kernel") { kernelToIR(pk) }
    let ones = Array(repeating: 1, count: s)
    let pp = ConvParams(kernel: ones, strides: ones, pads: Array(repeating: 0, count: 2 * s), dilations: ones, group: 1)
    let y = ctx.add(.conv(pp), [d, pw] + (try bias(ctx, w, filters)))
    return [try ctx.activation(KTensor(name: y, shape: shape + [filters], channelsFirst: true))]
}

/// Keras 3's transpose-conv padding (`_convert_conv_transpose_padding_args_from_keras_to_jax`)
/// restated as IR begin/end pads and output padding.
private func convTranspose(_ ctx: LayerContext, _ ins: [KTensor], spatial s: Int) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [s + 2])
    let g = try Geometry(ctx, spatial: s)
    guard g.padding != "causal" else { throw ctx.err("causal padding is not supported for transposed convolution") }
    guard let filters = ctx.config.int("filters") else { throw ctx.err("no 'filters'") }
    guard let cin = x.channels else { throw ctx.err("input channel count unknown") }
    let outPad = ctx.config.ints("output_padding", count: s)
    let useBias = ctx.config.bool("use_bias") ?? true
    let w = try ctx.weights(useBias ? ["kernel", "bias"] : ["kernel"])
    let kernel = try w.take("kernel", shape: g.kernel.map { $0 } + [filters, cin])
    let k = try ctx.weightConstant("kernel") { kernelToIR(kernel) }
    var begins: [Int] = [], ends: [Int] = [], extra: [Int] = []
    for i in 0..<s {
        let r = kerasTransposePads(padding: g.padding, outputPadding: outPad?[i], effective: g.effective[i], stride: g.strides[i])
        begins.append(r.begin); ends.append(r.end); extra.append(r.extra)
    }
    guard begins.allSatisfy({ $0 >= 0 }) else { throw ctx.err("unsupported transpose padding") }
    let p = ConvParams(kernel: g.kernel, strides: g.strides, pads: begins + ends, dilations: g.dilations, group: 1)
    let y = ctx.add(.convTranspose(ConvTransposeParams(conv: p, outputPadding: extra, outputShape: nil)),
                    [x.name, k] + (try bias(ctx, w, filters)))
    let spatialOut: [Int?] = x.spatial.enumerated().map { i, n in
        n.map { ($0 - 1) * g.strides[i] + g.effective[i] + extra[i] - begins[i] - ends[i] }
    }
    return [try ctx.activation(KTensor(name: y, shape: [nil] + spatialOut + [filters], channelsFirst: true))]
}

// MARK: Writers

/// Convolutions back to Keras: IR kernels `[out, in/group, k...]` become `[k..., in/group,
/// out]`, depthwise `[C*M, 1, k...]` become `[k..., C, M]`, transpose `[in, out, k...]`
/// become `[k..., out, in]`. A per-channel constant added right after the conv (ONNX's
/// unfused bias) joins the layer's bias.
let convWriters: [String: LayerWriter] = [
    "conv": writeConv,
    "convTranspose": writeConvTranspose,
]

/// Keras kernel axes from IR kernel axes `[a, b, k...]`: `[k..., b, a]` when `swap`, else `[k..., a, b]`.
private func kernelToKeras(_ w: Tensor, swap: Bool) -> Tensor {
    let s = w.rank - 2
    return permuted(w, Array(2..<(2 + s)) + (swap ? [1, 0] : [0, 1]))
}

/// Keras `padding` for IR conv/pool geometry, and explicit `(begin, end)` pads a ZeroPadding
/// layer must add first when neither `valid` nor `same` matches for every input size.
func kerasPadding(_ autoPad: AutoPad, pads: [Int], kernel: [Int], dilations: [Int], strides: [Int]) throws
    -> (padding: String, explicit: [(Int, Int)]?) {
    let s = kernel.count
    switch autoPad {
    case .sameUpper: return ("same", nil)
    case .valid: return ("valid", nil)
    case .sameLower: throw Unmappable(reason: "SAME_LOWER padding has no Keras equivalent")
    case .explicit: break
    }
    let begins = Array(pads.prefix(s)), ends = Array(pads.dropFirst(s).prefix(s))
    if pads.allSatisfy({ $0 == 0 }) { return ("valid", nil) }
    let eff = zip(kernel, dilations).map { ($0 - 1) * $1 + 1 }
    let symmetricSame = (0..<s).allSatisfy { i in
        strides[i] == 1 && eff[i] % 2 == 1 && begins[i] == (eff[i] - 1) / 2 && ends[i] == begins[i]
    }
    if symmetricSame { return ("same", nil) }
    return ("valid", Array(zip(begins, ends)))
}

/// A ZeroPadding1D/2D layer on a channels-last tensor.
func zeroPadding(_ b: ExportBuilder, _ x: XTensor, _ pads: [(Int, Int)]) -> XTensor {
    let s = pads.count
    let config: [String: Any] = s == 1 ? ["padding": [pads[0].0, pads[0].1]]
        : ["padding": pads.map { [$0.0, $0.1] }, "data_format": "channels_last"]
    var shape = x.shape
    for (i, p) in pads.enumerated() { shape[i + 1] = shape[i + 1].map { $0 + p.0 + p.1 } }
    return b.addLayer("ZeroPadding\(s)D", config, inputs: [x], outputShape: shape, perm: x.perm, suffix: "pad")
}

/// A constant added to every channel of a conv's output (`[C]`, `[C, 1, 1]`, `[1, C, 1, 1]`).
func channelConstant(_ b: ExportBuilder, _ t: Tensor, channels: Int, rank: Int) -> Tensor? {
    guard t.count == channels, t.rank <= rank else { return nil }
    let aligned = Array(repeating: 1, count: rank - t.rank) + t.shape
    guard rank >= 2, aligned[1] == channels || channels == 1 else { return nil }
    return t.reshaped([channels])
}

/// Folds a following `+ constant` per channel into `bias`; returns the IR value the layer
/// then computes.
func absorbBiasAdd(_ b: ExportBuilder, _ out: String, channels: Int, bias: inout Tensor?) -> (String, Node?) {
    guard let add = b.soleConsumer(out), case .binary(.add) = add.op,
          let other = add.inputs.first(where: { $0 != out }), add.inputs.contains(out),
          let c = b.constant(other), let per = channelConstant(b, c, channels: channels, rank: b.shape(out).count),
          b.shape(add.outputs[0]) == b.shape(out) else { return (out, nil) }
    let sum = Tensor(zeros: [channels])
    for i in 0..<channels { sum.floats[i] = (bias?.floats[i] ?? 0) + per.floats[i] }
    bias = sum
    return (add.outputs[0], add)
}

private func writeConv(_ b: ExportBuilder, _ node: Node) throws {
    guard case .conv(let p) = node.op else { return }
    guard p.fusion == nil else { throw Unmappable(reason: "a fused convolution is for running only; export the graph from before Passes.optimizeForExecution") }
    let s = p.kernel.count
    guard s == 1 || s == 2 else { throw Unmappable(reason: "only 1-D and 2-D convolutions have Keras layers") }
    let w = try b.requireConstant(node, 1, "kernel")
    var bias: Tensor? = node.inputs.count > 2 && !node.inputs[2].isEmpty ? try b.requireConstant(node, 2, "bias") : nil
    var x = try b.channelsLast(try b.input(node))
    let cin = b.shape(node.inputs[0])[1], m = w.shape[0]
    let (padding, explicit) = try kerasPadding(p.autoPad, pads: p.pads, kernel: p.kernel, dilations: p.dilations, strides: p.strides)
    if let explicit { x = zeroPadding(b, x, explicit) }
    let (out, add) = absorbBiasAdd(b, node.outputs[0], channels: m, bias: &bias)
    var config: [String: Any] = ["kernel_size": p.kernel, "strides": p.strides, "padding": padding,
                                 "data_format": "channels_last", "dilation_rate": p.dilations,
                                 "activation": "linear", "use_bias": bias != nil]
    let cls: String
    var weights: [(String, Tensor)]
    if p.group == cin && p.group > 1 && m % cin == 0, bias == nil, let pw = pointwise(b, out, channels: m) {
        // Depthwise then a plain 1x1 conv: Keras's SeparableConv, as the importer splits it.
        cls = "SeparableConv\(s)D"
        config["depth_multiplier"] = m / cin
        config["filters"] = pw.kernel.shape[0]
        weights = [("depthwise_kernel", kernelToKeras(w.reshaped([cin, m / cin] + p.kernel), swap: false)),
                   ("pointwise_kernel", kernelToKeras(pw.kernel, swap: true))]
        var pwBias = pw.bias
        let (pwOut, pwAdd) = absorbBiasAdd(b, pw.node.outputs[0], channels: pw.kernel.shape[0], bias: &pwBias)
        config["use_bias"] = pwBias != nil
        if let pwBias { weights.append(("bias", pwBias.reshaped([pw.kernel.shape[0]]))) }
        let t = b.emit(node, cls, config, weights: weights, inputs: [x], perm: b.cfPerm(s + 2), output: pwOut)
        b.claim(pw.node, as: t)
        if let pwAdd { b.claim(pwAdd, as: t) }
        return
    } else if p.group == cin && p.group > 1 && m % cin == 0 {
        cls = "DepthwiseConv\(s)D"
        config["depth_multiplier"] = m / cin
        let split = w.reshaped([cin, m / cin] + p.kernel)
        weights = [("kernel", kernelToKeras(split, swap: false))]
    } else {
        cls = "Conv\(s)D"
        config["filters"] = m
        config["groups"] = p.group
        weights = [("kernel", kernelToKeras(w, swap: true))]
    }
    if let bias { weights.append(("bias", bias.reshaped([m]))) }
    let t = b.emit(node, cls, config, weights: weights, inputs: [x], perm: b.cfPerm(s + 2), output: out)
    if let add { b.claim(add, as: t) }
}

/// The 1x1, stride-1, unpadded, ungrouped conv that alone reads `value`, with its weights.
private func pointwise(_ b: ExportBuilder, _ value: String, channels: Int) -> (node: Node, kernel: Tensor, bias: Tensor?)? {
    guard let next = b.soleConsumer(value), case .conv(let p) = next.op, next.inputs[0] == value,
          p.group == 1, p.kernel.allSatisfy({ $0 == 1 }), p.strides.allSatisfy({ $0 == 1 }),
          p.pads.allSatisfy({ $0 == 0 }), p.autoPad == .explicit || p.autoPad == .valid,
          let k = b.constant(next.inputs[1]), k.shape.count >= 2, k.shape[1] == channels else { return nil }
    let bias = next.inputs.count > 2 && !next.inputs[2].isEmpty ? b.constant(next.inputs[2]) : nil
    if next.inputs.count > 2 && !next.inputs[2].isEmpty && bias == nil { return nil }
    return (next, k, bias)
}

/// The begin/end pads and extra output size Keras 3 gives a transposed convolution along
/// one axis (`_convert_conv_transpose_padding_args_from_keras_to_jax`), as IR pads.
func kerasTransposePads(padding: String, outputPadding: Int?, effective ke: Int, stride st: Int) -> (begin: Int, end: Int, extra: Int) {
    var left: Int, right: Int
    if padding == "valid" {
        let op = outputPadding ?? (max(ke, st) - ke)
        left = ke - 1; right = ke - 1 + op
    } else {
        let padLen = outputPadding.map { ke + ke % 2 - 2 + $0 } ?? (st + ke - 2)
        left = min(padLen / 2 + padLen % 2, ke - 1)
        right = padLen - left
    }
    let e = ke - 1 - right
    return (ke - 1 - left, max(e, 0), max(-e, 0))
}

private func writeConvTranspose(_ b: ExportBuilder, _ node: Node) throws {
    guard case .convTranspose(let tp) = node.op else { return }
    let p = tp.conv
    let s = p.kernel.count
    guard s == 1 || s == 2 else { throw Unmappable(reason: "only 1-D and 2-D transposed convolutions have Keras layers") }
    guard p.group == 1, tp.outputShape == nil, p.autoPad == .explicit else {
        throw Unmappable(reason: "grouped, auto-padded or output-shaped transposed convolutions have no Keras layer")
    }
    let w = try b.requireConstant(node, 1, "kernel")
    var bias: Tensor? = node.inputs.count > 2 && !node.inputs[2].isEmpty ? try b.requireConstant(node, 2, "bias") : nil
    let x = try b.channelsLast(try b.input(node))
    let m = w.shape[1]
    let eff = zip(p.kernel, p.dilations).map { ($0 - 1) * $1 + 1 }
    let want = (0..<s).map { (p.pads[$0], p.pads[s + $0], $0 < tp.outputPadding.count ? tp.outputPadding[$0] : 0) }
    func matches(_ padding: String, _ op: [Int]?) -> Bool {
        (0..<s).allSatisfy { i in
            let r = kerasTransposePads(padding: padding, outputPadding: op?[i], effective: eff[i], stride: p.strides[i])
            return r.begin == want[i].0 && r.end == want[i].1 && r.extra == want[i].2
        }
    }
    var choice: (String, [Int]?)?
    search: for padding in ["valid", "same"] {
        if matches(padding, nil) { choice = (padding, nil); break }
        var op: [Int] = []
        for i in 0..<s {
            guard let v = (0..<max(p.strides[i], 1)).first(where: { v in
                let r = kerasTransposePads(padding: padding, outputPadding: v, effective: eff[i], stride: p.strides[i])
                return r.begin == want[i].0 && r.end == want[i].1 && r.extra == want[i].2
            }) else { continue search }
            op.append(v)
        }
        choice = (padding, op)
        break
    }
    guard let (padding, op) = choice else { throw Unmappable(reason: "its padding matches no Keras padding/output_padding") }
    let (out, add) = absorbBiasAdd(b, node.outputs[0], channels: m, bias: &bias)
    var weights = [("kernel", kernelToKeras(w, swap: true))]
    if let bias { weights.append(("bias", bias.reshaped([m]))) }
    let config: [String: Any] = ["filters": m, "kernel_size": p.kernel, "strides": p.strides, "padding": padding,
                                 "output_padding": op.map { $0 as Any } ?? NSNull(), "data_format": "channels_last",
                                 "dilation_rate": p.dilations, "activation": "linear", "use_bias": bias != nil]
    let t = b.emit(node, "Conv\(s)DTranspose", config, weights: weights, inputs: [x], perm: b.cfPerm(s + 2), output: out)
    if let add { b.claim(add, as: t) }
}
