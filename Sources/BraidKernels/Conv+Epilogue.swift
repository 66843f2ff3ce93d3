import BraidTensor
import CKernels

/// What a convolution does to its output after the products: `y = act(conv(x) + b + r)`.
public struct ConvEpilogue: Sendable, Equatable {
    public var activation: ConvActivation?
    /// A tensor of the output's shape `[N, M, OH, OW]` is added before the activation.
    public var residual: Bool

    public init(activation: ConvActivation? = nil, residual: Bool = false) {
        self.activation = activation; self.residual = residual
    }

    /// Nothing after the products and bias.
    public static let none = ConvEpilogue()
}

/// One activation as a value type, so that kernels specialise on it.
protocol EpilogueFunction {
    func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float>
    func callAsFunction(_ v: Float) -> Float
    /// The CKernels map (`braid_map`) that computes this function over whole runs, for the
    /// exp-based functions: vectorised at the CPU's full width there, against a lane at a time
    /// in registers. Kernels then compute without the activation and map their output.
    var bulkMap: Int? { get }
    /// The same function as CKernels' `braid_activate` computes it (kind and its two
    /// parameters), giving the same floats; nil for the identity.
    var kernel: (kind: Int32, a: Float, b: Float)? { get }
}

extension EpilogueFunction {
    var bulkMap: Int? { nil }
}

struct IdentityEpilogue: EpilogueFunction {
    @inline(__always) func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float> { v }
    @inline(__always) func callAsFunction(_ v: Float) -> Float { v }
    var kernel: (kind: Int32, a: Float, b: Float)? { nil }
}

struct ReluEpilogue: EpilogueFunction {
    var kernel: (kind: Int32, a: Float, b: Float)? { (Int32(BRAID_ACT_RELU), 0, 0) }
    @inline(__always) func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float> { v.replacing(with: 0, where: v .< 0) }
    @inline(__always) func callAsFunction(_ v: Float) -> Float { v < 0 ? 0 : v }
}

struct LeakyReluEpilogue: EpilogueFunction {
    let alpha: Float
    var kernel: (kind: Int32, a: Float, b: Float)? { (Int32(BRAID_ACT_LEAKY_RELU), alpha, 0) }
    @inline(__always) func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float> { v.replacing(with: v * alpha, where: v .< 0) }
    @inline(__always) func callAsFunction(_ v: Float) -> Float { v < 0 ? alpha * v : v }
}

struct ClipEpilogue: EpilogueFunction {
    let lo: Float, hi: Float
    var kernel: (kind: Int32, a: Float, b: Float)? { (Int32(BRAID_ACT_CLIP), lo, hi) }
    @inline(__always) func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float> {
        let a = v.replacing(with: lo, where: v .< lo)
        return a.replacing(with: hi, where: a .> hi)
    }
    @inline(__always) func callAsFunction(_ v: Float) -> Float { v < lo ? lo : (v > hi ? hi : v) }
}

struct HardSigmoidEpilogue: EpilogueFunction {
    let alpha: Float, beta: Float
    var kernel: (kind: Int32, a: Float, b: Float)? { (Int32(BRAID_ACT_HARD_SIGMOID), alpha, beta) }
    @inline(__always) func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float> {
        let t = v * alpha + beta
        return t.replacing(with: 0, where: t .< 0).replacing(with: 1, where: t .> 1)
    }
    @inline(__always) func callAsFunction(_ v: Float) -> Float { Swift.max(0, Swift.min(1, alpha * v + beta)) }
}

struct HardSwishEpilogue: EpilogueFunction {
    var kernel: (kind: Int32, a: Float, b: Float)? { (Int32(BRAID_ACT_HARD_SWISH), 0, 0) }
    @inline(__always) func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float> {
        let t = v * (1 / 6 as Float) + 0.5
        return v * t.replacing(with: 0, where: t .< 0).replacing(with: 1, where: t .> 1)
    }
    @inline(__always) func callAsFunction(_ v: Float) -> Float { v * Swift.max(0, Swift.min(1, v * (1 / 6 as Float) + 0.5)) }
}

struct SigmoidEpilogue: EpilogueFunction {
    var kernel: (kind: Int32, a: Float, b: Float)? { (Int32(BRAID_ACT_SIGMOID), 0, 0) }
    @inline(__always) func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float> {
        var r = v
        for i in 0..<8 { r[i] = fastSigmoid(v[i]) }
        return r
    }
    @inline(__always) func callAsFunction(_ v: Float) -> Float { fastSigmoid(v) }
    var bulkMap: Int? { Int(BRAID_MAP_SIGMOID) }
}

struct SiLUEpilogue: EpilogueFunction {
    var kernel: (kind: Int32, a: Float, b: Float)? { (Int32(BRAID_ACT_SILU), 0, 0) }
    @inline(__always) func callAsFunction(_ v: SIMD8<Float>) -> SIMD8<Float> {
        var r = v
        for i in 0..<8 { r[i] = v[i] * fastSigmoid(v[i]) }
        return r
    }
    @inline(__always) func callAsFunction(_ v: Float) -> Float { v * fastSigmoid(v) }
    var bulkMap: Int? { Int(BRAID_MAP_SILU) }
}

/// Calls back with the activation as a concrete `EpilogueFunction`, so the callee's loops
/// are compiled once per activation.
protocol EpilogueVisitor {
    func visit<F: EpilogueFunction>(_ f: F)
}

extension ConvActivation? {
    @inline(__always)
    func dispatch<V: EpilogueVisitor>(_ v: V) {
        switch self {
        case nil: v.visit(IdentityEpilogue())
        case .relu: v.visit(ReluEpilogue())
        case .leakyRelu(let alpha): v.visit(LeakyReluEpilogue(alpha: alpha))
        case .clip(let lo, let hi): v.visit(ClipEpilogue(lo: lo, hi: hi))
        case .hardSigmoid(let alpha, let beta): v.visit(HardSigmoidEpilogue(alpha: alpha, beta: beta))
        case .hardSwish: v.visit(HardSwishEpilogue())
        case .sigmoid: v.visit(SigmoidEpilogue())
        case .silu: v.visit(SiLUEpilogue())
        }
    }
}

/// A convolution kernel that applies its epilogue itself, its loops compiled once per
/// activation: it provides `run`, and gets `forward`, which picks the activation.
protocol EpilogueKernel: AnyObject {
    var geometry: ConvGeometry { get }
    var epilogue: ConvEpilogue { get }
    func run<F: EpilogueFunction>(_ f: F, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                  bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                  y: UnsafeMutablePointer<Float>)
}

extension EpilogueKernel {
    /// `x` `[N, C, H, W]`, `weight` `[M, C/group, kH, kW]`, `bias` `[M]` or nil, `residual`
    /// `[N, M, OH, OW]` (read when the epilogue has one), `y` `[N, M, OH, OW]` (overwritten).
    func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 residual: UnsafePointer<Float>? = nil, y: UnsafeMutablePointer<Float>) {
        if let map = epilogue.activation?.bulkMap {
            // Sigmoid and SiLU: the products (and residual), then one vectorised pass.
            run(IdentityEpilogue(), x: x, weight: weight, bias: bias, residual: residual, y: y)
            let g = geometry
            cmap(y, y, g.batch * g.outChannels * g.outH * g.outW, map)
        } else {
            epilogue.activation.dispatch(KernelRun(kernel: self, x: x, weight: weight, bias: bias, residual: residual, y: y))
        }
    }
}

private struct KernelRun<K: EpilogueKernel>: EpilogueVisitor {
    let kernel: K
    let x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?
    let residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>
    func visit<F: EpilogueFunction>(_ f: F) {
        kernel.run(f, x: x, weight: weight, bias: bias, residual: residual, y: y)
    }
}

/// `rows` rows of `cols` floats, `stride` apart, replaced in place by `f(v)`.
/// CKernels' `braid_activate`, at the CPU's full vector width.
@inline(__always)
func applyEpilogue<F: EpilogueFunction>(_ f: F, _ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int, stride: Int) {
    guard let k = f.kernel, rows > 0, cols > 0 else { return }
    braid_activate(k.kind, k.a, k.b, y, rows, cols, stride)
}

private struct RowsVisitor: EpilogueVisitor {
    let y: UnsafeMutablePointer<Float>, rows: Int, cols: Int, stride: Int
    func visit<F: EpilogueFunction>(_ f: F) { applyEpilogue(f, y, rows: rows, cols: cols, stride: stride) }
}

extension ConvActivation {
    /// The CKernels map that applies this activation over whole runs (`EpilogueFunction.bulkMap`).
    var bulkMap: Int? {
        switch self {
        case .sigmoid: return Int(BRAID_MAP_SIGMOID)
        case .silu: return Int(BRAID_MAP_SILU)
        default: return nil
        }
    }

    /// Applies the activation in place to `rows` rows of `cols` floats, `stride` apart.
    public func apply(_ y: UnsafeMutablePointer<Float>, rows: Int = 1, cols: Int, stride: Int = 0) {
        Optional(self).dispatch(RowsVisitor(y: y, rows: rows, cols: cols, stride: stride))
    }
}
