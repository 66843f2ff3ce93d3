/// The vocabulary shared by the graph IR and the kernels that compute it (element-wise
/// functions, reductions, fused activations, pad fills): one enum each, so the IR names a
/// kernel function directly, with no mirror enum and no conversion table.

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
    /// `v / (1 + e^-v)` (SiLU, Swish: exporters write it as `Mul(v, Sigmoid(v))`).
    case silu
}

/// Two-input element-wise functions, applied in NumPy broadcast.
public enum BinaryFunction: Sendable, Equatable {
    case add, sub, mul, div, pow, max, min
    /// `fmod` true: C fmod (result takes the dividend's sign); false: floored, Python-style
    /// (result takes the divisor's sign).
    case mod(fmod: Bool)
    case equal, less, greater, lessOrEqual, greaterOrEqual
    case and, or, xor
    case bitShiftLeft, bitShiftRight
    /// Right shift filling with the sign bit; amounts outside `0..<64` give 0 or -1. The
    /// lowering of `bitShiftRight` picks it for signed integer types; importers never emit it.
    case arithmeticShiftRight
    case bitwiseAnd, bitwiseOr, bitwiseXor

    /// True for the functions whose result is bool whatever the operands.
    public var producesBool: Bool {
        switch self {
        case .equal, .less, .greater, .lessOrEqual, .greaterOrEqual, .and, .or, .xor: return true
        default: return false
        }
    }
}

/// Reductions over a set of axes, with the ONNX definitions:
/// `l1` = sum |x|, `l2` = sqrt(sum x²), `logSum` = log(sum x), `logSumExp` = log(sum e^x)
/// computed around the largest finite element, `sumSquare` = sum x². Over an empty set the
/// results are the identities (sum 0, prod 1, max -inf, min +inf, logSum -inf); reducing
/// over no axes applies the element-wise part alone (`sumSquare` gives x²).
public enum ReduceFunction: Sendable, Equatable {
    case sum, mean, max, min, prod, l1, l2, logSum, logSumExp, sumSquare
}

/// How a padded output coordinate outside the input is filled.
public enum PadFill: Sendable, Equatable {
    /// A fixed value.
    case constant
    /// Mirror without repeating the edge: `[a b c]` -> `c b | a b c | b a`.
    case reflect
    /// Repeat the edge: `a a | a b c | c c`.
    case edge
    /// Wrap around: `b c | a b c | a b`.
    case wrap
}

/// How a scatter (ScatterND, ScatterElements) combines an update with the element already
/// there: `replace` is ONNX's reduction "none".
public enum ScatterCombine: Sendable, Equatable { case replace, add, mul, max, min }

/// How an output coordinate maps back to the input, ONNX `coordinate_transformation_mode`.
public enum ResizeCoordinates: Sendable, Equatable {
    case halfPixel, halfPixelSymmetric, pytorchHalfPixel, alignCorners, asymmetric, tfCropAndResize
}

/// Which input neighbour nearest-neighbour sampling takes at a fractional coordinate.
public enum ResizeRounding: Sendable, Equatable { case roundPreferFloor, roundPreferCeil, floor, ceil }

/// Which normalisation a softmax applies along its axis.
public enum SoftmaxMode: Sendable, Equatable {
    case softmax, logSoftmax
    /// 1 at the first maximum, 0 elsewhere.
    case hardmax
}

/// GridSample's interpolation and its treatment of taps outside the data.
public enum GridSampleMode: Sendable, Equatable { case nearest, linear, cubic }
public enum GridSamplePadding: Sendable, Equatable { case zeros, border, reflection }

/// A recurrent layer's cell.
public enum RecurrentCell: Sendable, Equatable {
    case simple
    case gru(linearBeforeReset: Bool)
    case lstm(inputForget: Bool)
}
