import XCTest
@testable import BraidKernels

final class NormalizationTests: XCTestCase {
    func testBatchNormMatchesFormula() {
        for (n, c, s) in [(2, 3, 10), (1, 16, 1), (4, 8, 3000)] {
            let x = nnRandom(n * c * s, seed: 41), scale = nnRandom(c, seed: 42), bias = nnRandom(c, seed: 43)
            let mean = nnRandom(c, seed: 44), variance = nnRandom(c, seed: 45).map { abs($0) + 0.1 }
            var a = [Float](repeating: 0, count: c), b = a
            batchNormCoefficients(channels: c, scale: scale, bias: bias, mean: mean, variance: variance, epsilon: 1e-5,
                                  outScale: &a, outShift: &b)
            var y = [Float](repeating: .nan, count: x.count)
            channelAffine(batch: n, channels: c, spatial: s, x: x, scale: a, shift: b, y: &y)
            var expected = [Float](repeating: 0, count: x.count)
            for i in 0..<x.count {
                let ch = (i / s) % c
                expected[i] = (x[i] - mean[ch]) / (variance[ch] + 1e-5).squareRoot() * scale[ch] + bias[ch]
            }
            nnAssertClose(y, expected, "bn \(n)x\(c)x\(s)")
        }
    }

    func testInstanceNorm() {
        let n = 2, c = 3, s = 37
        let x = nnRandom(n * c * s, seed: 46), scale = nnRandom(c, seed: 47), bias = nnRandom(c, seed: 48)
        var y = [Float](repeating: .nan, count: x.count)
        instanceNorm(batch: n, channels: c, spatial: s, x: x, scale: scale, bias: bias, epsilon: 1e-5, y: &y)
        var expected: [Float] = []
        for p in 0..<(n * c) {
            let row = x[(p * s)..<((p + 1) * s)]
            let mu = row.reduce(0, +) / Float(s)
            let v = row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Float(s)
            expected += row.map { ($0 - mu) / (v + 1e-5).squareRoot() * scale[p % c] + bias[p % c] }
        }
        nnAssertClose(y, expected)
    }

    func testLayerNormWithStatistics() {
        let outer = 5, inner = 19
        let x = nnRandom(outer * inner, seed: 49), scale = nnRandom(inner, seed: 50), bias = nnRandom(inner, seed: 51)
        for withBias in [true, false] {
            var y = [Float](repeating: .nan, count: x.count)
            var mean = [Float](repeating: .nan, count: outer), inv = mean
            if withBias {
                layerNorm(outer: outer, inner: inner, x: x, scale: scale, bias: bias, epsilon: 1e-5, y: &y, mean: &mean, invStdDev: &inv)
            } else {
                layerNorm(outer: outer, inner: inner, x: x, scale: scale, bias: nil, epsilon: 1e-5, y: &y, mean: &mean, invStdDev: &inv)
            }
            var expected: [Float] = []
            for r in 0..<outer {
                let row = Array(x[(r * inner)..<((r + 1) * inner)])
                let mu = row.reduce(0, +) / Float(inner)
                let v = row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Float(inner)
                XCTAssertEqual(mean[r], mu, accuracy: 1e-5)
                XCTAssertEqual(inv[r], 1 / (v + 1e-5).squareRoot(), accuracy: 1e-3)
                for j in 0..<inner {
                    expected.append((row[j] - mu) / (v + 1e-5).squareRoot() * scale[j] + (withBias ? bias[j] : 0))
                }
            }
            nnAssertClose(y, expected, "bias=\(withBias)")
        }
    }

    func testLRNAcrossChannels() {
        let n = 2, c = 7, s = 6
        let x = nnRandom(n * c * s, seed: 52)
        for (size, beta) in [(3, 0.75), (4, 0.5), (5, 0.75), (1, 1.0)] as [(Int, Float)] {
            let alpha: Float = 0.2, bias: Float = 1.5
            var y = [Float](repeating: .nan, count: x.count)
            lrn(batch: n, channels: c, spatial: s, size: size, alpha: alpha, beta: beta, bias: bias, x: x, y: &y)
            var expected = [Float](repeating: 0, count: x.count)
            for b in 0..<n {
                for ch in 0..<c {
                    for j in 0..<s {
                        var sq: Float = 0
                        let lo = max(0, ch - (size - 1) / 2)
                        let hi = min(c - 1, ch + Int((Double(size - 1) / 2).rounded(.up)))
                        for k in lo...hi { let v = x[(b * c + k) * s + j]; sq += v * v }
                        expected[(b * c + ch) * s + j] = x[(b * c + ch) * s + j] / pow(bias + alpha / Float(size) * sq, beta)
                    }
                }
            }
            nnAssertClose(y, expected, "size=\(size)")
        }
    }
}
