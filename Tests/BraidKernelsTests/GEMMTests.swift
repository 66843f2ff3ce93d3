import XCTest
@testable import BraidKernels
import BraidTestSupport

/// Deterministic pseudo-random floats in [-1, 1) for the NN kernel tests.
func nnRandom(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2_000_000) / 1_000_000 - 1
    }
}

/// The shared comparison (BraidTestSupport's `assertClose`) with this file's default tolerance.
func nnAssertClose(_ actual: [Float], _ expected: [Float], tol: Float = 1e-4, _ message: String = "",
                   file: StaticString = #filePath, line: UInt = #line) {
    assertClose(actual, expected, tolerance: Double(tol), message, file: file, line: line)
}

final class GEMMTests: XCTestCase {
    func testGemmMatchesLoopAllTransposes() {
        // The last four are over 2^18 multiply-adds: cut by columns (n >= m) or by rows over the
        // cores, and through GEMV slices for one row or column.
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 70, 5), (1, 9, 13), (11, 1, 6),
                          (37, 301, 41), (290, 45, 33), (700, 1, 400), (1, 650, 420)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let a = nnRandom(m * k, seed: 1), b = nnRandom(k * n, seed: 2), c0 = nnRandom(m * n, seed: 3)
                    let lda = transA ? m : k, ldb = transB ? k : n
                    var expected = [Float](repeating: 0, count: m * n)
                    for i in 0..<m {
                        for j in 0..<n {
                            var s: Float = 0
                            for p in 0..<k {
                                s += (transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j])
                            }
                            expected[i * n + j] = 0.5 * s + 2 * c0[i * n + j]
                        }
                    }
                    var got = c0, ref = c0
                    gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
                         beta: 2, c: &got, ldc: n)
                    gemmReference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b,
                                  ldb: ldb, beta: 2, c: &ref, ldc: n)
                    nnAssertClose(got, expected, "gemm \(m)x\(n)x\(k) tA=\(transA) tB=\(transB)")
                    nnAssertClose(ref, expected, "reference \(m)x\(n)x\(k)")
                }
            }
        }
    }

    /// One row or one column goes through GEMV: every transpose, padded strides, beta 0 over NaN.
    func testSingleRowAndColumnProductsWithStrides() {
        for (m, n, k) in [(1, 7, 10), (9, 1, 12), (1, 1, 5)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 2, ldc = n + 4
                    let a = nnRandom((transA ? k : m) * lda, seed: 4), b = nnRandom((transB ? n : k) * ldb, seed: 5)
                    for beta: Float in [0, 1.5] {
                        var got = [Float](repeating: beta == 0 ? .nan : 0.25, count: m * ldc)
                        var ref = [Float](repeating: 0.25, count: m * ldc)
                        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b,
                             ldb: ldb, beta: beta, c: &got, ldc: ldc)
                        gemmReference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda,
                                      b: b, ldb: ldb, beta: beta, c: &ref, ldc: ldc)
                        let used = (0..<m).flatMap { i in (0..<n).map { i * ldc + $0 } }
                        nnAssertClose(used.map { got[$0] }, used.map { ref[$0] },
                                      "\(m)x\(n)x\(k) tA=\(transA) tB=\(transB) beta=\(beta)")
                    }
                }
            }
        }
    }

    func testBetaZeroIgnoresNaNInOutput() {
        var c = [Float](repeating: .nan, count: 4)
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [1, 0, 0, 1]
        gemm(transA: false, transB: false, m: 2, n: 2, k: 2, alpha: 1, a: a, lda: 2, b: b, ldb: 2, beta: 0, c: &c, ldc: 2)
        XCTAssertEqual(c, [1, 2, 3, 4])
    }

    func testEmptyInnerDimensionScalesC() {
        var c: [Float] = [1, 2, 3, 4, 5, 6]
        let none: [Float] = [0]
        gemm(transA: false, transB: false, m: 2, n: 3, k: 0, alpha: 1, a: none, lda: 1, b: none, ldb: 3, beta: 0.5, c: &c, ldc: 3)
        XCTAssertEqual(c, [0.5, 1, 1.5, 2, 2.5, 3])
    }

    func testInt64GemmMatchesLoop() {
        let m = 3, n = 4, k = 5
        let a = (0..<(m * k)).map { Int64($0 % 7) - 3 }, b = (0..<(k * n)).map { Int64($0 % 5) - 2 }
        for transA in [false, true] {
            for transB in [false, true] {
                let lda = transA ? m : k, ldb = transB ? k : n
                var c = [Int64](repeating: 99, count: m * n)
                gemmInt64(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &c, ldc: n)
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Int64 = 0
                        for p in 0..<k {
                            s += (transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j])
                        }
                        XCTAssertEqual(c[i * n + j], s, "tA=\(transA) tB=\(transB) [\(i), \(j)]")
                    }
                }
            }
        }
    }

    func testBLASThreadCountRoundTrips() {
        let before = blasThreads()
        setBLASThreads(1)
        XCTAssertEqual(blasThreads(), 1)
        setBLASThreads(before)
        XCTAssertEqual(blasThreads(), before)
    }
}
