import BraidGraph
import BraidTensor
import Foundation

/// Dense, normalisation, rescaling and the layers that are identities at inference.
let coreLayers: [String: LayerTranslator] = {
    var t: [String: LayerTranslator] = [
        "Dense": dense,
        "BatchNormalization": batchNorm,
        "LayerNormalization": layerNorm,
        "Rescaling": { ctx, ins in
            let x = try ctx.one(ins)
            guard let scale = ctx.config.float("scale"), let offset = ctx.config.float("offset") ?? Optional(0) else {
                throw ctx.err("Rescaling with per-channel scale lists is not supported")
            }
            var y = x.name
            if scale != 1 { y = ctx.add(.binary(.mul), [y, ctx.b.scalar(scale, name: "\(ctx.name)/scale")], suffix: "scale") }
            if offset != 0 { y = ctx.add(.binary(.add), [y, ctx.b.scalar(offset, name: "\(ctx.name)/offset")], suffix: "offset") }
            if y == x.name { y = ctx.add(.identity, [y]) }
            return [KTensor(name: y, shape: x.shape, channelsFirst: x.channelsFirst)]
        },
        "Normalization": normalization,
    ]
    for name in ["Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                 "GaussianDropout", "AlphaDropout", "ActivityRegularization"] {
        t[name] = { ctx, ins in [try ctx.one(ins)] }
    }
    return t
}()

/// Keras `axis` (an int or a one-element list), made non-negative.
func kerasAxis(_ ctx: LayerContext, rank: Int, default d: Int = -1) throws -> Int {
    var a = ctx.config.int("axis") ?? d
    if let list = ctx.config.array("axis") {
        guard list.count == 1, let v = (list[0] as? NSNumber)?.intValue else {
            throw ctx.err("axis \(list) is not supported (one axis only)")
        }
        a = v
    }
    if a < 0 { a += rank }
    guard a > 0 && a < rank else { throw ctx.err("axis \(a) out of range for rank \(rank)") }
    return a
}

private func dense(_ ctx: LayerContext, _ ins: [KTensor]) throws -> [KTensor] {
    var x = try ctx.one(ins)
    guard let units = ctx.config.int("units") ?? ctx.config.int("output_dim") else { throw ctx.err("no 'units'") }
    let useBias = ctx.config.bool("use_bias") ?? true
    let w = try ctx.weights(useBias ? ["kernel", "bias"] : ["kernel"])
    let kernel = try w.take("kernel", shape: [x.channels, units])
    let k = try ctx.weightConstant("kernel") { kernel }
    let b = useBias ? try ctx.weightConstant("bias") { try w.take("bias", shape: [units]) } : nil
    x = ctx.b.channelsLast(x)
    let shape = Array(x.shape.dropLast()) + [units]
    var y: String
    if x.rank == 2 {
        y = ctx.add(.gemm(transA: false, transB: false, alpha: 1, beta: 1), [x.name, k] + (b.map { [$0] } ?? []))
    } else {
        y = ctx.add(.matMul, [x.name, k], suffix: "matmul")
        if let b { y = ctx.add(.binary(.add), [y, b]) }
    }
    return [try ctx.activation(KTensor(name: y, shape: shape))]
}

private func batchNorm(_ ctx: LayerContext, _ ins: [KTensor]) throws -> [KTensor] {
    var x = try ctx.one(ins)
    let axis = try kerasAxis(ctx, rank: x.rank)
    if axis == x.rank - 1 {
        x = ctx.b.channelsFirst(x)
    } else if axis == 1 {
        x = ctx.b.channelsLast(x)
    } else {
        throw ctx.err("BatchNormalization over axis \(axis) of a rank-\(x.rank) input is not supported")
    }
    let c = x.shape[axis]
    let center = ctx.config.bool("center") ?? true
    let scale = ctx.config.bool("scale") ?? true
    let eps = ctx.config.float("epsilon") ?? 1e-3
    let names = (scale ? ["gamma"] : []) + (center ? ["beta"] : []) + ["moving_mean", "moving_variance"]
    let w = try ctx.weights(names)
    let mean = try w.take("moving_mean", shape: [c])
    let n = mean.count
    let gamma = try ctx.weightConstant("gamma") { scale ? try w.take("gamma", shape: [c]) : Tensor(shape: [n], floats: Array(repeating: 1, count: n)) }
    let beta = try ctx.weightConstant("beta") { center ? try w.take("beta", shape: [c]) : Tensor(zeros: [n]) }
    let m = try ctx.weightConstant("moving_mean") { mean }
    let v = try ctx.weightConstant("moving_variance") { try w.take("moving_variance", shape: [c]) }
    let y = ctx.add(.batchNorm(epsilon: eps), [x.name, gamma, beta, m, v])
    return [KTensor(name: y, shape: x.shape, channelsFirst: x.channelsFirst)]
}

private func layerNorm(_ ctx: LayerContext, _ ins: [KTensor]) throws -> [KTensor] {
    let x = ctx.b.channelsLast(try ctx.one(ins))
    var axes: [Int]
    if let list = ctx.config.array("axis") {
        axes = list.compactMap { ($0 as? NSNumber)?.intValue }
    } else {
        axes = [ctx.config.int("axis") ?? -1]
    }
    axes = axes.map { $0 < 0 ? $0 + x.rank : $0 }.sorted()
    guard let first = axes.first, axes == Array(first..<x.rank), first > 0 else {
        throw ctx.err("LayerNormalization over axes \(axes) is not supported (they must run to the last axis)")
    }
    if ctx.config.bool("rms_scaling") == true { throw ctx.err("rms_scaling is not supported") }
    let center = ctx.config.bool("center") ?? true
    let scale = ctx.config.bool("scale") ?? true
    let eps = ctx.config.float("epsilon") ?? 1e-3
    let pshape = Array(x.shape[first...])
    guard pshape.allSatisfy({ $0 != nil }) else { throw ctx.err("normalised axes must have known sizes") }
    let sizes = pshape.map { $0! }
    let w = try ctx.weights((scale ? ["gamma"] : []) + (center ? ["beta"] : []))
    let gamma = try ctx.weightConstant("gamma") {
        scale ? try w.take("gamma", shape: pshape) : Tensor(shape: sizes, floats: Array(repeating: 1, count: sizes.product))
    }
    var inputs = [x.name, gamma]
    if center { inputs.append(try ctx.weightConstant("beta") { try w.take("beta", shape: pshape) }) }
    let y = ctx.add(.layerNorm(axis: first, epsilon: eps), inputs)
    return [KTensor(name: y, shape: x.shape)]
}

/// `(x - mean) / max(sqrt(variance), 1e-7)` with mean and variance from the config or the
/// file's weights.
private func normalization(_ ctx: LayerContext, _ ins: [KTensor]) throws -> [KTensor] {
    let x = ctx.b.channelsLast(try ctx.one(ins))
    if ctx.config.bool("invert") == true { throw ctx.err("invert=True is not supported") }
    let axis = try kerasAxis(ctx, rank: x.rank)
    guard axis == x.rank - 1, let c = x.channels else {
        throw ctx.err("Normalization is supported over the last axis only")
    }
    var mean: [Float], variance: [Float]
    func values(_ key: String) -> [Float]? {
        if let v = ctx.config.double(key) { return Array(repeating: Float(v), count: c) }
        if let a = ctx.config.array(key) {
            let f = a.compactMap { ($0 as? NSNumber)?.floatValue }
            return f.count == 1 ? Array(repeating: f[0], count: c) : f
        }
        return nil
    }
    if let m = values("mean"), let v = values("variance") {
        mean = m; variance = v
    } else {
        let w = try ctx.weights(["mean", "variance", "count"])
        mean = try w.take("mean", shape: [c]).floatArray
        variance = try w.take("variance", shape: [c]).floatArray
    }
    guard mean.count == c, variance.count == c else { throw ctx.err("mean/variance do not have \(c) entries") }
    let m = try ctx.weightConstant("mean") { Tensor(shape: [c], floats: mean) }
    let s = try ctx.weightConstant("inv_std") {
        Tensor(shape: [c], floats: variance.map { 1 / max($0.squareRoot(), 1e-7) })
    }
    let centered = ctx.add(.binary(.sub), [x.name, m], suffix: "center")
    return [KTensor(name: ctx.add(.binary(.mul), [centered, s]), shape: x.shape)]
}
