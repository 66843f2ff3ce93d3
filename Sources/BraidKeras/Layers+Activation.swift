import BraidGraph
import BraidTensor
import Foundation

/// Activation layers and the `activation` argument of Dense/Conv layers.
let activationLayers: [String: LayerTranslator] = [
    "Activation": { ctx, ins in
        let x = try ctx.one(ins)
        guard let a = activationName(ctx.config["activation"]) else { throw ctx.err("no activation given") }
        return [try applyActivation(a, x, ctx)]
    },
    "ReLU": { ctx, ins in
        let x = try ctx.one(ins)
        let maxValue = ctx.config.float("max_value")
        let slope = ctx.config.float("negative_slope") ?? 0
        let threshold = ctx.config.float("threshold") ?? 0
        return [relu(x, maxValue: maxValue, slope: slope, threshold: threshold, ctx)]
    },
    "LeakyReLU": { ctx, ins in
        let x = try ctx.one(ins)
        let alpha = ctx.config.float("negative_slope") ?? ctx.config.float("alpha") ?? 0.3
        return [unary(.leakyRelu(alpha: alpha), x, ctx)]
    },
    "ELU": { ctx, ins in
        let x = try ctx.one(ins)
        return [unary(.elu(alpha: ctx.config.float("alpha") ?? 1), x, ctx)]
    },
    "Softmax": { ctx, ins in
        let x = try ctx.one(ins)
        var axis = ctx.config.int("axis") ?? -1
        if let list = ctx.config.array("axis") {
            guard list.count == 1, let a = (list[0] as? NSNumber)?.intValue else {
                throw ctx.err("softmax over several axes is not supported")
            }
            axis = a
        }
        return [softmax(x, axis: axis, ctx)]
    },
    "PReLU": { ctx, ins in
        let x = try ctx.one(ins)
        var slopeShape = Array(x.shape.dropFirst())
        for a in (ctx.config.array("shared_axes") ?? []).compactMap({ ($0 as? NSNumber)?.intValue }) {
            let i = (a < 0 ? a + x.rank : a) - 1
            if i >= 0 && i < slopeShape.count { slopeShape[i] = 1 }
        }
        let w = try ctx.weights(["alpha"])
        let alpha = try w.take("alpha", shape: slopeShape)
        let cf = x.channelsFirst && x.rank > 2
        let slope = try ctx.weightConstant(cf ? "alpha_cf" : "alpha") {
            guard cf else { return alpha }
            let r = alpha.rank
            return permuted(alpha, [r - 1] + Array(0..<(r - 1)))
        }
        return [KTensor(name: ctx.add(.prelu, [x.name, slope]), shape: x.shape, channelsFirst: x.channelsFirst)]
    },
]

func unary(_ op: UnaryFunction, _ x: KTensor, _ ctx: LayerContext, suffix: String? = nil) -> KTensor {
    KTensor(name: ctx.add(.unary(op), [x.name], suffix: suffix), shape: x.shape, channelsFirst: x.channelsFirst)
}

func softmax(_ x: KTensor, axis: Int, _ ctx: LayerContext, kind: SoftmaxMode = .softmax) -> KTensor {
    let op = Op.softmax(kind, axis: x.irAxis(axis), coerce2D: false)
    return KTensor(name: ctx.add(op, [x.name], suffix: nil), shape: x.shape, channelsFirst: x.channelsFirst)
}

/// Keras's ReLU layer: `max_value` above `max_value`, `x` from `threshold` up,
/// `negative_slope * (x - threshold)` below.
func relu(_ x: KTensor, maxValue: Float?, slope: Float, threshold: Float, _ ctx: LayerContext) -> KTensor {
    var y: String
    if threshold == 0 {
        y = slope == 0 ? ctx.add(.unary(.relu), [x.name], suffix: "relu")
                       : ctx.add(.unary(.leakyRelu(alpha: slope)), [x.name], suffix: "leaky")
    } else {
        let th = ctx.b.scalar(threshold, name: "\(ctx.name)/threshold")
        let cond = ctx.add(.binary(.greaterOrEqual), [x.name, th], suffix: "above")
        let shifted = ctx.add(.binary(.sub), [x.name, th], suffix: "shift")
        let k = ctx.b.scalar(slope, name: "\(ctx.name)/slope")
        let below = ctx.add(.binary(.mul), [shifted, k], suffix: "below")
        y = ctx.add(.select, [cond, x.name, below], suffix: "select")
    }
    if let m = maxValue {
        let hi = ctx.b.scalar(m, name: "\(ctx.name)/max_value")
        y = ctx.add(.binary(.min), [y, hi], suffix: "max_value")
    }
    return KTensor(name: y, shape: x.shape, channelsFirst: x.channelsFirst)
}

/// Applies a Keras activation by name, with the defaults of the file's Keras version.
func applyActivation(_ name: String, _ x: KTensor, _ ctx: LayerContext) throws -> KTensor {
    func u(_ op: UnaryFunction) -> KTensor { unary(op, x, ctx, suffix: name) }
    switch name {
    case "linear": return x
    case "relu": return u(.relu)
    case "relu6": return relu(x, maxValue: 6, slope: 0, threshold: 0, ctx)
    case "sigmoid": return u(.sigmoid)
    case "tanh": return u(.tanh)
    case "softplus": return u(.softplus)
    case "softsign": return u(.softsign)
    case "exponential": return u(.exp)
    case "elu": return u(.elu(alpha: 1))
    case "selu": return u(.selu(alpha: 1.6732632423543772, gamma: 1.0507009873554805))
    case "gelu": return u(.gelu(tanhApproximation: false))
    case "mish": return u(.mish)
    case "leaky_relu": return u(.leakyRelu(alpha: 0.2))
    case "hard_swish", "hard_silu": return u(.hardSwish)
    case "hard_sigmoid":
        // Keras 2: clip(0.2x + 0.5); Keras 3: relu6(x + 3) / 6.
        return ctx.kerasMajor >= 3 ? u(.hardSigmoid(alpha: 1.0 / 6, beta: 0.5)) : u(.hardSigmoid(alpha: 0.2, beta: 0.5))
    case "swish", "silu":
        let s = ctx.add(.unary(.sigmoid), [x.name], suffix: "sigmoid")
        return KTensor(name: ctx.add(.binary(.mul), [x.name, s], suffix: name), shape: x.shape, channelsFirst: x.channelsFirst)
    case "softmax": return softmax(x, axis: -1, ctx)
    case "log_softmax": return softmax(x, axis: -1, ctx, kind: .logSoftmax)
    default:
        throw ctx.err("unsupported activation '\(name)'")
    }
}

// MARK: Writers

/// Element-wise IR ops back to Keras activation layers. Layout is kept: an activation works
/// on whatever Keras layout its input has.
let activationWriters: [String: LayerWriter] = [
    "unary": writeUnary,
    "clip": { b, node in
        let x = try b.input(node)
        func bound(_ i: Int) throws -> Float? {
            guard i < node.inputs.count, !node.inputs[i].isEmpty else { return nil }
            let t = try b.requireConstant(node, i, "bound")
            guard t.count == 1 else { throw Unmappable(reason: "its bounds are not scalars") }
            return t.floats[0]
        }
        let lo = try bound(1), hi = try bound(2)
        if (lo ?? 0) == 0, lo != nil {
            b.emit(node, "ReLU", ["max_value": hi.map { jsonFloat($0) as Any } ?? NSNull(), "negative_slope": 0.0, "threshold": 0.0],
                   inputs: [x], perm: x.perm)
            return
        }
        guard let lo, let hi else { throw Unmappable(reason: "a one-sided clip other than at 0 has no Keras layer") }
        let shifted = rescaling(b, x, scale: 1, offset: -lo, suffix: "shift")
        let clipped = b.addLayer("ReLU", ["max_value": jsonFloat(hi - lo), "negative_slope": 0.0, "threshold": 0.0],
                                 inputs: [shifted], outputShape: x.shape, perm: x.perm, suffix: "relu")
        b.emit(node, "Rescaling", ["scale": 1.0, "offset": jsonFloat(lo)], inputs: [clipped], perm: x.perm)
    },
    "prelu": { b, node in
        let x = try b.input(node)
        let slope = try b.requireConstant(node, 1, "slope")
        let irShape = b.shape(node.inputs[0])
        let r = irShape.count
        let aligned = Array(repeating: 1, count: r - slope.rank) + slope.shape
        guard aligned[0] == 1 else { throw Unmappable(reason: "its slope varies along the batch axis") }
        // The slope in Keras axis order, full size on the axes it varies along.
        var kshape = [Int](repeating: 1, count: r)
        for i in 0..<r { kshape[x.perm[i]] = aligned[i] }
        let inverse = (0..<r).map { k in x.perm.firstIndex(of: k)! }
        let alpha = permuted(slope.reshaped(aligned), inverse)
        let shared = (1..<r).filter { kshape[$0] == 1 && (x.shape[$0] ?? 2) != 1 }
        let alphaShape = (1..<r).map { kshape[$0] }
        b.emit(node, "PReLU", ["shared_axes": shared.isEmpty ? NSNull() : shared as Any],
               weights: [("alpha", alpha.reshaped(alphaShape))], inputs: [x], perm: x.perm)
    },
    "softmax": { b, node in
        guard case .softmax(let kind, let axis, let coerce2D) = node.op else { return }
        let x = try b.input(node)
        let a = axis < 0 ? axis + x.rank : axis
        guard !coerce2D || a == x.rank - 1 else { throw Unmappable(reason: "softmax over flattened trailing axes has no Keras layer") }
        let k = x.kerasAxis(a)
        switch kind {
        case .softmax:
            b.emit(node, "Softmax", ["axis": k], inputs: [x], perm: x.perm)
        case .logSoftmax:
            guard k == x.rank - 1 else { throw Unmappable(reason: "log-softmax over a non-last Keras axis has no Keras layer") }
            b.emit(node, "Activation", ["activation": "log_softmax"], inputs: [x], perm: x.perm)
        case .hardmax:
            throw Unmappable(reason: "hardmax has no Keras layer")
        }
    },
]

/// A Rescaling layer `x * scale + offset` keeping the layout.
func rescaling(_ b: ExportBuilder, _ x: XTensor, scale: Float, offset: Float, suffix: String) -> XTensor {
    b.addLayer("Rescaling", ["scale": jsonFloat(scale), "offset": jsonFloat(offset)], inputs: [x],
               outputShape: x.shape, perm: x.perm, suffix: suffix)
}

private func writeUnary(_ b: ExportBuilder, _ node: Node) throws {
    guard case .unary(let op) = node.op else { return }
    let x = try b.input(node)
    func act(_ name: String) { b.emit(node, "Activation", ["activation": name], inputs: [x], perm: x.perm) }
    switch op {
    case .relu:
        // relu then min(c) is ReLU(max_value=c) (how relu6 comes back from the importer).
        if let next = b.soleConsumer(node.outputs[0]), case .binary(.min) = next.op,
           let other = next.inputs.first(where: { $0 != node.outputs[0] }), let c = b.constant(other), c.count == 1 {
            let t = b.emit(node, "ReLU", ["max_value": jsonFloat(c.floats[0]), "negative_slope": 0.0, "threshold": 0.0],
                           inputs: [x], perm: x.perm, output: next.outputs[0])
            b.claim(next, as: t)
            return
        }
        act("relu")
    case .sigmoid: act("sigmoid")
    case .tanh: act("tanh")
    case .softplus: act("softplus")
    case .softsign: act("softsign")
    case .exp: act("exponential")
    case .mish: act("mish")
    case .hardSwish: act("hard_swish")
    case .gelu(tanhApproximation: false): act("gelu")
    case .selu(let alpha, let gamma) where abs(alpha - 1.6732632) < 1e-6 && abs(gamma - 1.050701) < 1e-6: act("selu")
    case .elu(let alpha):
        b.emit(node, "ELU", ["alpha": jsonFloat(alpha)], inputs: [x], perm: x.perm)
    case .leakyRelu(let alpha):
        b.emit(node, "LeakyReLU", ["negative_slope": jsonFloat(alpha)], inputs: [x], perm: x.perm)
    case .hardSigmoid(let alpha, let beta):
        if abs(alpha - 1.0 / 6) < 1e-6 && beta == 0.5 { act("hard_sigmoid"); return }
        let scaled = rescaling(b, x, scale: alpha, offset: beta, suffix: "affine")
        b.emit(node, "ReLU", ["max_value": 1.0, "negative_slope": 0.0, "threshold": 0.0], inputs: [scaled], perm: x.perm)
    case .neg:
        b.emit(node, "Rescaling", ["scale": -1.0, "offset": 0.0], inputs: [x], perm: x.perm)
    default:
        throw Unmappable(reason: "\(op) has no Keras activation")
    }
}
