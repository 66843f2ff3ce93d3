import BraidTensor
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// The geometry of one reduction, built once per plan.
///
/// Input dimensions of size 1 are dropped and neighbours that are both kept or both reduced
/// are merged. When the result is `[outer, reduced, inner]` (trailing, leading, middle or
/// spatial axes) the kernels use contiguous loops; any other pattern walks a precomputed table
/// of offsets within one reduced block.
public struct ReduceLayout: Sendable {
    /// Number of output elements (the kept dimensions' product).
    public let outputCount: Int
    /// Number of input elements folded into each output.
    public let reduceCount: Int
    /// `[outer, reduced, inner]` when the merged pattern has at most one reduced run.
    let block: (outer: Int, reduced: Int, inner: Int)?
    /// Kept dimensions in output order with their input strides (general walk).
    let keptDims: [Int]
    let keptStrides: [Int]
    /// Offset of every element of one reduced block relative to its first element.
    let reducedOffsets: [Int]

    /// `axes` are non-negative and distinct, each `< shape.count`.
    public init(shape: [Int], axes: [Int]) {
        let reduced = Set(axes)
        var merged = [(size: Int, reduced: Bool)]()
        for (i, d) in shape.enumerated() where d != 1 {
            let r = reduced.contains(i)
            if let last = merged.last, last.reduced == r {
                merged[merged.count - 1].size *= d
            } else {
                merged.append((d, r))
            }
        }
        outputCount = shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element).product
        reduceCount = shape.enumerated().filter { reduced.contains($0.offset) }.map(\.element).product
        let runs = merged.filter(\.reduced).count
        if runs <= 1 {
            var outer = 1, red = 1, inner = 1, seen = false
            for m in merged {
                if m.reduced { red = m.size; seen = true } else if seen { inner *= m.size } else { outer *= m.size }
            }
            block = (outer, red, inner)
        } else {
            block = nil
        }
        let strides = shape.strides
        keptDims = shape.indices.filter { !reduced.contains($0) }.map { shape[$0] }
        keptStrides = shape.indices.filter { !reduced.contains($0) }.map { strides[$0] }
        var offsets = [0]
        if block == nil {
            // Outermost reduced axis last, so the table is a row-major walk of one block.
            for a in shape.indices.reversed() where reduced.contains(a) {
                var next = [Int]()
                next.reserveCapacity(offsets.count * shape[a])
                for i in 0..<shape[a] { for o in offsets { next.append(i * strides[a] + o) } }
                offsets = next
            }
        }
        reducedOffsets = offsets
    }

    /// Calls `body(o, base)` for every output index `o` in `[lo, hi)` with the input offset
    /// of its reduced block.
    @inline(__always)
    func forEachOutput(_ lo: Int, _ hi: Int, _ body: (Int, Int) -> Void) {
        let r = keptDims.count
        if lo >= hi { return }
        withUnsafeTemporaryAllocation(of: Int.self, capacity: Swift.max(r, 1)) { idx in
            var rem = lo, base = 0
            for d in stride(from: r - 1, through: 0, by: -1) {
                idx[d] = rem % keptDims[d]
                rem /= keptDims[d]
                base += idx[d] * keptStrides[d]
            }
            for o in lo..<hi {
                body(o, base)
                var d = r - 1
                while d >= 0 {
                    idx[d] += 1
                    base += keptStrides[d]
                    if idx[d] < keptDims[d] { break }
                    base -= keptStrides[d] * idx[d]
                    idx[d] = 0
                    d -= 1
                }
            }
        }
    }
}

extension Elementwise {
    /// Float32 reduction: `x` holds the input in row-major order, `y` the `outputCount`
    /// results in the kept dimensions' order.
    public static func reduce(_ f: ReduceFunction, _ layout: ReduceLayout,
                              _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        func by<F: FloatFold>(_ function: F) { fold(layout, x, y, function) }
        switch f {
        case .sum: by(SumFold())
        case .mean: by(MeanFold(n: Float(layout.reduceCount)))
        case .max: by(MaxFold())
        case .min: by(MinFold())
        case .logSumExp: logSumExp(layout, x, y)
        case .prod: by(ProdFold())
        case .l1: by(L1Fold())
        case .l2: by(L2Fold())
        case .logSum: by(LogSumFold())
        case .sumSquare: by(SumSquareFold())
        }
    }

    /// Reduction on Int64 storage. Sums and products wrap at 64 bits, `mean` truncates toward
    /// zero, `l2`, `logSum` and `logSumExp` are computed in Double and truncated. `dtype`
    /// decides the identity of max and min over an empty set (its smallest or largest value).
    public static func reduce(_ f: ReduceFunction, _ layout: ReduceLayout,
                              _ x: UnsafePointer<Int64>, _ y: UnsafeMutablePointer<Int64>,
                              dtype: DType) {
        let n = Int64(layout.reduceCount)
        let (lowest, highest) = integerRange(dtype)
        switch f {
        case .sum: foldGeneral(layout, x, y, 0, { $0 }, { $0 &+ $1 }, { $0 })
        case .mean: foldGeneral(layout, x, y, 0, { $0 }, { $0 &+ $1 }, { n == 0 ? 0 : $0 / n })
        case .max: foldGeneral(layout, x, y, lowest, { $0 }, { Swift.max($0, $1) }, { $0 })
        case .min: foldGeneral(layout, x, y, highest, { $0 }, { Swift.min($0, $1) }, { $0 })
        case .prod: foldGeneral(layout, x, y, 1, { $0 }, { $0 &* $1 }, { $0 })
        case .l1: foldGeneral(layout, x, y, 0, { $0 < 0 ? 0 &- $0 : $0 }, { $0 &+ $1 }, { $0 })
        case .sumSquare: foldGeneral(layout, x, y, 0, { $0 &* $0 }, { $0 &+ $1 }, { $0 })
        case .l2: foldGeneral(layout, x, y, 0, { $0 &* $0 }, { $0 &+ $1 }) {
            saturatingInt64(Double($0).squareRoot())
        }
        case .logSum: foldGeneral(layout, x, y, 0, { $0 }, { $0 &+ $1 }) {
            saturatingInt64(Glibc_log(Double($0)))
        }
        case .logSumExp:
            layout.forEachOutput(0, layout.outputCount) { o, base in
                var m = -Double.infinity
                for r in 0..<layout.reduceCount { m = Swift.max(m, Double(x[base + layout.offset(r)])) }
                if !m.isFinite { m = 0 }
                var s = 0.0
                for r in 0..<layout.reduceCount { s += Glibc_exp(Double(x[base + layout.offset(r)]) - m) }
                y[o] = saturatingInt64(Glibc_log(s) + m)
            }
        }
    }

    /// ArgMax / ArgMin along the middle axis of `[outer, axisSize, inner]`, Int64 indices
    /// into `y` `[outer, inner]`. Ties give the first index unless `selectLast`; a NaN counts
    /// as the extreme, as in NumPy.
    public static func argExtreme(max: Bool, selectLast: Bool, outer: Int, axisSize: Int,
                                  inner: Int, _ x: UnsafePointer<Float>,
                                  _ y: UnsafeMutablePointer<Int64>) {
        argScan(outer, axisSize, inner, x, y) { v, best in
            if best.isNaN { return false }
            if v.isNaN { return true }
            return max ? (selectLast ? v >= best : v > best) : (selectLast ? v <= best : v < best)
        }
    }

    /// ArgMax / ArgMin on Int64 storage.
    public static func argExtreme(max: Bool, selectLast: Bool, outer: Int, axisSize: Int,
                                  inner: Int, _ x: UnsafePointer<Int64>,
                                  _ y: UnsafeMutablePointer<Int64>) {
        argScan(outer, axisSize, inner, x, y) { v, best in
            max ? (selectLast ? v >= best : v > best) : (selectLast ? v <= best : v < best)
        }
    }
}

extension Elementwise {
    /// `y[o] += sum of x over block o`: the accumulating sum behind `BroadcastGradient`.
    static func reduceSumAdding(_ layout: ReduceLayout, _ x: UnsafePointer<Float>,
                                _ y: UnsafeMutablePointer<Float>) {
        guard let (outer, red, inner) = layout.block else {
            let n = layout.reduceCount
            layout.forEachOutput(0, layout.outputCount) { o, base in
                var s: Float = 0
                for r in 0..<n { s += x[base + layout.offset(r)] }
                y[o] += s
            }
            return
        }
        elementwiseChunks(outer, grain: Swift.max(1, (1 << 15) / Swift.max(red * inner, 1))) { lo, hi in
            for o in lo..<hi {
                if inner == 1 {
                    let p = x + o * red
                    var acc = SIMD8<Float>(repeating: 0)
                    var r = 0
                    while r + 8 <= red {
                        acc += UnsafeRawPointer(p + r).loadUnaligned(as: SIMD8<Float>.self)
                        r += 8
                    }
                    var s = acc.sum()
                    while r < red { s += p[r]; r += 1 }
                    y[o] += s
                    continue
                }
                let row = y + o * inner
                for r in 0..<red {
                    let p = x + (o * red + r) * inner
                    for j in 0..<inner { row[j] += p[j] }
                }
            }
        }
    }

    /// Backward of `reduce(f)`: `gx += dy/dx * g` for x `[layout's input shape]`, y and g
    /// `[outputCount]` (the forward's result and its gradient). `max` and `min` send each
    /// output's gradient to the elements equal to it, split evenly between ties as PyTorch's
    /// `amax` does. `l2` gives 0 where the norm is 0, `prod` divides y by x (an exact zero
    /// in x gives 0 there), `logSum` is g / sum.
    public static func reduceBackward(_ f: ReduceFunction, _ layout: ReduceLayout,
                                      _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                      _ g: UnsafePointer<Float>, _ gx: UnsafeMutablePointer<Float>) {
        func by<D: ReduceGrad>(_ derivative: D) { unfold(layout, x, y, g, gx, derivative) }
        switch f {
        case .sum: by(SumGrad())
        case .mean: by(MeanGrad(inv: 1 / Float(Swift.max(layout.reduceCount, 1))))
        case .sumSquare: by(SumSquareGrad())
        case .l1: by(L1Grad())
        case .max, .min:
            let n = layout.reduceCount
            elementwiseChunks(layout.outputCount, grain: Swift.max(1, (1 << 14) / Swift.max(n, 1))) { lo, hi in
                layout.forEachOutput(lo, hi) { o, base in
                    let m = y[o]
                    var ties = 0
                    for r in 0..<n where x[base + layout.offset(r)] == m { ties += 1 }
                    if ties == 0 { return }
                    let share = g[o] / Float(ties)
                    for r in 0..<n where x[base + layout.offset(r)] == m { gx[base + layout.offset(r)] += share }
                }
            }
        case .l2: by(L2Grad())
        case .logSum: by(LogSumGrad())
        case .logSumExp: by(LogSumExpGrad())
        case .prod: by(ProdGrad())
        }
    }
}

/// The derivative of one reduction's output with respect to one input element, times the
/// output's gradient.
private protocol ReduceGrad {
    func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float
}
private struct SumGrad: ReduceGrad { func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { g } }
private struct MeanGrad: ReduceGrad {
    let inv: Float
    func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { g * inv }
}
private struct SumSquareGrad: ReduceGrad { func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { 2 * x * g } }
private struct L1Grad: ReduceGrad {
    func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { x > 0 ? g : (x < 0 ? -g : 0) }
}
private struct L2Grad: ReduceGrad {
    func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { y == 0 ? 0 : g * x / y }
}
private struct LogSumGrad: ReduceGrad {
    func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { g / expf(y) }
}
private struct LogSumExpGrad: ReduceGrad {
    func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { g * fastExp(x - y) }
}
private struct ProdGrad: ReduceGrad {
    func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { x == 0 ? 0 : g * y / x }
}

/// `gx += f(x, y[o], g[o])` over every input element of every output `o`; outputs own
/// disjoint input elements, so chunks of outputs run in parallel.
@inline(__always)
private func unfold<F: ReduceGrad>(_ layout: ReduceLayout, _ x: UnsafePointer<Float>,
                                   _ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                   _ gx: UnsafeMutablePointer<Float>, _ f: F) {
    guard let (outer, red, inner) = layout.block else {
        let n = layout.reduceCount
        elementwiseChunks(layout.outputCount, grain: Swift.max(1, (1 << 15) / Swift.max(n, 1))) { lo, hi in
            layout.forEachOutput(lo, hi) { o, base in
                let yo = y[o], go = g[o]
                for r in 0..<n {
                    let i = base + layout.offset(r)
                    gx[i] += f(x[i], yo, go)
                }
            }
        }
        return
    }
    elementwiseChunks(outer, grain: Swift.max(1, (1 << 15) / Swift.max(red * inner, 1))) { lo, hi in
        for o in lo..<hi {
            let yo = y + o * inner, go = g + o * inner
            for r in 0..<red {
                let at = (o * red + r) * inner
                let px = x + at, pg = gx + at
                for j in 0..<inner { pg[j] += f(px[j], yo[j], go[j]) }
            }
        }
    }
}

extension ReduceLayout {
    /// Offset of the `r`-th element of a reduced block (row-major over the reduced axes).
    @inline(__always)
    func offset(_ r: Int) -> Int {
        if let b = block { return r * b.inner }
        return reducedOffsets[r]
    }
}

@inline(__always)
private func argScan<T>(_ outer: Int, _ axis: Int, _ inner: Int, _ x: UnsafePointer<T>,
                        _ y: UnsafeMutablePointer<Int64>, _ better: (T, T) -> Bool) {
    for o in 0..<outer {
        for j in 0..<inner {
            let p = x + o * axis * inner + j
            var best = p[0], at = 0
            var r = 1
            while r < axis {
                let v = p[r * inner]
                if better(v, best) { best = v; at = r }
                r += 1
            }
            y[o * inner + j] = Int64(at)
        }
    }
}

/// Float fold: contiguous loops for the `[outer, reduced, inner]` layouts, the offset table
/// otherwise. The innermost reduction keeps eight partial results, folded at the end (the
/// summation order differs from a plain loop by rounding only).
@inline(__always)
private func fold<F: FloatFold>(_ layout: ReduceLayout, _ x: UnsafePointer<Float>,
                                _ y: UnsafeMutablePointer<Float>, _ f: F) {
    guard let b = layout.block else {
        let n = layout.reduceCount
        layout.forEachOutput(0, layout.outputCount) { o, base in
            var s = f.initial
            for r in 0..<n { s = f.combine(s, f.pre(x[base + layout.offset(r)])) }
            y[o] = f.post(s)
        }
        return
    }
    let (outer, red, inner) = b
    if inner == 1 {
        elementwiseChunks(outer, grain: Swift.max(1, (1 << 15) / Swift.max(red, 1))) { lo, hi in
            for o in lo..<hi {
                let p = x + o * red
                var acc = SIMD8<Float>(repeating: f.initial)
                var r = 0
                while r + 8 <= red {
                    acc = f.combine(acc, f.pre(UnsafeRawPointer(p + r).loadUnaligned(as: SIMD8<Float>.self)))
                    r += 8
                }
                var s = f.initial
                for l in 0..<8 { s = f.combine(s, acc[l]) }
                while r < red { s = f.combine(s, f.pre(p[r])); r += 1 }
                y[o] = f.post(s)
            }
        }
        return
    }
    elementwiseChunks(outer, grain: Swift.max(1, (1 << 15) / Swift.max(red * inner, 1))) { lo, hi in
        for o in lo..<hi {
            let row = y + o * inner
            row.update(repeating: f.initial, count: inner)
            for r in 0..<red {
                let p = x + (o * red + r) * inner
                for j in 0..<inner { row[j] = f.combine(row[j], f.pre(p[j])) }
            }
            for j in 0..<inner { row[j] = f.post(row[j]) }
        }
    }
}

/// One float reduction as a type (see ElementFunctions.swift for why not closures), with
/// eight-lane forms of `pre` and `combine`.
private protocol FloatFold {
    var initial: Float { get }
    func pre(_ v: Float) -> Float
    func combine(_ a: Float, _ b: Float) -> Float
    func post(_ v: Float) -> Float
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float>
    func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float>
}

private protocol SumLike: FloatFold {}
extension SumLike {
    var initial: Float { 0 }
    func combine(_ a: Float, _ b: Float) -> Float { a + b }
    func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a + b }
}

private struct SumFold: SumLike {
    func pre(_ v: Float) -> Float { v }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v }
    func post(_ v: Float) -> Float { v }
}
private struct MeanFold: SumLike {
    let n: Float
    func pre(_ v: Float) -> Float { v }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v }
    func post(_ v: Float) -> Float { v / n }
}
private struct LogSumFold: SumLike {
    func pre(_ v: Float) -> Float { v }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v }
    func post(_ v: Float) -> Float { logf(v) }
}
private struct L1Fold: SumLike {
    func pre(_ v: Float) -> Float { Swift.abs(v) }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v.replacing(with: -v, where: v .< 0) }
    func post(_ v: Float) -> Float { v }
}
private struct SumSquareFold: SumLike {
    func pre(_ v: Float) -> Float { v * v }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v * v }
    func post(_ v: Float) -> Float { v }
}
private struct L2Fold: SumLike {
    func pre(_ v: Float) -> Float { v * v }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v * v }
    func post(_ v: Float) -> Float { v.squareRoot() }
}
private struct ProdFold: FloatFold {
    var initial: Float { 1 }
    func pre(_ v: Float) -> Float { v }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v }
    func combine(_ a: Float, _ b: Float) -> Float { a * b }
    func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a * b }
    func post(_ v: Float) -> Float { v }
}
/// NaN wins, as in NumPy's maximum.reduce.
private struct MaxFold: FloatFold {
    var initial: Float { -.infinity }
    func pre(_ v: Float) -> Float { v }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v }
    func combine(_ a: Float, _ b: Float) -> Float { (a > b || a.isNaN) ? a : b }
    func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        a.replacing(with: b, where: (b .> a) .| (b .!= b))
    }
    func post(_ v: Float) -> Float { v }
}
private struct MinFold: FloatFold {
    var initial: Float { .infinity }
    func pre(_ v: Float) -> Float { v }
    func pre(_ v: SIMD8<Float>) -> SIMD8<Float> { v }
    func combine(_ a: Float, _ b: Float) -> Float { (a < b || a.isNaN) ? a : b }
    func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        a.replacing(with: b, where: (b .< a) .| (b .!= b))
    }
    func post(_ v: Float) -> Float { v }
}

@inline(__always)
private func foldGeneral<T>(_ layout: ReduceLayout, _ x: UnsafePointer<T>,
                            _ y: UnsafeMutablePointer<T>, _ initial: T, _ pre: (T) -> T,
                            _ combine: (T, T) -> T, _ post: (T) -> T) {
    let n = layout.reduceCount
    layout.forEachOutput(0, layout.outputCount) { o, base in
        var s = initial
        for r in 0..<n { s = combine(s, pre(x[base + layout.offset(r)])) }
        y[o] = post(s)
    }
}

/// log(sum e^x) shifted by the largest finite element so that large inputs do not overflow;
/// ±inf inputs still give ±inf as in ONNX's reference.
private func logSumExp(_ layout: ReduceLayout, _ x: UnsafePointer<Float>,
                       _ y: UnsafeMutablePointer<Float>) {
    let n = layout.reduceCount
    layout.forEachOutput(0, layout.outputCount) { o, base in
        var m = -Float.infinity
        for r in 0..<n {
            let v = x[base + layout.offset(r)]
            if v.isFinite && v > m { m = v }
        }
        if m == -.infinity { m = 0 }
        var s: Float = 0
        for r in 0..<n { s += expf(x[base + layout.offset(r)] - m) }
        y[o] = logf(s) + m
    }
}

private func integerRange(_ dtype: DType) -> (Int64, Int64) {
    switch dtype {
    case .bool: return (0, 1)
    case .int8: return (Int64(Int8.min), Int64(Int8.max))
    case .int16: return (Int64(Int16.min), Int64(Int16.max))
    case .int32: return (Int64(Int32.min), Int64(Int32.max))
    case .uint8: return (0, Int64(UInt8.max))
    case .uint16: return (0, Int64(UInt16.max))
    case .uint32: return (0, Int64(UInt32.max))
    case .int64, .uint64, .float32: return (.min, .max)
    }
}

#if canImport(Glibc)
@inline(__always) private func Glibc_log(_ v: Double) -> Double { Glibc.log(v) }
@inline(__always) private func Glibc_exp(_ v: Double) -> Double { Glibc.exp(v) }
#else
@inline(__always) private func Glibc_log(_ v: Double) -> Double { Darwin.log(v) }
@inline(__always) private func Glibc_exp(_ v: Double) -> Double { Darwin.exp(v) }
#endif
