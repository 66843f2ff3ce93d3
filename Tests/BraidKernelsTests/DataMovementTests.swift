import BraidKernels
import BraidTensor
import XCTest

final class DataMovementTests: XCTestCase {
    private func unravel(_ i: Int, _ shape: [Int]) -> [Int] {
        var rem = i, idx = [Int](repeating: 0, count: shape.count)
        for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = rem % shape[d]; rem /= shape[d] }
        return idx
    }

    func testStridedCopyCollapsesContiguousAxes() {
        let c = StridedCopy(shape: [2, 1, 3, 4], strides: [12, 99, 4, 1], elementSize: 4)
        XCTAssertEqual(c.shape, [24])
        XCTAssertEqual(c.strides, [1])
        let b = StridedCopy.broadcast(shape: [3, 1], to: [2, 3, 4], elementSize: 8)
        XCTAssertEqual(b.shape, [2, 3, 4])
        XCTAssertEqual(b.strides, [0, 1, 0])
    }

    func testStridedCopyNegativeStepsAndOffset() {
        // Reverse rows and take every second column from the end of a [3, 5] int64 tensor.
        let x = Tensor(shape: [3, 5], ints: (0..<15).map(Int64.init))
        let y = Tensor(zeros: [3, 3], dtype: .int64)
        StridedCopy(shape: [3, 3], strides: [-5, -2], offset: 14, elementSize: 8).run(x.buffer.raw, y.buffer.raw)
        XCTAssertEqual(y.intArray, [14, 12, 10, 9, 7, 5, 4, 2, 0])
    }

    func testLargeTransposeBothPathsMatchNaive() {
        // [N, C, H, W] -> [N, H, W, C] uses the blocked path; -> [W, N, C, H] the strided one.
        let shape = [2, 19, 45, 41]
        let x = Tensor(shape: shape, floats: (0..<shape.product).map(Float.init))
        for perm in [[0, 2, 3, 1], [3, 0, 1, 2], [1, 0, 3, 2]] {
            let outShape = perm.map { shape[$0] }
            let y = Tensor(zeros: outShape)
            StridedCopy.transpose(shape: shape, perm: perm, elementSize: 4).run(x.buffer.raw, y.buffer.raw)
            var bad = 0
            for o in 0..<y.count {
                let oi = unravel(o, outShape)
                var ii = [0, 0, 0, 0]
                for d in 0..<4 { ii[perm[d]] = oi[d] }
                let src = ((ii[0] * shape[1] + ii[1]) * shape[2] + ii[2]) * shape[3] + ii[3]
                if y.floats[o] != Float(src) { bad += 1 }
            }
            XCTAssertEqual(bad, 0, "perm \(perm)")
        }
    }

    func testTileViewRepeats() {
        let x = Tensor(shape: [2, 2], ints: [1, 2, 3, 4])
        let y = Tensor(zeros: [2, 6], dtype: .int64)
        StridedCopy.tile(shape: [2, 2], repeats: [1, 3], elementSize: 8).run(x.buffer.raw, y.buffer.raw)
        XCTAssertEqual(y.intArray, [1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4])
    }

    func testConcatCopyInterleavesRows() {
        let a = Tensor(shape: [2, 1], floats: [1, 2]), b = Tensor(shape: [2, 2], floats: [3, 4, 5, 6])
        let y = Tensor(zeros: [2, 3])
        ConcatCopy(outer: 2, inner: 1, axisSizes: [1, 2], elementSize: 4)
            .run([UnsafeRawPointer(a.buffer.raw), UnsafeRawPointer(b.buffer.raw)], y.buffer.raw)
        XCTAssertEqual(y.floatArray, [1, 3, 4, 2, 5, 6])
    }

    /// Large enough to be cut over the cores: one row (a channel concatenation of one image)
    /// and several odd-sized rows, so chunk edges fall inside runs; against a plain loop.
    func testConcatCopySplitsLargeCopiesAcrossCores() {
        for (outer, sizes) in [(1, [70_001, 3, 90_000]), (3, [40_000, 1, 65_537])] {
            let inputs = sizes.enumerated().map { i, n in
                Tensor(shape: [outer, n], floats: (0..<(outer * n)).map { Float($0 * 3 + i) })
            }
            let y = Tensor(zeros: [outer, sizes.reduce(0, +)])
            ConcatCopy(outer: outer, inner: 1, axisSizes: sizes, elementSize: 4)
                .run(inputs.map { UnsafeRawPointer($0.buffer.raw) }, y.buffer.raw)
            var expected: [Float] = []
            for o in 0..<outer {
                for (i, n) in sizes.enumerated() { expected += inputs[i].floatArray[(o * n)..<((o + 1) * n)] }
            }
            XCTAssertEqual(y.floatArray, expected, "outer \(outer)")
        }
    }

    func testGatherCopyNegativeAndOutOfRange() {
        let x = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let idx = Tensor(shape: [3], ints: [-1, 0, 7])
        let y = Tensor(zeros: [2, 3])
        GatherCopy(outer: 2, axisSize: 3, inner: 1, indexCount: 3, elementSize: 4).run(x.buffer.raw, idx.ints, y.buffer.raw)
        XCTAssertEqual(y.floatArray, [3, 1, 0, 6, 4, 0])
    }

    func testGatherElementsWithSmallerIndexShape() {
        let x = Tensor(shape: [3, 3], ints: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let idx = Tensor(shape: [2, 2], ints: [2, 0, -1, 1])
        let y = Tensor(zeros: [2, 2], dtype: .int64)
        GatherElementsCopy(shape: [3, 3], indexShape: [2, 2], axis: 0, elementSize: 8).run(x.buffer.raw, idx.ints, y.buffer.raw)
        XCTAssertEqual(y.intArray, [7, 2, 7, 5])
    }

    func testAxisMapCopyFillsAndCopiesRuns() {
        let x = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let y = Tensor(zeros: [3, 5])
        AxisMapCopy(inShape: [2, 3], maps: [[1, -1, 0], [-1, 0, 1, 2, 2]], elementSize: 4)
            .run(x.buffer.raw, y.buffer.raw, fillBits: fillBits(-1, float: true))
        XCTAssertEqual(y.floatArray, [-1, 4, 5, 6, 6, -1, -1, -1, -1, -1, -1, 1, 2, 3, 3])
    }
}
