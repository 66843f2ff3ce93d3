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
        "LayerScale": layerScale,
    ]
    // StochasticDepth: keras.applications' ConvNeXt drop-path, which keeps every path at inference.
    for name in ["Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                 "GaussianDropout", "AlphaDropout", "ActivityRegularization", "StochasticDepth"] {
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

/// keras.applications' ConvNeXt `LayerScale`: `x * gamma`, gamma `[projection_dim]` on the
/// channel axis.
private func layerScale(_ ctx: LayerContext, _ ins: [KTensor]) throws -> [KTensor] {
    let x = try ctx.one(ins)
    let c = ctx.config.int("projection_dim") ?? x.channels
    let w = try ctx.weights(["gamma"])
    // Legacy .h5 files name the weight after its unnamed variable ("variable", "variable_3").
    let unnamed = w.weights.tensors.compactMap(\.name).filter { $0 == "variable" || $0.hasPrefix("variable_") }
    let gamma = try w.take("gamma", aliases: unnamed, shape: [c])
    let channelsFirst = x.channelsFirst && x.rank > 2
    let g = try ctx.weightConstant(channelsFirst ? "gamma_cf" : "gamma") {
        channelsFirst ? gamma.reshaped([gamma.count] + Array(repeating: 1, count: x.rank - 2)) : gamma
    }
    return [KTensor(name: ctx.add(.binary(.mul), [x.name, g]), shape: x.shape, channelsFirst: x.channelsFirst)]
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

// MARK: Writers

/// Dense (Gemm, or MatMul with a constant matrix and its bias add), normalisation and the
/// identities. A MatMul of two computed rank-3 tensors is a Dot layer.
let coreWriters: [String: LayerWriter] = [
    "gemm": { b, node in
        guard case .gemm(let transA, let transB, let alpha, let beta) = node.op else { return }
        guard !transA else { throw Unmappable(reason: "a transposed left operand has no Keras layer") }
        let w = try b.requireConstant(node, 1, "weight matrix")
        guard w.rank == 2 else { throw Unmappable(reason: "its weight matrix is not 2-D") }
        var kernel = transB ? permuted(w, [1, 0]) : w.copy()
        let units = kernel.shape[1]
        if alpha != 1 { for i in 0..<kernel.count { kernel.floats[i] *= alpha } }
        var bias: Tensor?
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            let c = try b.requireConstant(node, 2, "bias")
            guard c.count == units || c.count == 1 else { throw Unmappable(reason: "its bias does not broadcast per unit") }
            bias = Tensor(shape: [units], floats: (0..<units).map { beta * c.floats[c.count == 1 ? 0 : $0] })
        }
        try dense(b, node, try b.plain(try b.input(node)), kernel: kernel, bias: bias)
    },
    "matMul": { b, node in
        if let w = b.constant(node.inputs[1]) {
            guard w.rank == 2 else { throw Unmappable(reason: "its constant operand is not 2-D") }
            try dense(b, node, try b.plain(try b.input(node)), kernel: w, bias: nil)
            return
        }
        let x = try b.plain(try b.input(node)), y = try b.plain(try b.input(node, 1))
        guard x.rank == 3, y.rank == 3 else { throw Unmappable(reason: "only batched rank-3 products of two tensors have a Keras layer (Dot)") }
        b.emit(node, "Dot", ["axes": [2, 1], "normalize": false], inputs: [x, y], listInput: true, perm: [0, 1, 2])
    },
    "batchNorm": { b, node in
        guard case .batchNorm(let eps) = node.op else { return }
        let x = try b.input(node)
        let axis = x.kerasAxis(1)
        guard axis != 0 else { throw Unmappable(reason: "it normalises the batch axis") }
        let ws = try (1...4).map { try b.requireConstant(node, $0, "parameters") }
        let c = b.shape(node.inputs[0])[1]
        b.emit(node, "BatchNormalization", ["axis": axis, "epsilon": jsonFloat(eps), "momentum": 0.99, "center": true, "scale": true],
               weights: zip(["gamma", "beta", "moving_mean", "moving_variance"], ws).map { ($0, $1.reshaped([c])) },
               inputs: [x], perm: x.perm)
    },
    "layerNorm": { b, node in
        guard case .layerNorm(let axis, let eps) = node.op else { return }
        let x = try b.plain(try b.input(node))
        let r = x.rank
        let first = axis < 0 ? axis + r : axis
        guard first > 0 else { throw Unmappable(reason: "it normalises over the batch axis") }
        let pshape = Array(b.shape(node.inputs[0])[first...])
        let gamma = try b.requireConstant(node, 1, "scale")
        guard gamma.count == pshape.product else { throw Unmappable(reason: "its scale does not cover the normalised axes") }
        var weights = [("gamma", gamma.reshaped(pshape))]
        let center = node.inputs.count > 2 && !node.inputs[2].isEmpty
        if center {
            let beta = try b.requireConstant(node, 2, "bias")
            guard beta.count == pshape.product else { throw Unmappable(reason: "its bias does not cover the normalised axes") }
            weights.append(("beta", beta.reshaped(pshape)))
        }
        b.emit(node, "LayerNormalization", ["axis": Array(first..<r), "epsilon": jsonFloat(eps), "center": center,
                                            "scale": true, "rms_scaling": false],
               weights: weights, inputs: [x], perm: x.perm)
    },
    "dropout": { b, node in b.alias(node.outputs[0], try b.input(node)) },
    "identity": { b, node in b.alias(node.outputs[0], try b.input(node)) },
    "cast": { b, node in
        guard case .cast(let to) = node.op, to == .float32, b.values[node.inputs[0]]?.dtype == .float32 else {
            throw Unmappable(reason: "a type conversion has no Keras layer")
        }
        b.alias(node.outputs[0], try b.input(node))
    },
]

/// A Dense layer on the last axis, taking a following `+ bias` into the layer.
private func dense(_ b: ExportBuilder, _ node: Node, _ x: XTensor, kernel: Tensor, bias: Tensor?) throws {
    let units = kernel.shape[1]
    guard b.shape(node.inputs[0]).last == kernel.shape[0] else { throw Unmappable(reason: "its weight does not match the input") }
    var bias = bias
    var out = node.outputs[0]
    var add: Node?
    if let next = b.soleConsumer(out), case .binary(.add) = next.op, next.inputs.contains(out),
       let other = next.inputs.first(where: { $0 != out }), let c = b.constant(other),
       c.count == units, c.shape.last == units || c.rank == 1, b.shape(next.outputs[0]) == b.shape(out) {
        bias = Tensor(shape: [units], floats: (0..<units).map { (bias?.floats[$0] ?? 0) + c.floats[$0] })
        out = next.outputs[0]
        add = next
    }
    var weights = [("kernel", kernel)]
    if let bias { weights.append(("bias", bias)) }
    let t = b.emit(node, "Dense", ["units": units, "activation": "linear", "use_bias": bias != nil],
                   weights: weights, inputs: [x], perm: x.perm, output: out)
    if let add { b.claim(add, as: t) }
}
