import XCTest
import Foundation
@testable import BraidKernels
import BraidTensor
import BraidTestSupport

/// Groups the input's elements by output index the plain way and folds each group in Double.
private func naiveReduce(_ x: [Double], shape: [Int], axes: Set<Int>, _ f: ReduceFunction) -> [Double] {
    naiveFold(naiveGroups(x, shape: shape, axes: axes), f)
}

private func naiveGroups(_ x: [Double], shape: [Int], axes: Set<Int>) -> [[Double]] {
    let kept = shape.indices.filter { !axes.contains($0) }
    let outCount = kept.map { shape[$0] }.reduce(1, *)
    var groups = [[Double]](repeating: [], count: outCount)
    for flat in 0..<x.count {
        var rem = flat
        var idx = [Int](repeating: 0, count: shape.count)
        for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = rem % shape[d]; rem /= shape[d] }
        var o = 0
        for d in kept { o = o * shape[d] + idx[d] }
        groups[o].append(x[flat])
    }
    return groups
}

private func naiveFold(_ groups: [[Double]], _ f: ReduceFunction) -> [Double] {
    groups.map { g in
        switch f {
        case .sum: return g.reduce(0, +)
        case .mean: return g.reduce(0, +) / Double(g.count)
        case .max: return g.max() ?? -.infinity
        case .min: return g.min() ?? .infinity
        case .prod: return g.reduce(1, *)
        case .l1: return g.map { abs($0) }.reduce(0, +)
        case .l2: return g.map { $0 * $0 }.reduce(0, +).squareRoot()
        case .logSum: return Foundation.log(g.reduce(0, +))
        case .logSumExp: return Foundation.log(g.map { Foundation.exp($0) }.reduce(0, +))
        case .sumSquare: return g.map { $0 * $0 }.reduce(0, +)
        }
    }
}

final class ReduceTests: XCTestCase {
    let kinds: [ReduceFunction] = [.sum, .mean, .max, .min, .prod, .l1, .l2, .logSum, .logSumExp, .sumSquare]

    func testEveryAxisSubsetAndKindMatchesNaive() {
        var rng = TestRandom(10)
        let shape = [2, 3, 1, 4, 5]
        let x = rng.floats(shape.product, 0.5, 1.5)
        for mask in 0..<(1 << shape.count) {
            let axes = (0..<shape.count).filter { mask & (1 << $0) != 0 }
            let layout = ReduceLayout(shape: shape, axes: axes)
            for f in kinds {
                var y = [Float](repeating: .nan, count: layout.outputCount)
                Elementwise.reduce(f, layout, x, &y)
                let ref = naiveReduce(x.map(Double.init), shape: shape, axes: Set(axes), f)
                assertClose(y, ref.map { Float($0) }, tolerance: 1e-5, "\(f) axes \(axes)")
            }
        }
    }

    func testLargeContiguousAndRowReductions() {
        var rng = TestRandom(11)
        let shape = [8, 16, 33, 31]
        let x = rng.floats(shape.product)
        for axes in [[2, 3], [0], [1], [3], [0, 2, 3]] {
            let layout = ReduceLayout(shape: shape, axes: axes)
            let groups = naiveGroups(x.map(Double.init), shape: shape, axes: Set(axes))
            for f in [ReduceFunction.sum, .mean, .max, .sumSquare] {
                var y = [Float](repeating: .nan, count: layout.outputCount)
                Elementwise.reduce(f, layout, x, &y)
                let ref = naiveFold(groups, f)
                assertClose(y, ref.map { Float($0) }, tolerance: 2e-4, "\(f) axes \(axes)")
            }
        }
    }

    func testNoAxesAppliesTheElementwisePart() {
        let layout = ReduceLayout(shape: [2, 2], axes: [])
        var y = [Float](repeating: 0, count: 4)
        Elementwise.reduce(.sumSquare, layout, [1, -2, 3, -4], &y)
        XCTAssertEqual(y, [1, 4, 9, 16])
        Elementwise.reduce(.l1, layout, [1, -2, 3, -4], &y)
        XCTAssertEqual(y, [1, 2, 3, 4])
    }

    /// ONNX's *_empty_set cases: shape [2, 0, 4] reduced over axis 1.
    func testEmptySetGivesIdentities() {
        let layout = ReduceLayout(shape: [2, 0, 4], axes: [1])
        XCTAssertEqual(layout.outputCount, 8)
        let expected: [(ReduceFunction, Float)] = [
            (.sum, 0), (.prod, 1), (.max, -.infinity), (.min, .infinity), (.l1, 0), (.l2, 0),
            (.logSum, -.infinity), (.logSumExp, -.infinity), (.sumSquare, 0),
        ]
        let none = [Float](repeating: 0, count: 1)
        for (f, v) in expected {
            var y = [Float](repeating: .nan, count: 8)
            Elementwise.reduce(f, layout, none, &y)
            XCTAssertEqual(y, [Float](repeating: v, count: 8), "\(f)")
        }
        var yi = [Int64](repeating: 5, count: 8)
        Elementwise.reduce(.max, layout, [Int64(0)], &yi, dtype: .int32)
        XCTAssertEqual(yi, [Int64](repeating: Int64(Int32.min), count: 8))
    }

    func testLogSumExpIsStableForLargeInputs() {
        let layout = ReduceLayout(shape: [1, 3], axes: [1])
        var y: [Float] = [0]
        Elementwise.reduce(.logSumExp, layout, [1000, 1000, 1000], &y)
        XCTAssertEqual(y[0], 1000 + Float(Foundation.log(3.0)), accuracy: 1e-3)
        Elementwise.reduce(.logSumExp, layout, [.infinity, 1, 2], &y)
        XCTAssertEqual(y[0], .infinity)
    }

    func testIntegerReductionsMatchNaive() {
        var rng = TestRandom(12)
        let shape = [3, 4, 5]
        let x = rng.ints(shape.product, -5, 5)
        for axes in [[0], [1], [2], [0, 2], [0, 1, 2], []] {
            let layout = ReduceLayout(shape: shape, axes: axes)
            for f in [ReduceFunction.sum, .max, .min, .prod, .l1, .sumSquare] {
                var y = [Int64](repeating: 99, count: layout.outputCount)
                Elementwise.reduce(f, layout, x, &y, dtype: .int64)
                let ref = naiveReduce(x.map(Double.init), shape: shape, axes: Set(axes), f)
                XCTAssertEqual(y, ref.map { Int64($0) }, "\(f) axes \(axes)")
            }
        }
    }

    func testArgExtremeTiesAndNaN() {
        // [2, 3] over axis 1 (outer 2, size 3, inner 1).
        let x: [Float] = [1, 5, 5, 7, 2, 7]
        var y = [Int64](repeating: 9, count: 2)
        Elementwise.argExtreme(max: true, selectLast: false, outer: 2, axisSize: 3, inner: 1, x, &y)
        XCTAssertEqual(y, [1, 0])
        Elementwise.argExtreme(max: true, selectLast: true, outer: 2, axisSize: 3, inner: 1, x, &y)
        XCTAssertEqual(y, [2, 2])
        Elementwise.argExtreme(max: false, selectLast: false, outer: 2, axisSize: 3, inner: 1, x, &y)
        XCTAssertEqual(y, [0, 1])
        // Over axis 0 of [2, 3]: outer 1, size 2, inner 3.
        var z = [Int64](repeating: 9, count: 3)
        Elementwise.argExtreme(max: true, selectLast: false, outer: 1, axisSize: 2, inner: 3, x, &z)
        XCTAssertEqual(z, [1, 0, 1])
        Elementwise.argExtreme(max: false, selectLast: false, outer: 1, axisSize: 2, inner: 3,
                               [Int64(4), 1, 1, 2, 1, 0], &z)
        XCTAssertEqual(z, [1, 0, 1])
        Elementwise.argExtreme(max: true, selectLast: false, outer: 1, axisSize: 3, inner: 1,
                               [Float(1), .nan, 3], &z)
        XCTAssertEqual(z[0], 1, "NaN wins as in np.argmax")
    }
}
