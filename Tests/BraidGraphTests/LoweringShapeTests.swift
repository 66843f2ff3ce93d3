import BraidGraph
import BraidTensor
import XCTest

final class LoweringShapeTests: XCTestCase {
    // MARK: Contiguous reshapes

    func testReshapeCopiesZeroDimsAndInfersMinusOne() throws {
        let x = iotaInts([2, 3, 4])
        let y = try runShapeOp(.reshape(allowZero: false), [x, ints([0, -1])])[0]
        XCTAssertEqual(y.shape, [2, 12])
        XCTAssertEqual(y.dtype, .int64)
        XCTAssertEqual(y.intArray, x.intArray)
        let e = try runShapeOp(.reshape(allowZero: true), [Tensor(zeros: [0, 3]), ints([3, 0])])[0]
        XCTAssertEqual(e.shape, [3, 0])
    }

    func testReshapeRejectsRuntimeShapeAndBadCounts() {
        XCTAssertThrowsError(try runShapeOp(.reshape(allowZero: false), [iota([6]), ints([2, 3])], runtime: [1])) {
            XCTAssertEqual(($0 as? GraphError)?.node, "n")
        }
        XCTAssertThrowsError(try runShapeOp(.reshape(allowZero: false), [iota([6]), ints([4, -1])]))
    }

    func testFlattenSqueezeUnsqueezeKeepOrder() throws {
        let x = iota([2, 3, 4])
        let f = try runShapeOp(.flatten(axis: -1), [x])[0]
        XCTAssertEqual(f.shape, [6, 4]); XCTAssertEqual(f.floatArray, x.floatArray)
        XCTAssertEqual(try runShapeOp(.flatten(axis: 0), [x])[0].shape, [1, 24])
        let q = iotaInts([1, 3, 1, 2])
        XCTAssertEqual(try runShapeOp(.squeeze, [q, ints([-2])])[0].shape, [1, 3, 2])
        let all = try runShapeOp(.squeeze, [q])[0]
        XCTAssertEqual(all.shape, [3, 2]); XCTAssertEqual(all.intArray, q.intArray)
        XCTAssertThrowsError(try runShapeOp(.squeeze, [q, ints([1])]))
        let u = try runShapeOp(.unsqueeze, [iotaInts([3, 2]), ints([0, -1])])[0]
        XCTAssertEqual(u.shape, [1, 3, 2, 1]); XCTAssertEqual(u.intArray, iotaInts([3, 2]).intArray)
        let i = try runShapeOp(.identity, [x])[0]
        XCTAssertEqual(i.floatArray, x.floatArray)
    }

    // MARK: Strided views against naive index loops

    func testTransposeMatchesNaive() throws {
        let cases: [([Int], [Int]?)] = [([2, 3, 4, 5], [0, 2, 3, 1]), ([2, 3, 4, 5], [3, 1, 0, 2]),
                                        ([2, 3, 4], nil), ([3, 4, 5, 6], [0, 1, 3, 2]), ([7, 9], [1, 0]),
                                        ([2, 40, 30, 33], [0, 2, 3, 1]), ([3, 50, 30, 9], [0, 3, 1, 2])]
        for (shape, perm) in cases {
            let p = perm ?? Array((0..<shape.count).reversed())
            for x in [iota(shape), iotaInts(shape)] {
                let y = try runShapeOp(.transpose(perm: perm), [x])[0]
                let outShape = p.map { shape[$0] }
                XCTAssertEqual(y.shape, outShape)
                let xs = x.doubleArray, ys = y.doubleArray
                var bad = 0
                for o in 0..<ys.count {
                    let oi = unravel(o, outShape)
                    var ii = [Int](repeating: 0, count: shape.count)
                    for d in 0..<p.count { ii[p[d]] = oi[d] }
                    if ys[o] != xs[ravel(ii, shape)] { bad += 1 }
                }
                XCTAssertEqual(bad, 0, "transpose \(shape) \(p) \(x.dtype)")
            }
        }
    }

    func testExpandBroadcastsBothWays() throws {
        let x = iotaInts([3, 1])
        let y = try runShapeOp(.expand, [x, ints([2, 1, 4])])[0]
        XCTAssertEqual(y.shape, [2, 3, 4])
        for o in 0..<y.count { XCTAssertEqual(y.ints[o], x.ints[unravel(o, y.shape)[1]]) }
        let z = try runShapeOp(.expand, [iota([2, 3]), ints([1])])[0]
        XCTAssertEqual(z.shape, [2, 3]); XCTAssertEqual(z.floatArray, iota([2, 3]).floatArray)
        XCTAssertThrowsError(try runShapeOp(.expand, [iota([2, 3]), ints([4])]))
    }

    func testTileRepeatsEachAxis() throws {
        let x = iota([2, 3])
        let y = try runShapeOp(.tile, [x, ints([2, 3])])[0]
        XCTAssertEqual(y.shape, [4, 9])
        for o in 0..<y.count {
            let i = unravel(o, y.shape)
            XCTAssertEqual(y.floats[o], x.floats[(i[0] % 2) * 3 + i[1] % 3])
        }
    }

    func testDepthToSpaceBothOrdersAndSpaceToDepthInverse() throws {
        let (n, c, h, w, b) = (2, 8, 3, 2, 2)
        let x = iota([n, c, h, w])
        for crd in [false, true] {
            let y = try runShapeOp(.depthToSpace(blockSize: b, columnRowDepth: crd), [x])[0]
            XCTAssertEqual(y.shape, [n, c / 4, h * b, w * b])
            for o in 0..<y.count {
                let i = unravel(o, y.shape)
                let (bh, bw) = (i[2] % b, i[3] % b)
                // ONNX: DCR takes depth (bh * b + bw) * C' + c; CRD takes c * b * b + bh * b + bw.
                let ch = crd ? i[1] * b * b + bh * b + bw : (bh * b + bw) * (c / 4) + i[1]
                XCTAssertEqual(y.floats[o], x.floats[ravel([i[0], ch, i[2] / b, i[3] / b], x.shape)])
            }
            if !crd {
                let back = try runShapeOp(.spaceToDepth(blockSize: b), [y])[0]
                XCTAssertEqual(back.shape, x.shape); XCTAssertEqual(back.floatArray, x.floatArray)
            }
        }
    }

    // MARK: Concat, split, slice

    func testConcatOnNegativeAxis() throws {
        let a = iotaInts([2, 1, 3]), b = iotaInts([2, 2, 3]), c = Tensor(zeros: [2, 0, 3], dtype: .int64)
        let y = try runShapeOp(.concat(axis: -2), [a, c, b])[0]
        XCTAssertEqual(y.shape, [2, 3, 3])
        for o in 0..<y.count {
            let i = unravel(o, y.shape)
            let want = i[1] < 1 ? a.ints[ravel([i[0], 0, i[2]], a.shape)] : b.ints[ravel([i[0], i[1] - 1, i[2]], b.shape)]
            XCTAssertEqual(y.ints[o], want)
        }
        XCTAssertThrowsError(try runShapeOp(.concat(axis: 0), [iota([2, 3]), iota([2, 4])]))
    }

    func testSplitEqualUnevenAndSized() throws {
        let x = iota([2, 5])
        let parts = try runShapeOp(.split(axis: 1, count: 3), [x], outputs: 3)
        XCTAssertEqual(parts.map(\.shape), [[2, 2], [2, 2], [2, 1]])
        XCTAssertEqual(parts[2].floatArray, [4, 9])
        XCTAssertEqual(parts[1].floatArray, [2, 3, 7, 8])
        let sized = try runShapeOp(.split(axis: -1, count: 2), [iotaInts([2, 5]), ints([1, 4])], outputs: 2)
        XCTAssertEqual(sized[0].intArray, [100, 105])
        XCTAssertEqual(sized[1].intArray, [101, 102, 103, 104, 106, 107, 108, 109])
    }

    struct SliceCase { var starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?, shape: [Int], values: [Int64] }

    func testSliceFollowsNumPyClamping() throws {
        // Made with numpy: np.arange(60).reshape(3, 4, 5)[slices] (tools/fixtures/gen_slice_pad_literals.py in the report).
        let cases: [SliceCase] = [
        SliceCase(starts: [0, 1], ends: [2, 3], axes: nil, steps: nil, shape: [2, 2, 5], values: [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34]),
        SliceCase(starts: [1], ends: [Int.max], axes: [1], steps: nil, shape: [3, 3, 5], values: [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59]),
        SliceCase(starts: [-1, -2], ends: [Int.min, Int.min], axes: [0, 2], steps: [-1, -2], shape: [3, 4, 2], values: [43, 41, 48, 46, 53, 51, 58, 56, 23, 21, 28, 26, 33, 31, 38, 36, 3, 1, 8, 6, 13, 11, 18, 16]),
        SliceCase(starts: [10], ends: [-10], axes: [-1], steps: [-2], shape: [3, 4, 3], values: [4, 2, 0, 9, 7, 5, 14, 12, 10, 19, 17, 15, 24, 22, 20, 29, 27, 25, 34, 32, 30, 39, 37, 35, 44, 42, 40, 49, 47, 45, 54, 52, 50, 59, 57, 55]),
        SliceCase(starts: [0, 3, 4], ends: [3, -5, 0], axes: [0, 1, 2], steps: [2, -1, -3], shape: [2, 4, 2], values: [19, 16, 14, 11, 9, 6, 4, 1, 59, 56, 54, 51, 49, 46, 44, 41]),
        SliceCase(starts: [2], ends: [2], axes: [0], steps: [1], shape: [0, 4, 5], values: []),
        SliceCase(starts: [-100], ends: [100], axes: [2], steps: [3], shape: [3, 4, 2], values: [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38, 40, 43, 45, 48, 50, 53, 55, 58]),
        ]
        let x = Tensor(shape: [3, 4, 5], ints: (0..<60).map(Int64.init))
        for c in cases {
            let y = try runShapeOp(.slice, [x, ints(c.starts), ints(c.ends), c.axes.map(ints), c.steps.map(ints)])[0]
            XCTAssertEqual(y.shape, c.shape, "\(c)")
            XCTAssertEqual(y.intArray, c.values, "\(c)")
        }
        let f = try runShapeOp(.slice, [iota([4, 6]), ints([1]), ints([-1]), ints([-1]), ints([2])])[0]
        XCTAssertEqual(f.floatArray, [1, 3, 7, 9, 13, 15, 19, 21])
        XCTAssertThrowsError(try runShapeOp(.slice, [iota([4]), ints([0]), ints([2]), nil, ints([0])]))
    }

    // MARK: Gather

    func testGatherNegativeAndRuntimeIndices() throws {
        let x = iota([3, 4, 2])
        let idx = Tensor(shape: [2, 2], ints: [0, -1, 2, 1])
        for runtime in [Set<Int>(), [1]] {
            let y = try runShapeOp(.gather(axis: 1), [x, idx], runtime: runtime)[0]
            XCTAssertEqual(y.shape, [3, 2, 2, 2])
            for o in 0..<y.count {
                let i = unravel(o, y.shape)
                var k = Int(idx.ints[i[1] * 2 + i[2]]); if k < 0 { k += 4 }
                XCTAssertEqual(y.floats[o], x.floats[ravel([i[0], k, i[3]], x.shape)])
            }
        }
        let s = try runShapeOp(.gather(axis: 0), [ints([5, 6, 7]), Tensor(shape: [], ints: [-1])])[0]
        XCTAssertEqual(s.shape, []); XCTAssertEqual(s.intArray, [7])
        XCTAssertThrowsError(try runShapeOp(.gather(axis: 0), [ints([5, 6, 7]), ints([3])]))
    }

    func testGatherElementsOnnxExamples() throws {
        // The two examples of the ONNX GatherElements spec, plus a negative index.
        let a = try runShapeOp(.gatherElements(axis: 1), [floats([2, 2], [1, 2, 3, 4]),
                                                          Tensor(shape: [2, 2], ints: [0, 0, 1, 0])])[0]
        XCTAssertEqual(a.floatArray, [1, 1, 4, 3])
        let data = Tensor(shape: [3, 3], ints: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let b = try runShapeOp(.gatherElements(axis: 0), [data, Tensor(shape: [2, 3], ints: [1, 2, 0, 2, 0, -3])])[0]
        XCTAssertEqual(b.shape, [2, 3]); XCTAssertEqual(b.intArray, [4, 8, 3, 7, 2, 3])
        let c = try runShapeOp(.gatherElements(axis: -1), [data, Tensor(shape: [2, 1], ints: [2, -2])])[0]
        XCTAssertEqual(c.intArray, [3, 5])
    }

    // MARK: Values from shapes

    func testShapeSizeConstantOfShapeRange() throws {
        let x = Tensor(zeros: [2, 3, 4, 5])
        XCTAssertEqual(try runShapeOp(.shape(start: 0, end: nil), [x])[0].intArray, [2, 3, 4, 5])
        XCTAssertEqual(try runShapeOp(.shape(start: -3, end: nil), [x])[0].intArray, [3, 4, 5])
        XCTAssertEqual(try runShapeOp(.shape(start: 1, end: -1), [x])[0].intArray, [3, 4])
        XCTAssertEqual(try runShapeOp(.shape(start: 10, end: nil), [x])[0].shape, [0])
        XCTAssertEqual(try runShapeOp(.shape(start: -10, end: 2), [x])[0].intArray, [2, 3])
        let size = try runShapeOp(.size, [x])[0]
        XCTAssertEqual(size.shape, []); XCTAssertEqual(size.intArray, [120])
        let c = try runShapeOp(.constantOfShape(value: Tensor(shape: [1], ints: [7])), [ints([2, 3])])[0]
        XCTAssertEqual(c.shape, [2, 3]); XCTAssertEqual(c.intArray, [Int64](repeating: 7, count: 6))
        let cf = try runShapeOp(.constantOfShape(value: floats([1], [0.5])), [ints([4])])[0]
        XCTAssertEqual(cf.floatArray, [0.5, 0.5, 0.5, 0.5])
        let scalar = { (v: Int64) in Tensor(shape: [], ints: [v]) }
        XCTAssertEqual(try runShapeOp(.range, [scalar(10), scalar(4), scalar(-3)])[0].intArray, [10, 7])
        XCTAssertEqual(try runShapeOp(.range, [scalar(1), scalar(5), scalar(2)])[0].intArray, [1, 3])
        XCTAssertEqual(try runShapeOp(.range, [scalar(1), scalar(5), scalar(-2)])[0].shape, [0])
        let fr = try runShapeOp(.range, [floats([], [0]), floats([], [1]), floats([], [0.25])])[0]
        XCTAssertEqual(fr.floatArray, [0, 0.25, 0.5, 0.75])
        let k = try runShapeOp(.constant(iotaInts([2, 2])), [])[0]
        XCTAssertEqual(k.intArray, [100, 101, 102, 103])
    }

    // MARK: Pad

    struct PadCase { var mode: PadFill, pads: [Int], value: Float?, axes: [Int]?, shape: [Int], values: [Float] }

    func testPadModesMatchOnnxReference() throws {
        // Made with onnx.reference.ops.op_pad._pad_impl on [[1, 2, 3], [4, 5, 6]] (tools/fixtures/gen_slice_pad_literals.py).
        let cases: [PadCase] = [
        PadCase(mode: .constant, pads: [1, 2, 0, 1], value: 9.5, axes: nil, shape: [3, 6], values: [9.5, 9.5, 9.5, 9.5, 9.5, 9.5, 9.5, 9.5, 1.0, 2.0, 3.0, 9.5, 9.5, 9.5, 4.0, 5.0, 6.0, 9.5]),
        PadCase(mode: .reflect, pads: [1, 4, 1, 5], value: nil, axes: nil, shape: [4, 12], values: [4.0, 5.0, 6.0, 5.0, 4.0, 5.0, 6.0, 5.0, 4.0, 5.0, 6.0, 5.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 4.0, 5.0, 6.0, 5.0, 4.0, 5.0, 6.0, 5.0, 4.0, 5.0, 6.0, 5.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0]),
        PadCase(mode: .edge, pads: [2, 1, 0, 3], value: nil, axes: nil, shape: [4, 7], values: [1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 5.0, 6.0, 6.0, 6.0, 6.0]),
        PadCase(mode: .wrap, pads: [3, 4, 1, 5], value: nil, axes: nil, shape: [6, 12], values: [6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0]),
        PadCase(mode: .reflect, pads: [2, 1], value: nil, axes: [-1], shape: [2, 6], values: [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 6.0, 5.0, 4.0, 5.0, 6.0, 5.0]),
        ]
        let x = floats([2, 3], [1, 2, 3, 4, 5, 6])
        for c in cases {
            let y = try runShapeOp(.pad(mode: c.mode), [x, ints(c.pads), c.value.map { floats([], [$0]) }, c.axes.map(ints)])[0]
            XCTAssertEqual(y.shape, c.shape, "\(c.mode) \(c.pads)")
            XCTAssertEqual(y.floatArray, c.values, "\(c.mode) \(c.pads)")
        }
        // Negative pads crop (worked by hand): drop row 0 and the last column, add a column in front.
        let crop = try runShapeOp(.pad(mode: .constant), [x, ints([-1, 1, 0, -1])])[0]
        XCTAssertEqual(crop.shape, [1, 3]); XCTAssertEqual(crop.floatArray, [0, 4, 5])
        let i = try runShapeOp(.pad(mode: .constant), [Tensor(shape: [2], ints: [1, 2]), ints([1, 2]),
                                                       Tensor(shape: [], ints: [-7])])[0]
        XCTAssertEqual(i.intArray, [-7, 1, 2, -7, -7])
        let e = try runShapeOp(.pad(mode: .edge), [iotaInts([2, 2]), ints([0, 1, 0, 1])])[0]
        XCTAssertEqual(e.intArray, [100, 100, 101, 101, 102, 102, 103, 103])
    }

    func testLargePadMatchesNaive() throws {
        let x = iota([2, 3, 40, 50])
        let y = try runShapeOp(.pad(mode: .reflect), [x, ints([0, 0, 2, 3, 0, 0, 1, 4])])[0]
        XCTAssertEqual(y.shape, [2, 3, 43, 57])
        var bad = 0
        for o in 0..<y.count {
            let i = unravel(o, y.shape)
            var h = i[2] - 2, w = i[3] - 3
            if h < 0 { h = -h }; if h > 39 { h = 78 - h }
            if w < 0 { w = -w }; if w > 49 { w = 98 - w }
            if y.floats[o] != x.floats[ravel([i[0], i[1], h, w], x.shape)] { bad += 1 }
        }
        XCTAssertEqual(bad, 0)
    }
}
