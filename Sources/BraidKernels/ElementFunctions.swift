#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import CKernels

// Element functions as types. A closure captured by the chunk body handed to the thread pool
// (`NNParallel.run`) is called indirectly per element (no specialisation
// through the opaque call), which costs 10x on memory-bound loops; a generic over a struct is
// specialised and vectorised. Rarely hot functions keep the closure form in serial loops.

protocol ElementFunction1 {
    associatedtype In
    associatedtype Out
    func callAsFunction(_ v: In) -> Out
}

protocol ElementFunction2 {
    associatedtype In1
    associatedtype In2
    associatedtype Out
    func callAsFunction(_ a: In1, _ b: In2) -> Out
}

/// `y[i] = f(x[i])`, parallel over chunks when large.
@inline(__always)
func pmap<F: ElementFunction1>(_ x: UnsafePointer<F.In>, _ y: UnsafeMutablePointer<F.Out>,
                               _ n: Int, _ f: F) {
    elementwiseChunks(n) { lo, hi in
        for i in lo..<hi { y[i] = f(x[i]) }
    }
}

/// `y[i] = function(x[i])` by CKernels' `braid_map` (`BRAID_MAP_EXP`, `_SIGMOID`, `_TANH`,
/// `_SILU`, `_ERF`, `_GELU`: vectorised, built for each instruction set), parallel over chunks
/// when large.
@inline(__always)
func cmap(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ function: Int) {
    elementwiseChunks(n) { lo, hi in braid_map(Int32(function), x + lo, y + lo, hi - lo) }
}

/// `c = f(a, b)` through `layout`, parallel over chunks when large. Three inner-loop shapes
/// (both contiguous, one side a scalar) each specialise into a tight loop.
@inline(__always)
func pbroadcast2<F: ElementFunction2>(_ layout: BroadcastLayout, _ a: UnsafePointer<F.In1>,
                                      _ b: UnsafePointer<F.In2>, _ c: UnsafeMutablePointer<F.Out>,
                                      _ f: F) {
    let sa = layout.innerStep[0], sb = layout.innerStep[1]
    elementwiseChunks(layout.count) { lo, hi in
        layout.walk(lo, hi) { off, o, n in
            broadcastRun(sa, sb, a + off[0], b + off[1], c + o, n) { f($0, $1) }
        }
    }
}

/// One inner run of `n` outputs of a two-input broadcast: `pc[i] = f(pa[i * ?], pb[i * ?])`
/// where an operand whose inner step is 0 is read once, so each case is a tight loop.
@inline(__always)
func broadcastRun<A, B, C>(_ sa: Int, _ sb: Int, _ pa: UnsafePointer<A>, _ pb: UnsafePointer<B>,
                           _ pc: UnsafeMutablePointer<C>, _ n: Int, _ f: (A, B) -> C) {
    if sa != 0 && sb != 0 {
        for i in 0..<n { pc[i] = f(pa[i], pb[i]) }
    } else if sa != 0 {
        let y = pb[0]
        for i in 0..<n { pc[i] = f(pa[i], y) }
    } else if sb != 0 {
        let x = pa[0]
        for i in 0..<n { pc[i] = f(x, pb[i]) }
    } else {
        let v = f(pa[0], pb[0])
        for i in 0..<n { pc[i] = v }
    }
}

struct NegF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { -v } }
struct AbsF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { Swift.abs(v) } }
struct SqrtF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v.squareRoot() } }
struct LogF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { logf(v) } }
struct ReciprocalF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { 1 / v } }
struct FloorF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v.rounded(.down) } }
struct CeilF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v.rounded(.up) } }
struct RoundF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v.rounded(.toNearestOrEven) } }
struct SignF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v > 0 ? 1 : (v < 0 ? -1 : v) } }
// `v < 0 ? 0 : v` rather than max(v, 0): NaN passes through as in NumPy.
struct ReluF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v < 0 ? 0 : v } }
struct LeakyReluF: ElementFunction1 {
    let alpha: Float
    func callAsFunction(_ v: Float) -> Float { v < 0 ? alpha * v : v }
}
struct ThresholdedReluF: ElementFunction1 {
    let alpha: Float
    func callAsFunction(_ v: Float) -> Float { v > alpha ? v : 0 }
}
struct HardSigmoidF: ElementFunction1 {
    let alpha: Float, beta: Float
    func callAsFunction(_ v: Float) -> Float { Swift.max(0, Swift.min(1, alpha * v + beta)) }
}
struct HardSwishF: ElementFunction1 {
    func callAsFunction(_ v: Float) -> Float { v * Swift.max(0, Swift.min(1, v * (1 / 6 as Float) + 0.5)) }
}
struct SoftplusF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { softplus(v) } }
struct SoftsignF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v / (1 + Swift.abs(v)) } }
struct MishF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v * fastTanh(softplus(v)) } }
struct EluF: ElementFunction1 {
    let alpha: Float
    func callAsFunction(_ v: Float) -> Float { v < 0 ? alpha * (fastExp(v) - 1) : v }
}
struct CeluF: ElementFunction1 {
    let alpha: Float
    func callAsFunction(_ v: Float) -> Float { Swift.max(0, v) + Swift.min(0, alpha * (fastExp(v / alpha) - 1)) }
}
struct SeluF: ElementFunction1 {
    let alpha: Float, gamma: Float
    func callAsFunction(_ v: Float) -> Float { v > 0 ? gamma * v : gamma * (alpha * fastExp(v) - alpha) }
}
struct GeluTanhF: ElementFunction1 {
    func callAsFunction(_ v: Float) -> Float {
        let inner = (0.79788456080286536 as Float) * (v + 0.044715 * v * v * v)
        return 0.5 * v * (1 + fastTanh(inner))
    }
}
struct ShrinkF: ElementFunction1 {
    let bias: Float, lambd: Float
    func callAsFunction(_ v: Float) -> Float { v < -lambd ? v + bias : (v > lambd ? v - bias : 0) }
}
/// Clip: a NaN stays NaN and `lo > hi` gives `hi`, as ONNX states.
struct ClipF: ElementFunction1 {
    let lo: Float, hi: Float
    func callAsFunction(_ v: Float) -> Float {
        let t = v < lo ? lo : v
        return t > hi ? hi : t
    }
}
struct ScaleF: ElementFunction1 {
    let s: Float
    func callAsFunction(_ v: Float) -> Float { v * s }
}

struct AddF: ElementFunction2 { func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
struct SubF: ElementFunction2 { func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
struct MulF: ElementFunction2 { func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
struct DivF: ElementFunction2 { func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
// NumPy's maximum/minimum: a NaN on either side wins.
struct MaxF: ElementFunction2 {
    func callAsFunction(_ a: Float, _ b: Float) -> Float { (a > b || a.isNaN) ? a : b }
}
struct MinF: ElementFunction2 {
    func callAsFunction(_ a: Float, _ b: Float) -> Float { (a < b || a.isNaN) ? a : b }
}
struct PReluF: ElementFunction2 {
    func callAsFunction(_ x: Float, _ s: Float) -> Float { x < 0 ? x * s : x }
}

// MARK: Derivatives

/// dy/dx of a one-input function at `x`, given the forward's result `y` (whichever is cheaper).
protocol Derivative1 {
    func callAsFunction(_ x: Float, _ y: Float) -> Float
}

/// `gx[i] += g[i] * f'(x[i])`, parallel over chunks when large.
@inline(__always)
func pgrad<F: Derivative1>(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                           _ g: UnsafePointer<Float>, _ gx: UnsafeMutablePointer<Float>,
                           _ n: Int, _ f: F) {
    elementwiseChunks(n) { lo, hi in
        for i in lo..<hi { gx[i] += g[i] * f(x[i], y[i]) }
    }
}

struct NegD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { -1 } }
struct AbsD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) } }
struct SqrtD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { 0.5 / y } }
struct ExpD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { y } }
struct LogD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { 1 / x } }
struct ReciprocalD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { -y * y } }
struct ErfD: Derivative1 {
    func callAsFunction(_ x: Float, _ y: Float) -> Float { (1.1283791670955126 as Float) * fastExp(-x * x) }
}
struct ReluD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { x > 0 ? 1 : 0 } }
struct LeakyReluD: Derivative1 {
    let alpha: Float
    func callAsFunction(_ x: Float, _ y: Float) -> Float { x < 0 ? alpha : 1 }
}
struct ThresholdedReluD: Derivative1 {
    let alpha: Float
    func callAsFunction(_ x: Float, _ y: Float) -> Float { x > alpha ? 1 : 0 }
}
struct SigmoidD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { y * (1 - y) } }
struct TanhD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { 1 - y * y } }
struct HardSigmoidD: Derivative1 {
    let alpha: Float, beta: Float
    func callAsFunction(_ x: Float, _ y: Float) -> Float {
        let v = alpha * x + beta
        return v > 0 && v < 1 ? alpha : 0
    }
}
struct HardSwishD: Derivative1 {
    func callAsFunction(_ x: Float, _ y: Float) -> Float { x < -3 ? 0 : (x > 3 ? 1 : x * (1 / 3 as Float) + 0.5) }
}
struct SoftplusD: Derivative1 { func callAsFunction(_ x: Float, _ y: Float) -> Float { fastSigmoid(x) } }
struct SoftsignD: Derivative1 {
    func callAsFunction(_ x: Float, _ y: Float) -> Float {
        let d = 1 + Swift.abs(x)
        return 1 / (d * d)
    }
}
struct MishD: Derivative1 {
    func callAsFunction(_ x: Float, _ y: Float) -> Float {
        let t = fastTanh(softplus(x))
        return t + x * (1 - t * t) * fastSigmoid(x)
    }
}
struct EluD: Derivative1 {
    let alpha: Float
    func callAsFunction(_ x: Float, _ y: Float) -> Float { x < 0 ? y + alpha : 1 }
}
struct CeluD: Derivative1 {
    let alpha: Float
    func callAsFunction(_ x: Float, _ y: Float) -> Float { x > 0 ? 1 : fastExp(x / alpha) }
}
struct SeluD: Derivative1 {
    let alpha: Float, gamma: Float
    func callAsFunction(_ x: Float, _ y: Float) -> Float { x > 0 ? gamma : y + gamma * alpha }
}
struct GeluErfD: Derivative1 {
    func callAsFunction(_ x: Float, _ y: Float) -> Float {
        // 0.5 (1 + erf(x / sqrt 2)) + x * N(x), N the standard normal density.
        0.5 * (1 + erff(x * (0.70710678118654752 as Float)))
            + x * (0.3989422804014327 as Float) * fastExp(-0.5 * x * x)
    }
}
struct GeluTanhD: Derivative1 {
    func callAsFunction(_ x: Float, _ y: Float) -> Float {
        let k: Float = 0.79788456080286536
        let t = fastTanh(k * (x + 0.044715 * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
    }
}
struct ShrinkD: Derivative1 {
    let lambd: Float
    func callAsFunction(_ x: Float, _ y: Float) -> Float { x < -lambd || x > lambd ? 1 : 0 }
}

/// The derivative of a two-input function with respect to one operand at `(a, b)`, given
/// the forward's result `y`.
protocol Derivative2 {
    func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float
}
struct OneD2: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { 1 } }
struct MinusOneD2: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { -1 } }
struct MulDA: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { b } }
struct MulDB: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { a } }
struct DivDA: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { 1 / b } }
struct DivDB: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { -y / b } }
struct PowDA: Derivative2 {
    func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { b == 0 ? 0 : b * powf(a, b - 1) }
}
/// a^b log a; 0 where a <= 0 (where the real power is undefined or constant in b).
struct PowDB: Derivative2 {
    func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { a > 0 ? y * logf(a) : 0 }
}
// Ties split the gradient in half, as PyTorch's maximum/minimum do.
struct MaxDA: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { a > b ? 1 : (a == b ? 0.5 : 0) } }
struct MaxDB: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { b > a ? 1 : (a == b ? 0.5 : 0) } }
struct MinDA: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { a < b ? 1 : (a == b ? 0.5 : 0) } }
struct MinDB: Derivative2 { func callAsFunction(_ a: Float, _ b: Float, _ y: Float) -> Float { b < a ? 1 : (a == b ? 0.5 : 0) } }
struct PReluDX: Derivative2 { func callAsFunction(_ x: Float, _ s: Float, _ y: Float) -> Float { x < 0 ? s : 1 } }
struct PReluDS: Derivative2 { func callAsFunction(_ x: Float, _ s: Float, _ y: Float) -> Float { x < 0 ? x : 0 } }

/// `dst[o] (+)= g[o] * f(a, b, y[o])` with a and b read through `layout`, in output order.
@inline(__always)
func pgrad2<F: Derivative2>(_ layout: BroadcastLayout, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                            _ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                            _ dst: UnsafeMutablePointer<Float>, accumulate: Bool, _ f: F) {
    let sa = layout.innerStep[0], sb = layout.innerStep[1]
    elementwiseChunks(layout.count) { lo, hi in
        layout.walk(lo, hi) { off, o, n in
            let pa = a + off[0], pb = b + off[1], py = y + o, pg = g + o, pd = dst + o
            if accumulate {
                for i in 0..<n { pd[i] += pg[i] * f(pa[i &* sa], pb[i &* sb], py[i]) }
            } else {
                for i in 0..<n { pd[i] = pg[i] * f(pa[i &* sa], pb[i &* sb], py[i]) }
            }
        }
    }
}
