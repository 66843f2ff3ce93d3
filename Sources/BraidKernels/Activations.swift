import BraidTensor
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import CKernels

extension Elementwise {
    /// The activation functions of `UnaryFunction`, float32 `[count]` -> `[count]`, with the
    /// ONNX definitions.
    static func activation(_ f: UnaryFunction, _ x: UnsafePointer<Float>,
                           _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch f {
        case .relu: pmap(x, y, count, ReluF())
        case .leakyRelu(let alpha): pmap(x, y, count, LeakyReluF(alpha: alpha))
        case .thresholdedRelu(let alpha): pmap(x, y, count, ThresholdedReluF(alpha: alpha))
        case .sigmoid: cmap(x, y, count, Int(BRAID_MAP_SIGMOID))
        case .tanh: cmap(x, y, count, Int(BRAID_MAP_TANH))
        case .hardSigmoid(let alpha, let beta): pmap(x, y, count, HardSigmoidF(alpha: alpha, beta: beta))
        case .hardSwish: pmap(x, y, count, HardSwishF())
        case .softplus: pmap(x, y, count, SoftplusF())
        case .softsign: pmap(x, y, count, SoftsignF())
        case .mish: pmap(x, y, count, MishF())
        case .elu(let alpha): pmap(x, y, count, EluF(alpha: alpha))
        case .celu(let alpha): pmap(x, y, count, CeluF(alpha: alpha))
        case .selu(let alpha, let gamma): pmap(x, y, count, SeluF(alpha: alpha, gamma: gamma))
        case .gelu(tanhApproximation: false): cmap(x, y, count, Int(BRAID_MAP_GELU))
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

extension Elementwise {
    /// Backward of the activation functions: `gx += g * f'(x)`, all float32 `[count]`, `y`
    /// the forward's result. At a kink the one-sided derivative PyTorch uses is taken
    /// (relu 0 at 0, leaky relu 1 at 0).
    static func activationBackward(_ f: UnaryFunction, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                   _ g: UnsafePointer<Float>, _ gx: UnsafeMutablePointer<Float>, count: Int) {
        switch f {
        case .relu: pgrad(x, y, g, gx, count, ReluD())
        case .leakyRelu(let alpha): pgrad(x, y, g, gx, count, LeakyReluD(alpha: alpha))
        case .thresholdedRelu(let alpha): pgrad(x, y, g, gx, count, ThresholdedReluD(alpha: alpha))
        case .sigmoid: pgrad(x, y, g, gx, count, SigmoidD())
        case .tanh: pgrad(x, y, g, gx, count, TanhD())
        case .hardSigmoid(let alpha, let beta): pgrad(x, y, g, gx, count, HardSigmoidD(alpha: alpha, beta: beta))
        case .hardSwish: pgrad(x, y, g, gx, count, HardSwishD())
        case .softplus: pgrad(x, y, g, gx, count, SoftplusD())
        case .softsign: pgrad(x, y, g, gx, count, SoftsignD())
        case .mish: pgrad(x, y, g, gx, count, MishD())
        case .elu(let alpha): pgrad(x, y, g, gx, count, EluD(alpha: alpha))
        case .celu(let alpha): pgrad(x, y, g, gx, count, CeluD(alpha: alpha))
        case .selu(let alpha, let gamma): pgrad(x, y, g, gx, count, SeluD(alpha: alpha, gamma: gamma))
        case .gelu(tanhApproximation: false): pgrad(x, y, g, gx, count, GeluErfD())
        case .gelu(tanhApproximation: true): pgrad(x, y, g, gx, count, GeluTanhD())
        case .shrink(_, let lambd): pgrad(x, y, g, gx, count, ShrinkD(lambd: lambd))
        default: preconditionFailure("\(f) is not an activation")
        }
    }
}
