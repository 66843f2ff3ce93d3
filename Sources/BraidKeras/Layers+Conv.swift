import BraidGraph
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
        guard ["valid", "same", "causal"].contains(padding) else { throw ctx.err("unsupported padding '\(padding)'") }
    }

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
        let ke = g.effective[i], st = g.strides[i]
        var left: Int, right: Int
        if g.padding == "valid" {
            let op = outPad?[i] ?? (max(ke, st) - ke)
            left = ke - 1; right = ke - 1 + op
        } else {
            let padLen = outPad.map { ke + ke % 2 - 2 + $0[i] } ?? (st + ke - 2)
            left = min(padLen / 2 + padLen % 2, ke - 1)
            right = padLen - left
        }
        begins.append(ke - 1 - left)
        let e = ke - 1 - right
        ends.append(max(e, 0))
        extra.append(max(-e, 0))
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
