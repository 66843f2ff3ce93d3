import BraidGraph
import BraidTensor
import Foundation

/// Layers that move data: flatten, reshape, permute, padding, cropping, resizing.
/// Flatten, Reshape and Permute work on Keras's channels-last layout so that their element
/// order is Keras's.
let shapeLayers: [String: LayerTranslator] = [
    "Flatten": { ctx, ins in
        let x = ctx.b.channelsLast(try ctx.one(ins))
        let rest = x.shape.dropFirst()
        let n: Int? = rest.allSatisfy { $0 != nil } ? rest.map { $0! }.product : nil
        return [KTensor(name: ctx.add(.flatten(axis: 1), [x.name]), shape: [nil, n])]
    },
    "Reshape": { ctx, ins in
        let x = ctx.b.channelsLast(try ctx.one(ins))
        guard let target = ctx.config.array("target_shape")?.compactMap({ ($0 as? NSNumber)?.intValue }) else {
            throw ctx.err("no 'target_shape'")
        }
        let known = x.shape.dropFirst().allSatisfy { $0 != nil } ? x.shape.dropFirst().map { $0! }.product : nil
        var shape: [Int?] = target.map { $0 < 0 ? nil : $0 }
        if let known, let hole = target.firstIndex(of: -1) {
            let rest = target.filter { $0 >= 0 }.product
            guard rest > 0, known % rest == 0 else { throw ctx.err("cannot reshape \(ctx.describe(x.shape)) to \(target)") }
            shape[hole] = known / rest
        } else if let known, target.product != known {
            throw ctx.err("cannot reshape \(ctx.describe(x.shape)) to \(target)")
        }
        let s = ctx.b.intsConstant([0] + target, name: "\(ctx.name)/shape")
        return [KTensor(name: ctx.add(.reshape(allowZero: false), [x.name, s]), shape: [nil] + shape)]
    },
    "Permute": { ctx, ins in
        let x = ctx.b.channelsLast(try ctx.one(ins))
        guard let dims = ctx.config.array("dims")?.compactMap({ ($0 as? NSNumber)?.intValue }),
              dims.sorted() == Array(1..<x.rank) else { throw ctx.err("bad 'dims'") }
        let y = ctx.add(.transpose(perm: [0] + dims), [x.name])
        return [KTensor(name: y, shape: [nil] + dims.map { x.shape[$0] })]
    },
    "RepeatVector": { ctx, ins in
        let x = try ctx.one(ins)
        try ctx.requireRank(x, [2])
        guard let n = ctx.config.int("n") else { throw ctx.err("no 'n'") }
        let u = ctx.add(.unsqueeze, [x.name, ctx.b.intsConstant([1], name: "\(ctx.name)/axes")], suffix: "unsqueeze")
        let y = ctx.add(.expand, [u, ctx.b.intsConstant([1, n, 1], name: "\(ctx.name)/shape")])
        return [KTensor(name: y, shape: [nil, n, x.shape[1]])]
    },
    "ZeroPadding1D": { ctx, ins in try zeroPad(ctx, ins, spatial: 1) },
    "ZeroPadding2D": { ctx, ins in try zeroPad(ctx, ins, spatial: 2) },
    "Cropping1D": { ctx, ins in try crop(ctx, ins, spatial: 1) },
    "Cropping2D": { ctx, ins in try crop(ctx, ins, spatial: 2) },
    "UpSampling1D": { ctx, ins in try upSample(ctx, ins, spatial: 1) },
    "UpSampling2D": { ctx, ins in try upSample(ctx, ins, spatial: 2) },
    "Resizing": resizing,
    "CenterCrop": centerCrop,
]

/// `[(begin, end)]` per spatial axis from an int, a pair per axis, or (1-D) one pair.
private func pairs(_ ctx: LayerContext, _ key: String, spatial s: Int) throws -> [(Int, Int)] {
    if let n = ctx.config.int(key), !(ctx.config[key] is [Any]) { return Array(repeating: (n, n), count: s) }
    guard let a = ctx.config.array(key) else { throw ctx.err("no '\(key)'") }
    if s == 1, a.count == 2, let b = (a[0] as? NSNumber)?.intValue, let e = (a[1] as? NSNumber)?.intValue {
        return [(b, e)]
    }
    guard a.count == s else { throw ctx.err("bad '\(key)'") }
    return try a.map { item in
        if let n = (item as? NSNumber)?.intValue { return (n, n) }
        guard let p = item as? [Any], p.count == 2, let b = (p[0] as? NSNumber)?.intValue,
              let e = (p[1] as? NSNumber)?.intValue else { throw ctx.err("bad '\(key)'") }
        return (b, e)
    }
}

private func zeroPad(_ ctx: LayerContext, _ ins: [KTensor], spatial s: Int) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [s + 2])
    let p = try pairs(ctx, "padding", spatial: s)
    let pads = [0, 0] + p.map(\.0) + [0, 0] + p.map(\.1)
    let y = ctx.add(.pad(mode: .constant), [x.name, ctx.b.intsConstant(pads, name: "\(ctx.name)/pads")])
    let sp: [Int?] = zip(x.spatial, p).map { n, q in n.map { $0 + q.0 + q.1 } }
    return [KTensor(name: y, shape: [nil] + sp + [x.channels], channelsFirst: true)]
}

/// Slices spatial axes `[begin, end)` of a channels-first tensor (end -1 style from the back).
private func sliceSpatial(_ ctx: LayerContext, _ x: KTensor, begins: [Int], fromEnd: [Int]) -> String {
    let s = begins.count
    let ends = fromEnd.map { $0 == 0 ? Int(Int64.max) : -$0 }
    let axes = Array(2..<(2 + s))
    return ctx.add(.slice, [x.name, ctx.b.intsConstant(begins, name: "\(ctx.name)/starts"),
                            ctx.b.intsConstant(ends, name: "\(ctx.name)/ends"),
                            ctx.b.intsConstant(axes, name: "\(ctx.name)/axes")])
}

private func crop(_ ctx: LayerContext, _ ins: [KTensor], spatial s: Int) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [s + 2])
    let p = try pairs(ctx, "cropping", spatial: s)
    let sp: [Int?] = zip(x.spatial, p).map { n, q in n.map { $0 - q.0 - q.1 } }
    guard sp.allSatisfy({ ($0 ?? 1) > 0 }) else { throw ctx.err("cropping \(p) leaves nothing of \(ctx.describe(x.shape))") }
    let y = sliceSpatial(ctx, x, begins: p.map(\.0), fromEnd: p.map(\.1))
    return [KTensor(name: y, shape: [nil] + sp + [x.channels], channelsFirst: true)]
}

private func resizeParams(_ ctx: LayerContext, _ interpolation: String, axes: [Int]?) throws -> ResizeParams {
    // Keras 3 resizes with half-pixel centres (jax.image.resize); nearest rounds halves up.
    switch interpolation {
    case "nearest": return ResizeParams(mode: .nearest, coordinate: .halfPixel, nearest: .roundPreferCeil, axes: axes)
    case "bilinear": return ResizeParams(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor, axes: axes)
    default: throw ctx.err("unsupported interpolation '\(interpolation)'")
    }
}

private func upSample(_ ctx: LayerContext, _ ins: [KTensor], spatial s: Int) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [s + 2])
    let size = s == 1 ? [ctx.config.int("size") ?? 2] : (ctx.config.ints("size", count: s) ?? [2, 2])
    let p = try resizeParams(ctx, ctx.config.string("interpolation") ?? "nearest", axes: nil)
    let scales = ctx.b.constant(Tensor(shape: [s + 2], floats: [1, 1] + size.map(Float.init)), name: "\(ctx.name)/scales")
    let y = ctx.add(.resize(p), [x.name, "", scales])
    let sp: [Int?] = zip(x.spatial, size).map { n, f in n.map { $0 * f } }
    return [KTensor(name: y, shape: [nil] + sp + [x.channels], channelsFirst: true)]
}

private func resizing(_ ctx: LayerContext, _ ins: [KTensor]) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [4])
    guard let h = ctx.config.int("height"), let w = ctx.config.int("width") else { throw ctx.err("no height/width") }
    if ctx.config.bool("crop_to_aspect_ratio") == true || ctx.config.bool("pad_to_aspect_ratio") == true {
        throw ctx.err("crop_to_aspect_ratio / pad_to_aspect_ratio are not supported")
    }
    if ctx.config.bool("antialias") == true { throw ctx.err("antialias=True is not supported") }
    let p = try resizeParams(ctx, ctx.config.string("interpolation") ?? "bilinear", axes: [2, 3])
    let sizes = ctx.b.intsConstant([h, w], name: "\(ctx.name)/sizes")
    let y = ctx.add(.resize(p), [x.name, "", "", sizes])
    return [KTensor(name: y, shape: [nil, h, w, x.channels], channelsFirst: true)]
}

private func centerCrop(_ ctx: LayerContext, _ ins: [KTensor]) throws -> [KTensor] {
    try ctx.requireChannelsLast()
    let x = ctx.b.channelsFirst(try ctx.one(ins))
    try ctx.requireRank(x, [4])
    guard let h = ctx.config.int("height"), let w = ctx.config.int("width") else { throw ctx.err("no height/width") }
    guard let ih = x.shape[1], let iw = x.shape[2], ih >= h, iw >= w else {
        throw ctx.err("CenterCrop to \(h)x\(w) needs a known input at least that large, got \(ctx.describe(x.shape))")
    }
    let top = (ih - h) / 2, left = (iw - w) / 2
    let y = sliceSpatial(ctx, x, begins: [top, left], fromEnd: [ih - h - top, iw - w - left])
    return [KTensor(name: y, shape: [nil, h, w, x.channels], channelsFirst: true)]
}

// MARK: Writers

/// Data movement back to Keras. Transposes cost nothing: they change the recorded layout
/// (a Permute layer appears only where an op needs a layout the tensor does not have).
/// Reshape-like ops become Flatten/Reshape on Keras's own axis order, pads on spatial axes
/// ZeroPadding, spatial slices Cropping, integer-scale resizes UpSampling, others Resizing.
let shapeWriters: [String: LayerWriter] = [
    "transpose": { b, node in
        guard case .transpose(let perm) = node.op else { return }
        let x = try b.input(node)
        let q = perm ?? Array((0..<x.rank).reversed())
        b.alias(node.outputs[0], XTensor(layer: x.layer, shape: x.shape, perm: q.map { x.perm[$0] }))
    },
    "expand": { b, node in
        let inShape = b.shape(node.inputs[0]), outShape = b.shape(node.outputs[0])
        guard inShape.count == 3, outShape.count == 3, inShape[1] == 1, inShape[2] == outShape[2], inShape[0] == outShape[0] else {
            throw Unmappable(reason: "only repeating a [N, 1, F] tensor along axis 1 has a Keras layer (RepeatVector)")
        }
        let flat = b.addLayer("Flatten", ["data_format": "channels_last"], inputs: [try b.plain(try b.input(node))],
                              outputShape: [nil, inShape[2]], perm: [0, 1], suffix: "flatten")
        b.emit(node, "RepeatVector", ["n": outShape[1]], inputs: [flat], perm: [0, 1, 2])
    },
    "flatten": writeReshape,
    "reshape": writeReshape,
    "squeeze": writeReshape,
    "unsqueeze": writeReshape,
    "pad": { b, node in
        guard case .pad(.constant) = node.op else { throw Unmappable(reason: "only zero padding has a Keras layer") }
        let pads = try b.requireConstant(node, 1, "pads").intArray.map(Int.init)
        if node.inputs.count > 2, !node.inputs[2].isEmpty, try b.requireConstant(node, 2, "pad value").floats[0] != 0 {
            throw Unmappable(reason: "padding with a non-zero value has no Keras layer")
        }
        if node.inputs.count > 3, !node.inputs[3].isEmpty { throw Unmappable(reason: "padding selected axes has no Keras writer") }
        let r = b.shape(node.inputs[0]).count
        guard r == 3 || r == 4, pads.count == 2 * r, pads[0] == 0, pads[1] == 0, pads[r] == 0, pads[r + 1] == 0 else {
            throw Unmappable(reason: "only padding of the spatial axes of [N, C, spatial...] has a Keras layer")
        }
        let x = try b.channelsLast(try b.input(node))
        let t = zeroPadding(b, x, (2..<r).map { (pads[$0], pads[r + $0]) })
        b.alias(node.outputs[0], t)
    },
    "slice": { b, node in
        let inShape = b.shape(node.inputs[0]), outShape = b.shape(node.outputs[0])
        let r = inShape.count
        let starts = try b.requireConstant(node, 1, "starts").intArray.map(Int.init)
        let axes = node.inputs.count > 3 && !node.inputs[3].isEmpty
            ? try b.requireConstant(node, 3, "axes").intArray.map { Int($0) < 0 ? Int($0) + r : Int($0) } : Array(0..<starts.count)
        if node.inputs.count > 4, !node.inputs[4].isEmpty,
           try b.requireConstant(node, 4, "steps").intArray.contains(where: { $0 != 1 }) {
            throw Unmappable(reason: "strided slices have no Keras layer")
        }
        guard r == 3 || r == 4, outShape[0] == inShape[0], outShape[1] == inShape[1] else {
            throw Unmappable(reason: "only slices of the spatial axes of [N, C, spatial...] have a Keras layer (Cropping)")
        }
        var crops: [(Int, Int)] = []
        for a in 2..<r {
            let removed = inShape[a] - outShape[a]
            var begin = 0
            if let k = axes.firstIndex(of: a) {
                let s = starts[k]
                begin = min(max(s < 0 ? s + inShape[a] : s, 0), inShape[a])
            }
            crops.append((begin, removed - begin))
        }
        let x = try b.channelsLast(try b.input(node))
        let config: [String: Any] = r == 3 ? ["cropping": [crops[0].0, crops[0].1]]
            : ["cropping": crops.map { [$0.0, $0.1] }, "data_format": "channels_last"]
        b.emit(node, "Cropping\(r - 2)D", config, inputs: [x], perm: b.cfPerm(r))
    },
    "resize": { b, node in
        guard case .resize(let p) = node.op else { return }
        let inShape = b.shape(node.inputs[0]), outShape = b.shape(node.outputs[0])
        let r = inShape.count
        guard r == 3 || r == 4, outShape[0] == inShape[0], outShape[1] == inShape[1], !p.antialias else {
            throw Unmappable(reason: "only resizing the spatial axes of [N, C, spatial...] has a Keras layer")
        }
        let factors = (2..<r).map { outShape[$0] / max(inShape[$0], 1) }
        let integer = (2..<r).allSatisfy { outShape[$0] == inShape[$0] * factors[$0 - 2] && factors[$0 - 2] >= 1 }
        let interpolation: String
        switch p.mode {
        case .nearest:
            let halfPixel = p.coordinate == .halfPixel || p.coordinate == .pytorchHalfPixel
            guard integer && (halfPixel || (p.coordinate == .asymmetric && p.nearest == .floor))
                    || halfPixel && p.nearest == .roundPreferCeil else {
                throw Unmappable(reason: "its nearest-neighbour rounding differs from Keras's")
            }
            interpolation = "nearest"
        case .linear:
            guard p.coordinate == .halfPixel || (p.coordinate == .pytorchHalfPixel && outShape.dropFirst(2).allSatisfy { $0 > 1 }) else {
                throw Unmappable(reason: "bilinear resizing without half-pixel centres has no Keras layer")
            }
            interpolation = "bilinear"
        case .cubic:
            throw Unmappable(reason: "cubic resizing is not written")
        }
        let x = try b.channelsLast(try b.input(node))
        if integer {
            let size: Any = r == 3 ? factors[0] : factors
            b.emit(node, "UpSampling\(r - 2)D", r == 3 ? ["size": size] : ["size": size, "data_format": "channels_last", "interpolation": interpolation],
                   inputs: [x], perm: b.cfPerm(r))
            return
        }
        guard r == 4 else { throw Unmappable(reason: "non-integer 1-D resizing has no Keras layer") }
        b.emit(node, "Resizing", ["height": outShape[2], "width": outShape[3], "interpolation": interpolation,
                                  "crop_to_aspect_ratio": false, "data_format": "channels_last"],
               inputs: [x], perm: b.cfPerm(4))
    },
]

/// Flatten, Reshape, Squeeze, Unsqueeze: the batch axis stays, the rest take the planned
/// output shape in Keras's (row-major, IR-order) element order.
private func writeReshape(_ b: ExportBuilder, _ node: Node) throws {
    let inShape = b.shape(node.inputs[0]), outShape = b.shape(node.outputs[0])
    guard !inShape.isEmpty, outShape.first == inShape.first else { throw Unmappable(reason: "it reshapes the batch axis") }
    let x = try b.input(node)
    if inShape == outShape { b.alias(node.outputs[0], x); return }
    // A layout that differs only in where size-1 axes sit holds the elements in the same
    // order: the reshape can read the Keras tensor as it is.
    let big = (0..<inShape.count).filter { inShape[$0] != 1 }.map { x.perm[$0] }
    let plain = zip(big, big.dropFirst()).allSatisfy { $0 < $1 } ? x : try b.plain(x)
    let identity = Array(0..<outShape.count)
    if outShape.count == 2 {
        b.emit(node, "Flatten", ["data_format": "channels_last"], inputs: [plain], perm: identity)
    } else {
        b.emit(node, "Reshape", ["target_shape": Array(outShape.dropFirst())], inputs: [plain], perm: identity)
    }
}
