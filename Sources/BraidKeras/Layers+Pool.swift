import BraidGraph
import BraidTensor

/// Local and global pooling. Keras's average pooling with `same` padding divides by the
/// number of real (unpadded) elements in the window, as TensorFlow does.
let poolLayers: [String: LayerTranslator] = {
    var t: [String: LayerTranslator] = [:]
    for (s, suffix) in [(1, "1D"), (2, "2D")] {
        let maxPool: LayerTranslator = { ctx, ins in try pool(ctx, ins, spatial: s, kind: .max) }
        let avgPool: LayerTranslator = { ctx, ins in try pool(ctx, ins, spatial: s, kind: .average) }
        let gMax: LayerTranslator = { ctx, ins in try globalPool(ctx, ins, spatial: s, kind: .max) }
        let gAvg: LayerTranslator = { ctx, ins in try globalPool(ctx, ins, spatial: s, kind: .average) }
        t["MaxPooling" + suffix] = maxPool
        t["MaxPool" + suffix] = maxPool
        t["AveragePooling" + suffix] = avgPool
        t["AvgPool" + suffix] = avgPool
        t["GlobalMaxPooling" + suffix] = gMax
        t["GlobalMaxPool" + suffix] = gMax
        t["GlobalAveragePooling" + suffix] = gAvg
        t["GlobalAvgPool" + suffix] = gAvg
    }
    return t
}()

private func pool(_ ctx: LayerContext, _ ins: [KTensor], spatial s: Int, kind: PoolKind) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [s + 2])
    let pool = ctx.config.ints("pool_size", count: s) ?? Array(repeating: 2, count: s)
    var g = try Geometry(ctx, spatial: s, kernelKey: "pool_size", stridesDefault: pool)
    g.dilations = Array(repeating: 1, count: s)
    let same = g.padding == "same"
    let p = PoolParams(kind: kind, kernel: g.kernel, strides: g.strides, pads: Array(repeating: 0, count: 2 * s),
                       dilations: g.dilations, autoPad: same ? .sameUpper : .explicit, ceilMode: false,
                       countIncludePad: false)
    let y = ctx.add(.pool(p), [x.name])
    return [KTensor(name: y, shape: [nil] + g.outputSize(x.spatial) + [x.channels], channelsFirst: true)]
}

private func globalPool(_ ctx: LayerContext, _ ins: [KTensor], spatial s: Int, kind: PoolKind) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [s + 2])
    let keep = ctx.config.bool("keepdims") ?? false
    if keep {
        let y = ctx.add(.globalPool(kind), [x.name])
        return [KTensor(name: y, shape: [nil] + Array(repeating: 1, count: s) + [x.channels], channelsFirst: true)]
    }
    let g = ctx.add(.globalPool(kind), [x.name], suffix: "pool")
    let y = ctx.add(.flatten(axis: 1), [g])
    return [KTensor(name: y, shape: [nil, x.channels])]
}
