import BraidKernels
import BraidTensor
import XCTest

final class ResizeTests: XCTestCase {
    func testSourceCoordinates() {
        // Formulas of the ONNX Resize spec, evaluated by hand for 4 -> 8 (scale 2).
        let a = ResizeAxis(inSize: 4, outSize: 8, scale: 2)
        XCTAssertEqual(a.sourceCoordinate(3, .halfPixel).x, 1.25)
        XCTAssertEqual(a.sourceCoordinate(3, .asymmetric).x, 1.5)
        XCTAssertEqual(a.sourceCoordinate(7, .alignCorners).x, 3)
        XCTAssertEqual(a.sourceCoordinate(0, .pytorchHalfPixel).x, -0.25)
        let one = ResizeAxis(inSize: 4, outSize: 1, scale: 0.25)
        XCTAssertEqual(one.sourceCoordinate(0, .pytorchHalfPixel).x, -0.5)
        XCTAssertEqual(one.sourceCoordinate(0, .alignCorners).x, 0)
        let crop = ResizeAxis(inSize: 5, outSize: 3, scale: 0.6, roiStart: 0.5, roiEnd: 1.5)
        XCTAssertEqual(crop.sourceCoordinate(0, .tfCropAndResize).x, 2)
        XCTAssertTrue(crop.sourceCoordinate(2, .tfCropAndResize).outside)
    }

    func testNearestRoundingModes() {
        // asymmetric 2 -> 5: x = 0, 0.4, 0.8, 1.2, 1.6.
        let a = ResizeAxis(inSize: 2, outSize: 5, scale: 2.5)
        XCTAssertEqual(a.nearestIndices(.asymmetric, .floor), [0, 0, 0, 1, 1])
        XCTAssertEqual(a.nearestIndices(.asymmetric, .ceil), [0, 1, 1, 1, 1])
        // half_pixel 2 -> 4: x = -0.25, 0.25, 0.75, 1.25; ties only at .5.
        let h = ResizeAxis(inSize: 2, outSize: 4, scale: 2)
        XCTAssertEqual(h.nearestIndices(.halfPixel, .roundPreferFloor), [0, 0, 1, 1])
        let t = ResizeAxis(inSize: 3, outSize: 6, scale: 2)
        // asymmetric 3 -> 6: x = 0, 0.5, 1, 1.5, 2, 2.5 (ties at .5, clamped at the end).
        XCTAssertEqual(t.nearestIndices(.asymmetric, .roundPreferFloor), [0, 0, 1, 1, 2, 2])
        XCTAssertEqual(t.nearestIndices(.asymmetric, .roundPreferCeil), [0, 1, 1, 2, 2, 2])
    }

    func testLinearTapsSumToOneAndClamp() {
        let taps = ResizeTaps(axis: ResizeAxis(inSize: 3, outSize: 6, scale: 2), coordinates: .halfPixel,
                              sampling: .linear, antialias: false, excludeOutside: false)
        XCTAssertEqual(taps.width, 2)
        // Output 0 samples x = -0.25: neighbours -1 and 0 clamp to 0.
        XCTAssertEqual(Array(taps.index[0..<2]), [0, 0])
        XCTAssertEqual(Array(taps.weight[2..<4]), [0.75, 0.25])
        for o in 0..<6 { XCTAssertEqual(taps.weight[2 * o] + taps.weight[2 * o + 1], 1, accuracy: 1e-6) }
    }

    func testAntialiasWidensTheFilter() {
        let taps = ResizeTaps(axis: ResizeAxis(inSize: 8, outSize: 2, scale: 0.25), coordinates: .halfPixel,
                              sampling: .linear, antialias: true, excludeOutside: false)
        XCTAssertEqual(taps.width, 8)
        for o in 0..<2 { XCTAssertEqual(taps.weight[(8 * o)..<(8 * o + 8)].reduce(0, +), 1, accuracy: 1e-6) }
    }

    func testInterpolationOfInt64RoundsHalfToEven() {
        // Linear 2 -> 4 asymmetric on [1, 2]: 1, 1.5, 2, 2 -> rounded half to even: 1, 2, 2, 2.
        let axis = ResizeAxis(inSize: 2, outSize: 4, scale: 2)
        let taps = ResizeTaps(axis: axis, coordinates: .asymmetric, sampling: .linear, antialias: false, excludeOutside: false)
        let plan = ResizeInterpolation(inShape: [2], axes: [(0, 4, taps)], extrapolation: 0, isFloat: false)
        let x = Tensor(shape: [2], ints: [1, 2]), y = Tensor(zeros: [4], dtype: .int64)
        plan.run(x.buffer.raw, y.buffer.raw)
        XCTAssertEqual(y.intArray, [1, 2, 2, 2])
    }
}
