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
        case .relu: pmap(x, y, count, ReluF())
        case .leakyRelu(let alpha): pmap(x, y, count, LeakyReluF(alpha: alpha))
        case .thresholdedRelu(let alpha): pmap(x, y, count, ThresholdedReluF(alpha: alpha))
        case .sigmoid: pmap(x, y, count, SigmoidF())
        case .tanh: pmap(x, y, count, TanhF())
        case .hardSigmoid(let alpha, let beta): pmap(x, y, count, HardSigmoidF(alpha: alpha, beta: beta))
        case .hardSwish: pmap(x, y, count, HardSwishF())
        case .softplus: pmap(x, y, count, SoftplusF())
        case .softsign: pmap(x, y, count, SoftsignF())
        case .mish: pmap(x, y, count, MishF())
        case .elu(let alpha): pmap(x, y, count, EluF(alpha: alpha))
        case .celu(let alpha): pmap(x, y, count, CeluF(alpha: alpha))
        case .selu(let alpha, let gamma): pmap(x, y, count, SeluF(alpha: alpha, gamma: gamma))
        case .gelu(tanhApproximation: false): pmap(x, y, count, GeluErfF())
        case .gelu(tanhApproximation: true): pmap(x, y, count, GeluTanhF())
        case .shrink(let bias, let lambd): pmap(x, y, count, ShrinkF(bias: bias, lambd: lambd))
        default: preconditionFailure("\(f) is not an activation")
        }
    }
}

/// log(1 + e^v) without overflow for large v.
@inline(__always)
func softplus(_ v: Float) -> Float {
    v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v))
}
