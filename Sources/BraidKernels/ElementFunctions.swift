#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

// Element functions as types. A closure captured by the chunk body handed to
// `DispatchQueue.concurrentPerform` is called indirectly per element (no specialisation
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

/// `c = f(a, b)` through `layout`, parallel over chunks when large. Three inner-loop shapes
/// (both contiguous, one side a scalar) each specialise into a tight loop.
@inline(__always)
func pbroadcast2<F: ElementFunction2>(_ layout: BroadcastLayout, _ a: UnsafePointer<F.In1>,
                                      _ b: UnsafePointer<F.In2>, _ c: UnsafeMutablePointer<F.Out>,
                                      _ f: F) {
    let sa = layout.innerStep[0], sb = layout.innerStep[1]
    elementwiseChunks(layout.count) { lo, hi in
        layout.walk(lo, hi) { off, o, n in
            let pa = a + off[0], pb = b + off[1], pc = c + o
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
    }
}

struct NegF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { -v } }
struct AbsF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { Swift.abs(v) } }
struct SqrtF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v.squareRoot() } }
struct ExpF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { fastExp(v) } }
struct LogF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { logf(v) } }
struct ReciprocalF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { 1 / v } }
struct FloorF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v.rounded(.down) } }
struct CeilF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v.rounded(.up) } }
struct RoundF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v.rounded(.toNearestOrEven) } }
struct SignF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { v > 0 ? 1 : (v < 0 ? -1 : v) } }
struct ErfF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { erff(v) } }
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
struct SigmoidF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { fastSigmoid(v) } }
struct TanhF: ElementFunction1 { func callAsFunction(_ v: Float) -> Float { fastTanh(v) } }
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
struct GeluErfF: ElementFunction1 {
    func callAsFunction(_ v: Float) -> Float { 0.5 * v * (1 + erff(v * (0.70710678118654752 as Float))) }
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
