import BraidTensor

// Running sums, top-k selection, one-hot expansion and triangle masks. Each works on a
// tensor seen as `[outer, n, inner]` around one axis (triangles on the last two axes).
// CumSum's backward is the reversed running sum of the output gradient; the others are
// integer-valued or selections whose gradients Braid does not train through.

public enum Indexing {
    /// Running sum (or product) along the middle axis of `[outer, n, inner]`:
    /// `y[i] = sum x[j]` for `j <= i` (`j < i` when `exclusive`; from the end when `reverse`).
    public static func cumSum<T: Numeric>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>,
                                          outer: Int, n: Int, inner: Int, exclusive: Bool, reverse: Bool,
                                          product: Bool = false) {
        for o in 0..<outer {
            for i in 0..<inner {
                var acc: T = product ? 1 : 0
                for s in 0..<n {
                    let j = reverse ? n - 1 - s : s
                    let at = (o * n + j) * inner + i
                    if exclusive { y[at] = acc }
                    if product { acc *= x[at] } else { acc += x[at] }
                    if !exclusive { y[at] = acc }
                }
            }
        }
    }

    /// CumSum backward: `gx += cumSum(gy)` in the opposite direction, same exclusivity.
    public static func cumSumBackward(_ gy: UnsafePointer<Float>, _ gx: UnsafeMutablePointer<Float>,
                                      outer: Int, n: Int, inner: Int, exclusive: Bool, reverse: Bool) {
        for o in 0..<outer {
            for i in 0..<inner {
                var acc: Float = 0
                for s in 0..<n {
                    let j = reverse ? s : n - 1 - s
                    let at = (o * n + j) * inner + i
                    if exclusive { gx[at] += acc; acc += gy[at] } else { acc += gy[at]; gx[at] += acc }
                }
            }
        }
    }

    /// The `k` largest (or smallest) along the middle axis, ties broken toward the lower
    /// index; NaN counts as larger than every number. `scratch` holds `n` indices. Values
    /// `[outer, k, inner]`, indices the same shape as Int64.
    public static func topK<T: Comparable>(_ x: UnsafePointer<T>, values: UnsafeMutablePointer<T>,
                                           indices: UnsafeMutablePointer<Int64>, scratch: UnsafeMutableBufferPointer<Int>,
                                           outer: Int, n: Int, inner: Int, k: Int, largest: Bool, isNaN: (T) -> Bool) {
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * n * inner + i
                for j in 0..<n { scratch[j] = j }
                var part = UnsafeMutableBufferPointer(rebasing: scratch[0..<n])
                part.sort { a, b in
                    let va = x[base + a * inner], vb = x[base + b * inner]
                    let na = isNaN(va), nb = isNaN(vb)
                    if na || nb {
                        if na && nb { return a < b }
                        return largest ? na : nb
                    }
                    if va != vb { return largest ? va > vb : va < vb }
                    return a < b
                }
                for r in 0..<k {
                    let at = (o * k + r) * inner + i
                    values[at] = x[base + part[r] * inner]
                    indices[at] = Int64(part[r])
                }
            }
        }
    }

    /// One-hot: output `[outer, depth, inner]` from indices `[outer, inner]`; negative indices
    /// count from the end; out-of-range ones give an all-`off` row.
    public static func oneHot<T>(_ idx: UnsafePointer<Int64>, _ y: UnsafeMutablePointer<T>,
                                 outer: Int, depth: Int, inner: Int, off: T, on: T) {
        y.update(repeating: off, count: outer * depth * inner)
        for o in 0..<outer {
            for i in 0..<inner {
                var d = Int(idx[o * inner + i])
                if d < 0 { d += depth }
                if d >= 0 && d < depth { y[(o * depth + d) * inner + i] = on }
            }
        }
    }

    /// Keeps the upper (`j - i >= k`) or lower (`j - i <= k`) triangle of each `[rows, cols]`
    /// matrix, zeroing the rest.
    public static func triangle<T: Numeric>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>,
                                            matrices: Int, rows: Int, cols: Int, k: Int, upper: Bool) {
        for m in 0..<matrices {
            for r in 0..<rows {
                let row = (m * rows + r) * cols
                for c in 0..<cols {
                    let keep = upper ? c - r >= k : c - r <= k
                    y[row + c] = keep ? x[row + c] : 0
                }
            }
        }
    }
}
