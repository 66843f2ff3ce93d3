import BraidTensor
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import CKernels

/// Element-wise kernels over raw storage. Float32 tensors are `Float`, every other dtype is
/// `Int64` (see `DType`). Outputs never alias inputs unless stated.
public enum Elementwise {
    /// `y[i] = f(x[i])` for `count` float32 elements.
    public static func unary(_ f: UnaryFunction, _ x: UnsafePointer<Float>,
                             _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch f {
        case .neg: pmap(x, y, count, NegF())
        case .abs: pmap(x, y, count, AbsF())
        case .sqrt: pmap(x, y, count, SqrtF())
        case .exp: cmap(x, y, count, Int(BRAID_MAP_EXP))
        case .log: pmap(x, y, count, LogF())
        case .reciprocal: pmap(x, y, count, ReciprocalF())
        case .floor: pmap(x, y, count, FloorF())
        case .ceil: pmap(x, y, count, CeilF())
        case .round: pmap(x, y, count, RoundF())
        case .sign: pmap(x, y, count, SignF())
        case .sin: map(x, y, count) { sinf($0) }
        case .cos: map(x, y, count) { cosf($0) }
        case .tan: map(x, y, count) { tanf($0) }
        case .asin: map(x, y, count) { asinf($0) }
        case .acos: map(x, y, count) { acosf($0) }
        case .atan: map(x, y, count) { atanf($0) }
        case .sinh: map(x, y, count) { sinhf($0) }
        case .cosh: map(x, y, count) { coshf($0) }
        case .asinh: map(x, y, count) { asinhf($0) }
        case .acosh: map(x, y, count) { acoshf($0) }
        case .atanh: map(x, y, count) { atanhf($0) }
        case .erf: cmap(x, y, count, Int(BRAID_MAP_ERF))
        case .not, .isNaN, .isInf, .bitwiseNot:
            preconditionFailure("\(f) does not map float32 to float32")
        case .narrow(let format, let saturate): map(x, y, count) { format.round($0, saturate: saturate) }
        default: activation(f, x, y, count: count)
        }
    }

    /// `y[i] = f(x[i])` on Int64 storage; `f.acceptsIntegers` must hold.
    public static func unary(_ f: UnaryFunction, _ x: UnsafePointer<Int64>,
                             _ y: UnsafeMutablePointer<Int64>, count: Int) {
        switch f {
        case .neg: map(x, y, count) { 0 &- $0 }
        case .abs: map(x, y, count) { $0 < 0 ? 0 &- $0 : $0 }
        case .sign: map(x, y, count) { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }
        case .relu: map(x, y, count) { $0 < 0 ? 0 : $0 }
        case .not: map(x, y, count) { $0 == 0 ? 1 : 0 }
        case .bitwiseNot: map(x, y, count) { ~$0 }
        case .narrow(let format, _): map(x, y, count) { format.narrow($0) }
        default: preconditionFailure("\(f) has no integer form")
        }
    }

    /// `isNaN` / `isInf` (either sign): float32 in, bool (0/1) out.
    public static func classify(_ f: UnaryFunction, _ x: UnsafePointer<Float>,
                                _ y: UnsafeMutablePointer<Int64>, count: Int) {
        switch f {
        case .isNaN: map(x, y, count) { $0.isNaN ? 1 : 0 }
        case .isInf: map(x, y, count) { $0.isInfinite ? 1 : 0 }
        default: preconditionFailure("\(f) is not a float classifier")
        }
    }

    /// `c = f(a, b)` for float32 operands and result (arithmetic, min/max, mod).
    public static func binary(_ f: BinaryFunction, _ layout: BroadcastLayout,
                              _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                              _ c: UnsafeMutablePointer<Float>) {
        switch f {
        case .add: pbroadcast2(layout, a, b, c, AddF())
        case .sub: pbroadcast2(layout, a, b, c, SubF())
        case .mul: pbroadcast2(layout, a, b, c, MulF())
        case .div: pbroadcast2(layout, a, b, c, DivF())
        case .pow: broadcast2(layout, a, b, c) { powf($0, $1) }
        case .max: pbroadcast2(layout, a, b, c, MaxF())
        case .min: pbroadcast2(layout, a, b, c, MinF())
        case .mod(fmod: true): broadcast2(layout, a, b, c) { fmodf($0, $1) }
        case .mod(fmod: false): broadcast2(layout, a, b, c) { x, y in
            let r = fmodf(x, y)
            return (r != 0 && (r < 0) != (y < 0)) ? r + y : r
        }
        default: preconditionFailure("\(f) is not a float32 -> float32 function")
        }
    }

    /// Comparisons of float32 operands, bool (0/1) result.
    public static func compare(_ f: BinaryFunction, _ layout: BroadcastLayout,
                               _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                               _ c: UnsafeMutablePointer<Int64>) {
        switch f {
        case .equal: broadcast2(layout, a, b, c) { $0 == $1 ? 1 : 0 }
        case .less: broadcast2(layout, a, b, c) { $0 < $1 ? 1 : 0 }
        case .greater: broadcast2(layout, a, b, c) { $0 > $1 ? 1 : 0 }
        case .lessOrEqual: broadcast2(layout, a, b, c) { $0 <= $1 ? 1 : 0 }
        case .greaterOrEqual: broadcast2(layout, a, b, c) { $0 >= $1 ? 1 : 0 }
        default: preconditionFailure("\(f) is not a float32 comparison")
        }
    }

    /// Every binary function on Int64 storage (integers and bool). Arithmetic wraps at 64
    /// bits; division truncates toward zero as in C; division or mod by zero gives 0;
    /// shifts are logical and give 0 for amounts outside `0..<64`; a negative integer
    /// exponent gives the truncated quotient (0 unless the base is 1 or -1).
    public static func binary(_ f: BinaryFunction, _ layout: BroadcastLayout,
                              _ a: UnsafePointer<Int64>, _ b: UnsafePointer<Int64>,
                              _ c: UnsafeMutablePointer<Int64>) {
        switch f {
        case .add: broadcast2(layout, a, b, c) { $0 &+ $1 }
        case .sub: broadcast2(layout, a, b, c) { $0 &- $1 }
        case .mul: broadcast2(layout, a, b, c) { $0 &* $1 }
        case .div: broadcast2(layout, a, b, c) { x, y in
            y == 0 ? 0 : (y == -1 ? 0 &- x : x / y)
        }
        case .pow: broadcast2(layout, a, b, c) { intPow($0, $1) }
        case .max: broadcast2(layout, a, b, c) { Swift.max($0, $1) }
        case .min: broadcast2(layout, a, b, c) { Swift.min($0, $1) }
        case .mod(fmod: true): broadcast2(layout, a, b, c) { x, y in
            (y == 0 || y == -1) ? 0 : x % y
        }
        case .mod(fmod: false): broadcast2(layout, a, b, c) { x, y in
            if y == 0 || y == -1 { return 0 }
            let r = x % y
            return (r != 0 && (r < 0) != (y < 0)) ? r + y : r
        }
        case .equal: broadcast2(layout, a, b, c) { $0 == $1 ? 1 : 0 }
        case .less: broadcast2(layout, a, b, c) { $0 < $1 ? 1 : 0 }
        case .greater: broadcast2(layout, a, b, c) { $0 > $1 ? 1 : 0 }
        case .lessOrEqual: broadcast2(layout, a, b, c) { $0 <= $1 ? 1 : 0 }
        case .greaterOrEqual: broadcast2(layout, a, b, c) { $0 >= $1 ? 1 : 0 }
        case .and: broadcast2(layout, a, b, c) { ($0 != 0 && $1 != 0) ? 1 : 0 }
        case .or: broadcast2(layout, a, b, c) { ($0 != 0 || $1 != 0) ? 1 : 0 }
        case .xor: broadcast2(layout, a, b, c) { (($0 != 0) != ($1 != 0)) ? 1 : 0 }
        case .bitShiftLeft: broadcast2(layout, a, b, c) { x, s in
            (s < 0 || s >= 64) ? 0 : Int64(bitPattern: UInt64(bitPattern: x) << UInt64(s))
        }
        case .bitShiftRight: broadcast2(layout, a, b, c) { x, s in
            (s < 0 || s >= 64) ? 0 : Int64(bitPattern: UInt64(bitPattern: x) >> UInt64(s))
        }
        case .arithmeticShiftRight: broadcast2(layout, a, b, c) { x, s in
            (s < 0 || s >= 64) ? (x < 0 ? -1 : 0) : x >> s
        }
        case .bitwiseAnd: broadcast2(layout, a, b, c) { $0 & $1 }
        case .bitwiseOr: broadcast2(layout, a, b, c) { $0 | $1 }
        case .bitwiseXor: broadcast2(layout, a, b, c) { $0 ^ $1 }
        }
    }

    /// Pow with a float32 base and an integer exponent (float32 result).
    public static func pow(_ layout: BroadcastLayout, _ a: UnsafePointer<Float>,
                           _ b: UnsafePointer<Int64>, _ c: UnsafeMutablePointer<Float>) {
        broadcast2(layout, a, b, c) { powf($0, Float($1)) }
    }

    /// Pow with an integer base and a float32 exponent; the result keeps the base's integer
    /// type, truncated toward zero as NumPy's `astype` does.
    public static func pow(_ layout: BroadcastLayout, _ a: UnsafePointer<Int64>,
                           _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Int64>) {
        broadcast2(layout, a, b, c) { saturatingInt64(cPow(Double($0), Double($1))) }
    }

    /// PRelu: `y = x < 0 ? slope * x : x`, slope broadcast to x by `layout`.
    public static func prelu(_ layout: BroadcastLayout, _ x: UnsafePointer<Float>,
                             _ slope: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        pbroadcast2(layout, x, slope, y, PReluF())
    }

    /// PRelu on Int64 storage.
    public static func prelu(_ layout: BroadcastLayout, _ x: UnsafePointer<Int64>,
                             _ slope: UnsafePointer<Int64>, _ y: UnsafeMutablePointer<Int64>) {
        broadcast2(layout, x, slope, y) { $0 < 0 ? $0 &* $1 : $0 }
    }

    /// Where: `out = cond != 0 ? x : y`, all three read through `layout` (inputs 0, 1, 2).
    public static func select<T>(_ layout: BroadcastLayout, _ cond: UnsafePointer<Int64>,
                                 _ x: UnsafePointer<T>, _ y: UnsafePointer<T>,
                                 _ out: UnsafeMutablePointer<T>) {
        let st = layout.innerStep
        elementwiseChunks(layout.count) { lo, hi in
            layout.walk(lo, hi) { off, o, n in
                let pc = cond + off[0], px = x + off[1], py = y + off[2], po = out + o
                for i in 0..<n {
                    po[i] = pc[i &* st[0]] != 0 ? px[i &* st[1]] : py[i &* st[2]]
                }
            }
        }
    }

    /// `out = src` read through `layout` (input 0): a broadcast copy.
    public static func broadcastCopy<T>(_ layout: BroadcastLayout, _ src: UnsafePointer<T>,
                                        _ out: UnsafeMutablePointer<T>) {
        let s = layout.innerStep[0]
        elementwiseChunks(layout.count) { lo, hi in
            layout.walk(lo, hi) { off, o, n in
                let ps = src + off[0], po = out + o
                if s == 1 {
                    po.update(from: ps, count: n)
                } else {
                    po.update(repeating: ps[0], count: n)
                }
            }
        }
    }

    /// Clip to `[lo, hi]`; a NaN stays NaN and `lo > hi` gives `hi` everywhere, as ONNX states.
    public static func clip(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                            count: Int, lo: Float, hi: Float) {
        pmap(x, y, count, ClipF(lo: lo, hi: hi))
    }

    /// Clip on Int64 storage.
    public static func clip(_ x: UnsafePointer<Int64>, _ y: UnsafeMutablePointer<Int64>,
                            count: Int, lo: Int64, hi: Int64) {
        map(x, y, count) { v in Swift.min(Swift.max(v, lo), hi) }
    }

    /// `y *= s` in place, for the mean of the variadic fold.
    public static func scale(_ y: UnsafeMutablePointer<Float>, count: Int, by s: Float) {
        pmap(UnsafePointer(y), y, count, ScaleF(s: s))
    }
}

// MARK: Backward

extension UnaryFunction {
    /// True for the float functions with a backward rule. Floor, ceil, round and sign have
    /// one (zero almost everywhere); `not`, `isNaN` and `isInf` have none.
    public var isDifferentiable: Bool {
        switch self {
        case .not, .isNaN, .isInf, .bitwiseNot, .narrow: return false
        default: return true
        }
    }
}

extension BinaryFunction {
    /// True for the float functions with a backward rule.
    public var isDifferentiable: Bool {
        switch self {
        case .add, .sub, .mul, .div, .pow, .max, .min: return true
        default: return false
        }
    }
}

extension Elementwise {
    /// Backward of `unary(f)`: `gx += g * f'(x)` for float32 `[count]`, `y` the forward's
    /// result. Piecewise-constant functions (floor, ceil, round, sign) add nothing.
    public static func unaryBackward(_ f: UnaryFunction, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                     _ g: UnsafePointer<Float>, _ gx: UnsafeMutablePointer<Float>, count: Int) {
        switch f {
        case .neg: pgrad(x, y, g, gx, count, NegD())
        case .abs: pgrad(x, y, g, gx, count, AbsD())
        case .sqrt: pgrad(x, y, g, gx, count, SqrtD())
        case .exp: pgrad(x, y, g, gx, count, ExpD())
        case .log: pgrad(x, y, g, gx, count, LogD())
        case .reciprocal: pgrad(x, y, g, gx, count, ReciprocalD())
        case .erf: pgrad(x, y, g, gx, count, ErfD())
        case .floor, .ceil, .round, .sign: return
        case .sin: grad(x, y, g, gx, count) { x, _ in cosf(x) }
        case .cos: grad(x, y, g, gx, count) { x, _ in -sinf(x) }
        case .tan: grad(x, y, g, gx, count) { _, y in 1 + y * y }
        case .asin: grad(x, y, g, gx, count) { x, _ in 1 / (1 - x * x).squareRoot() }
        case .acos: grad(x, y, g, gx, count) { x, _ in -1 / (1 - x * x).squareRoot() }
        case .atan: grad(x, y, g, gx, count) { x, _ in 1 / (1 + x * x) }
        case .sinh: grad(x, y, g, gx, count) { x, _ in coshf(x) }
        case .cosh: grad(x, y, g, gx, count) { x, _ in sinhf(x) }
        case .asinh: grad(x, y, g, gx, count) { x, _ in 1 / (x * x + 1).squareRoot() }
        case .acosh: grad(x, y, g, gx, count) { x, _ in 1 / (x * x - 1).squareRoot() }
        case .atanh: grad(x, y, g, gx, count) { x, _ in 1 / (1 - x * x) }
        case .not, .isNaN, .isInf, .bitwiseNot, .narrow: preconditionFailure("\(f) has no derivative")
        default: activationBackward(f, x, y, g, gx, count: count)
        }
    }

    /// Backward of `binary(f)` for one operand (0 for a, 1 for b): writes, or adds when
    /// `accumulate`, `g * df/d(operand)` into `dst` in output order (`[layout.count]`); a and
    /// b are read through the forward's `layout`, y and g are the output and its gradient.
    /// Reduce `dst` to the operand's shape with `BroadcastGradient` when it is broadcast.
    /// Max and min split the gradient evenly at ties, as PyTorch does; pow's exponent gets
    /// no gradient where the base is not positive.
    public static func binaryBackward(_ f: BinaryFunction, operand: Int, _ layout: BroadcastLayout,
                                      _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                      _ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                      _ dst: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let acc = accumulate
        switch (f, operand) {
        case (.add, _), (.sub, 0): pgrad2(layout, a, b, y, g, dst, accumulate: acc, OneD2())
        case (.sub, _): pgrad2(layout, a, b, y, g, dst, accumulate: acc, MinusOneD2())
        case (.mul, 0): pgrad2(layout, a, b, y, g, dst, accumulate: acc, MulDA())
        case (.mul, _): pgrad2(layout, a, b, y, g, dst, accumulate: acc, MulDB())
        case (.div, 0): pgrad2(layout, a, b, y, g, dst, accumulate: acc, DivDA())
        case (.div, _): pgrad2(layout, a, b, y, g, dst, accumulate: acc, DivDB())
        case (.pow, 0): pgrad2(layout, a, b, y, g, dst, accumulate: acc, PowDA())
        case (.pow, _): pgrad2(layout, a, b, y, g, dst, accumulate: acc, PowDB())
        case (.max, 0): pgrad2(layout, a, b, y, g, dst, accumulate: acc, MaxDA())
        case (.max, _): pgrad2(layout, a, b, y, g, dst, accumulate: acc, MaxDB())
        case (.min, 0): pgrad2(layout, a, b, y, g, dst, accumulate: acc, MinDA())
        case (.min, _): pgrad2(layout, a, b, y, g, dst, accumulate: acc, MinDB())
        default: preconditionFailure("\(f) has no derivative")
        }
    }

    /// Backward of `prelu` for x (`operand` 0) or the slope (1), in x's order; see
    /// `binaryBackward` for `dst` and `accumulate`.
    public static func preluBackward(operand: Int, _ layout: BroadcastLayout, _ x: UnsafePointer<Float>,
                                     _ slope: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                     _ g: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                                     accumulate: Bool) {
        if operand == 0 {
            pgrad2(layout, x, slope, y, g, dst, accumulate: accumulate, PReluDX())
        } else {
            pgrad2(layout, x, slope, y, g, dst, accumulate: accumulate, PReluDS())
        }
    }

    /// Backward of `select` for one branch: `dst (+)= (cond != whenTrue ? 0 : g)` in output
    /// order, cond read through `layout` (inputs `[cond, output]`).
    public static func selectBackward(_ layout: BroadcastLayout, _ cond: UnsafePointer<Int64>,
                                      _ g: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                                      whenTrue: Bool, accumulate: Bool) {
        let sc = layout.innerStep[0]
        elementwiseChunks(layout.count) { lo, hi in
            layout.walk(lo, hi) { off, o, n in
                let pc = cond + off[0], pg = g + o, pd = dst + o
                for i in 0..<n {
                    let v: Float = (pc[i &* sc] != 0) == whenTrue ? pg[i] : 0
                    if accumulate { pd[i] += v } else { pd[i] = v }
                }
            }
        }
    }

    /// Backward of `clip`: `gx += g` where `lo < x < hi`; the bounds get no gradient.
    public static func clipBackward(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                    _ gx: UnsafeMutablePointer<Float>, count: Int, lo: Float, hi: Float) {
        elementwiseChunks(count) { l, h in
            for i in l..<h { gx[i] += x[i] > lo && x[i] < hi ? g[i] : 0 }
        }
    }

    /// `dst (+)= s * g` for `count` elements (identity, cast and mean gradients).
    public static func scaledGradient(_ g: UnsafePointer<Float>, by s: Float, _ dst: UnsafeMutablePointer<Float>,
                                      count: Int, accumulate: Bool) {
        elementwiseChunks(count) { lo, hi in
            if accumulate {
                for i in lo..<hi { dst[i] += s * g[i] }
            } else {
                for i in lo..<hi { dst[i] = s * g[i] }
            }
        }
    }

    /// `dst += g` for `count` float32 elements.
    public static func add(_ g: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) {
        elementwiseChunks(count) { lo, hi in
            for i in lo..<hi { dst[i] += g[i] }
        }
    }

    /// Variadic max/min backward, step 1: `owner[i] = k` where no earlier input claimed
    /// element i and `candidate[i] == y[i]` (`candidate` is input k broadcast to the output).
    /// Fill `owner` with -1 before input 0.
    public static func claimExtreme(_ candidate: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                    _ owner: UnsafeMutablePointer<Int32>, input k: Int32, count: Int) {
        for i in 0..<count where owner[i] < 0 && candidate[i] == y[i] { owner[i] = k }
    }

    /// Variadic max/min backward, step 2: `dst[i] = owner[i] == k ? g[i] : 0`. The gradient
    /// goes to the first input holding the extreme.
    public static func routeExtreme(_ g: UnsafePointer<Float>, _ owner: UnsafePointer<Int32>,
                                    input k: Int32, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { dst[i] = owner[i] == k ? g[i] : 0 }
    }
}

/// `gx[i] += g[i] * f(x[i], y[i])` in one serial loop (closure form, for rarely hot functions).
@inline(__always)
private func grad(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                  _ gx: UnsafeMutablePointer<Float>, _ n: Int, _ f: (Float, Float) -> Float) {
    for i in 0..<n { gx[i] += g[i] * f(x[i], y[i]) }
}

/// `y[i] = f(x[i])` in one serial loop: the closure form, for functions that are rarely hot
/// (see ElementFunctions.swift for why the parallel forms take types).
@inline(__always)
func map<A, B>(_ x: UnsafePointer<A>, _ y: UnsafeMutablePointer<B>, _ n: Int,
               _ f: (A) -> B) {
    for i in 0..<n { y[i] = f(x[i]) }
}

/// `c = f(a, b)` through `layout` in one serial walk (closure form, see `map`).
@inline(__always)
func broadcast2<A, B, C>(_ layout: BroadcastLayout, _ a: UnsafePointer<A>,
                         _ b: UnsafePointer<B>, _ c: UnsafeMutablePointer<C>,
                         _ f: (A, B) -> C) {
    let sa = layout.innerStep[0], sb = layout.innerStep[1]
    layout.walk(0, layout.count) { off, o, n in
        broadcastRun(sa, sb, a + off[0], b + off[1], c + o, n, f)
    }
}

@inline(__always)
private func cPow(_ a: Double, _ b: Double) -> Double {
    #if canImport(Glibc)
    Glibc.pow(a, b)
    #else
    Darwin.pow(a, b)
    #endif
}

/// Integer power by squaring, wrapping at 64 bits.
@inline(__always)
func intPow(_ base: Int64, _ exp: Int64) -> Int64 {
    if exp < 0 {
        if base == 1 { return 1 }
        if base == -1 { return exp & 1 == 0 ? 1 : -1 }
        return 0
    }
    var result: Int64 = 1, b = base, e = exp
    while e > 0 {
        if e & 1 == 1 { result = result &* b }
        b = b &* b
        e >>= 1
    }
    return result
}

/// Truncation toward zero with NaN -> 0 and saturation at the Int64 range, so that an
/// out-of-range float never traps.
@inline(__always)
func saturatingInt64(_ v: Double) -> Int64 {
    if v.isNaN { return 0 }
    if v >= 9.223372036854775807e18 { return .max }
    if v <= -9.223372036854775808e18 { return .min }
    return Int64(v)
}
