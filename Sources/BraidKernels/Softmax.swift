import BraidTensor
import CKernels
import Foundation

/// Softmax (with max subtraction), log-softmax or hardmax of `x` viewed as
/// `[outer, axis, inner]`, along the middle axis; `y` has the same shape.
public func softmax(_ mode: SoftmaxMode, outer: Int, axis: Int, inner: Int,
                    x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
    let rows = outer * inner
    let chunks = rows * axis >= 1 << 15 ? min(rows, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for r in (rows * i / chunks)..<(rows * (i + 1) / chunks) {
            let o = r / inner, j = r % inner
            let base = o * axis * inner + j
            softmaxRow(mode, axis, inner, x + base, y + base)
        }
    }
}

/// One row of `n` elements spaced `stride` apart.
@inline(__always)
private func softmaxRow(_ mode: SoftmaxMode, _ n: Int, _ stride: Int, _ x: UnsafePointer<Float>,
                        _ y: UnsafeMutablePointer<Float>) {
    if n == 0 { return }
    if stride == 1, case .softmax = mode, n >= 16 {
        contiguousSoftmax(n, x, y)
        return
    }
    var m = x[0]
    var at = 0
    for k in 1..<max(1, n) where x[k * stride] > m { m = x[k * stride]; at = k }
    switch mode {
    case .hardmax:
        for k in 0..<n { y[k * stride] = k == at ? 1 : 0 }
    case .softmax:
        var s: Float = 0
        for k in 0..<n { let e = expf(x[k * stride] - m); y[k * stride] = e; s += e }
        let inv = 1 / s
        for k in 0..<n { y[k * stride] *= inv }
    case .logSoftmax:
        var s: Float = 0
        for k in 0..<n { s += expf(x[k * stride] - m) }
        let l = logf(s) + m
        for k in 0..<n { y[k * stride] = x[k * stride] - l }
    }
}

/// Softmax of `n` contiguous floats, vectorised: the maximum, `x - max` mapped through
/// CKernels' exp at the CPU's vector width, the sum, the scaling. A NaN anywhere makes every
/// output NaN, as in the scalar form.
@inline(__always)
private func contiguousSoftmax(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
    let raw = UnsafeRawPointer(x)
    var acc = SIMD8<Float>(repeating: -.infinity)
    var k = 0
    while k + 8 <= n {
        let v = raw.loadUnaligned(fromByteOffset: k * 4, as: SIMD8<Float>.self)
        acc = acc.replacing(with: v, where: v .> acc)
        k += 8
    }
    var m = acc.max()
    while k < n {
        if x[k] > m { m = x[k] }
        k += 1
    }
    for i in 0..<n { y[i] = x[i] - m }
    braid_map(Int32(BRAID_MAP_EXP), y, y, n)
    let inv = 1 / NNVec.sum(y, n)
    for i in 0..<n { y[i] *= inv }
}

/// Backward of `softmax` for `.softmax` and `.logSoftmax` over `[outer, axis, inner]`: from
/// the forward output `y` and `dy`, adds `dx`:
/// softmax `dx = y * (dy - sum(dy * y))`, log-softmax `dx = dy - exp(y) * sum(dy)`.
public func softmaxBackward(_ mode: SoftmaxMode, outer: Int, axis: Int, inner: Int, y: UnsafePointer<Float>,
                            dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
    precondition(mode != .hardmax, "hardmax has no gradient")
    let rows = outer * inner
    let chunks = rows * axis >= 1 << 15 ? min(rows, NNParallel.workers) : 1
    let log = mode == .logSoftmax
    NNParallel.run(chunks) { i in
        for r in (rows * i / chunks)..<(rows * (i + 1) / chunks) {
            let o = r / inner, j = r % inner
            let base = o * axis * inner + j
            let yr = y + base, gr = dy + base, dr = dx + base
            var s: Float = 0
            if log {
                for k in 0..<axis { s += gr[k * inner] }
                for k in 0..<axis { dr[k * inner] += gr[k * inner] - expf(yr[k * inner]) * s }
            } else {
                for k in 0..<axis { s += gr[k * inner] * yr[k * inner] }
                for k in 0..<axis { dr[k * inner] += yr[k * inner] * (gr[k * inner] - s) }
            }
        }
    }
}
