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

// MARK: Writers

/// Pooling back to Keras. Max pooling with explicit pads maps only where Keras's `same`
/// gives the same windows (stride 1, odd kernel, symmetric pads, or TensorFlow's own pads
/// for the planned input size); average pooling that counts the padding gets a ZeroPadding
/// layer in front.
let poolWriters: [String: LayerWriter] = [
    "pool": writePool,
    "globalPool": writeGlobalPool,
]

private func writePool(_ b: ExportBuilder, _ node: Node) throws {
    guard case .pool(let p) = node.op else { return }
    let s = p.kernel.count
    guard s == 1 || s == 2 else { throw Unmappable(reason: "only 1-D and 2-D pooling have Keras layers") }
    guard p.dilations.allSatisfy({ $0 == 1 }) else { throw Unmappable(reason: "dilated pooling has no Keras layer") }
    let cls: String
    switch p.kind {
    case .max: cls = "MaxPooling\(s)D"
    case .average: cls = "AveragePooling\(s)D"
    case .lp: throw Unmappable(reason: "Lp pooling has no Keras layer")
    }
    let inShape = b.shape(node.inputs[0]), outShape = b.shape(node.outputs[0])
    let spatialIn = Array(inShape.dropFirst(2)), spatialOut = Array(outShape.dropFirst(2))
    var x = try b.channelsLast(try b.input(node))
    var padded = spatialIn
    var (padding, explicit) = try kerasPadding(p.autoPad, pads: p.pads, kernel: p.kernel, dilations: p.dilations, strides: p.strides)
    let countsPadding = p.kind == .average && p.countIncludePad
    if countsPadding && padding == "same" {
        guard p.autoPad == .explicit else { throw Unmappable(reason: "average pooling counting SAME padding has no Keras layer") }
        (padding, explicit) = ("valid", (0..<s).map { (p.pads[$0], p.pads[s + $0]) })
    }
    if let e = explicit {
        // TensorFlow's SAME pads for this input size: Keras `same` computes the same windows.
        let tfSame = (0..<s).allSatisfy { i in
            let n = spatialIn[i], st = p.strides[i], k = p.kernel[i]
            let total = max((n + st - 1) / st * st - st + k - n, 0)
            return e[i].0 == total / 2 && e[i].1 == total - total / 2
        }
        if countsPadding {
            x = zeroPadding(b, x, e)
            for i in 0..<s { padded[i] += e[i].0 + e[i].1 }
        } else if tfSame {
            padding = "same"
        } else {
            throw Unmappable(reason: "its padding \(p.pads) matches neither Keras 'valid' nor 'same'")
        }
    }
    let expected: [Int] = (0..<s).map { i in
        padding == "same" ? (spatialIn[i] + p.strides[i] - 1) / p.strides[i]
            : padded[i] >= p.kernel[i] ? (padded[i] - p.kernel[i]) / p.strides[i] + 1 : 0
    }
    guard expected == spatialOut else {
        throw Unmappable(reason: "its output size \(spatialOut) (ceil mode) differs from Keras's \(expected)")
    }
    b.emit(node, cls, ["pool_size": p.kernel, "strides": p.strides, "padding": padding, "data_format": "channels_last"],
           inputs: [x], perm: b.cfPerm(s + 2))
}

private func writeGlobalPool(_ b: ExportBuilder, _ node: Node) throws {
    guard case .globalPool(let kind) = node.op else { return }
    let r = b.shape(node.inputs[0]).count
    guard r == 3 || r == 4 else { throw Unmappable(reason: "only 1-D and 2-D global pooling have Keras layers") }
    let cls: String
    switch kind {
    case .max: cls = "GlobalMaxPooling\(r - 2)D"
    case .average: cls = "GlobalAveragePooling\(r - 2)D"
    case .lp: throw Unmappable(reason: "global Lp pooling has no Keras layer")
    }
    let x = try b.channelsLast(try b.input(node))
    let out = node.outputs[0]
    let c = b.shape(out)[1]
    // Pool-then-flatten (or reshape to [N, C]) is Keras's keepdims=False.
    if let next = b.soleConsumer(out), b.shape(next.outputs[0]) == [b.shape(out)[0], c] {
        var flat = false
        switch next.op {
        case .flatten(let axis): flat = axis == 1
        case .reshape, .squeeze: flat = true
        default: break
        }
        if flat {
            let t = b.emit(node, cls, ["data_format": "channels_last", "keepdims": false], inputs: [x], perm: [0, 1],
                           output: next.outputs[0])
            b.claim(next, as: t)
            return
        }
    }
    b.emit(node, cls, ["data_format": "channels_last", "keepdims": true], inputs: [x], perm: b.cfPerm(r))
}
