import XCTest
@testable import BraidKernels
import BraidTensor

final class SoftmaxTests: XCTestCase {
    private func reference(_ mode: SoftmaxMode, _ outer: Int, _ axis: Int, _ inner: Int, _ x: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        for o in 0..<outer {
            for j in 0..<inner {
                let idx = (0..<axis).map { (o * axis + $0) * inner + j }
                let vals = idx.map { Double(x[$0]) }
                let m = vals.max()!
                let sum = vals.map { exp($0 - m) }.reduce(0, +)
                let first = vals.firstIndex(of: m)!
                for (k, i) in idx.enumerated() {
                    switch mode {
                    case .softmax: y[i] = Float(exp(vals[k] - m) / sum)
                    case .logSoftmax: y[i] = Float(vals[k] - m - log(sum))
                    case .hardmax: y[i] = k == first ? 1 : 0
                    }
                }
            }
        }
        return y
    }

    func testAllModesAlongInnerAndOuterAxes() {
        for (outer, axis, inner) in [(4, 10, 1), (2, 5, 3), (1, 1, 4), (64, 1000, 1), (3, 37, 1)] {
            let x = nnRandom(outer * axis * inner, seed: 61).map { $0 * 30 }
            for mode in [SoftmaxMode.softmax, .logSoftmax, .hardmax] {
                var y = [Float](repeating: .nan, count: x.count)
                softmax(mode, outer: outer, axis: axis, inner: inner, x: x, y: &y)
                nnAssertClose(y, reference(mode, outer, axis, inner, x), "\(mode) \(outer)x\(axis)x\(inner)")
            }
        }
    }

    func testLargeLogitsDoNotOverflow() {
        let x: [Float] = [1000, 1001, 1002]
        var y = [Float](repeating: 0, count: 3)
        softmax(.softmax, outer: 1, axis: 3, inner: 1, x: x, y: &y)
        nnAssertClose(y, [0.09003057, 0.24472847, 0.66524096])
    }

    func testNaNAndInfinityInLongRows() {
        // Rows long enough for the vectorised path: a NaN anywhere makes the row NaN; -inf
        // logits get probability 0.
        var x = nnRandom(40, seed: 62)
        x[33] = .nan
        var y = [Float](repeating: 0, count: 40)
        softmax(.softmax, outer: 1, axis: 40, inner: 1, x: x, y: &y)
        XCTAssertTrue(y.allSatisfy(\.isNaN))
        x[33] = -.infinity
        softmax(.softmax, outer: 1, axis: 40, inner: 1, x: x, y: &y)
        XCTAssertEqual(y[33], 0)
        XCTAssertEqual(y.reduce(0, +), 1, accuracy: 1e-6)
    }

    func testHardmaxPicksFirstOfTies() {
        let x: [Float] = [1, 3, 3, 0]
        var y = [Float](repeating: 9, count: 4)
        softmax(.hardmax, outer: 1, axis: 4, inner: 1, x: x, y: &y)
        XCTAssertEqual(y, [0, 1, 0, 0])
    }
}
