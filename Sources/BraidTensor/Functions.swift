/// The element-wise vocabulary shared by the graph IR (`Op.unary`, fused activations) and the
/// kernels that compute it: one enum each, so the IR names a kernel function directly.

/// One-input element-wise functions. Float32 unless `acceptsIntegers`; `isNaN` and `isInf`
/// read float32 and write bool (0/1 as Int64).
public enum UnaryFunction: Sendable, Equatable {
    case neg, abs, sqrt, exp, log, reciprocal, floor, ceil, round, sign
    case sin, cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh
    case erf, relu, sigmoid, tanh, softplus, softsign, hardSwish, mish
    case not, isNaN, isInf, bitwiseNot
    case leakyRelu(alpha: Float)
    case elu(alpha: Float)
    case celu(alpha: Float)
    case selu(alpha: Float, gamma: Float)
    case thresholdedRelu(alpha: Float)
    case hardSigmoid(alpha: Float, beta: Float)
    case gelu(tanhApproximation: Bool)
    case shrink(bias: Float, lambd: Float)
    /// Rounding onto a narrow format's grid (`NarrowFormat.round`); integer formats also on
    /// Int64 storage.
    case narrow(NarrowFormat, saturate: Bool)

    /// Functions with an integer form (on Int64 storage): `neg`, `abs`, `sign`, `relu`, and
    /// `not` on bool.
    public var acceptsIntegers: Bool {
        switch self {
        case .neg, .abs, .sign, .relu, .not, .bitwiseNot: return true
        case .narrow(let f, _): return f.isInteger
        default: return false
        }
    }
}

/// An activation a convolution applies to its output while the output tile is still in cache,
/// after the bias (and the residual, when there is one) has been added. The formulas are the
/// ONNX ones and match `Elementwise.unary` / `clip` element for element.
public enum ConvActivation: Sendable, Equatable {
    /// `max(0, v)`.
    case relu
    /// `v < 0 ? alpha * v : v`.
    case leakyRelu(alpha: Float)
    /// `min(max(v, min), max)` (Relu6 is `clip(0, 6)`).
    case clip(min: Float, max: Float)
    /// `max(0, min(1, alpha * v + beta))`.
    case hardSigmoid(alpha: Float, beta: Float)
    /// `v * max(0, min(1, v / 6 + 1 / 2))`.
    case hardSwish
    /// `1 / (1 + e^-v)`.
    case sigmoid
}
