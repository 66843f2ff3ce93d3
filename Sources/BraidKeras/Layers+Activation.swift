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

func unary(_ op: UnaryOp, _ x: KTensor, _ ctx: LayerContext, suffix: String? = nil) -> KTensor {
    KTensor(name: ctx.add(.unary(op), [x.name], suffix: suffix), shape: x.shape, channelsFirst: x.channelsFirst)
}

func softmax(_ x: KTensor, axis: Int, _ ctx: LayerContext, kind: SoftmaxKind = .softmax) -> KTensor {
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
    func u(_ op: UnaryOp) -> KTensor { unary(op, x, ctx, suffix: name) }
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
