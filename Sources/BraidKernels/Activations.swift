import BraidTensor
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

extension Elementwise {
    /// The activation functions of `UnaryFunction`, float32 `[count]` -> `[count]`, with the
    /// ONNX definitions.
    static func activation(_ f: UnaryFunction, _ x: UnsafePointer<Float>,
                           _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch f {
        // `v < 0 ? 0 : v` rather than max(v, 0): NaN passes through as in NumPy.
        case .relu: map(x, y, count) { $0 < 0 ? 0 : $0 }
        case .leakyRelu(let alpha): map(x, y, count) { $0 < 0 ? alpha * $0 : $0 }
        case .thresholdedRelu(let alpha): map(x, y, count) { $0 > alpha ? $0 : 0 }
        case .sigmoid: map(x, y, count) { fastSigmoid($0) }
        case .tanh: map(x, y, count) { fastTanh($0) }
        case .hardSigmoid(let alpha, let beta):
            map(x, y, count) { Swift.max(0, Swift.min(1, alpha * $0 + beta)) }
        case .hardSwish:
            map(x, y, count) { $0 * Swift.max(0, Swift.min(1, $0 * (1 / 6 as Float) + 0.5)) }
        case .softplus: map(x, y, count) { softplus($0) }
        case .softsign: map(x, y, count) { $0 / (1 + Swift.abs($0)) }
        case .mish: map(x, y, count) { $0 * tanhf(softplus($0)) }
        case .elu(let alpha): map(x, y, count) { $0 < 0 ? alpha * (expf($0) - 1) : $0 }
        case .celu(let alpha):
            map(x, y, count) { Swift.max(0, $0) + Swift.min(0, alpha * (expf($0 / alpha) - 1)) }
        case .selu(let alpha, let gamma):
            map(x, y, count) { $0 > 0 ? gamma * $0 : gamma * (alpha * expf($0) - alpha) }
        case .gelu(tanhApproximation: false):
            map(x, y, count) { 0.5 * $0 * (1 + erff($0 * (0.70710678118654752 as Float))) }
        case .gelu(tanhApproximation: true):
            map(x, y, count) { v in
                let inner = (0.79788456080286536 as Float) * (v + 0.044715 * v * v * v)
                return 0.5 * v * (1 + fastTanh(inner))
            }
        case .shrink(let bias, let lambd):
            map(x, y, count) { $0 < -lambd ? $0 + bias : ($0 > lambd ? $0 - bias : 0) }
        default: preconditionFailure("\(f) is not an activation")
        }
    }
}

/// log(1 + e^v) without overflow for large v.
@inline(__always)
func softplus(_ v: Float) -> Float {
    v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v))
}
