import BraidData
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

final class AdaptationTests: XCTestCase {
    /// OpenCV's INTER_LINEAR coordinate rule written out as in its resize.cpp:
    /// fx = (dx + 0.5) * scale - 0.5, sx = floor(fx), fx -= sx, then edge clamping.
    private func naiveResize(_ image: Tensor, _ oh: Int, _ ow: Int) -> [Float] {
        let (c, h, w) = (image.shape[0], image.shape[1], image.shape[2])
        func coord(_ d: Int, _ input: Int, _ output: Int) -> (Int, Int, Float) {
            var f = (Float(d) + 0.5) * Float(input) / Float(output) - 0.5
            var s = Int(f.rounded(.down))
            f -= Float(s)
            if s < 0 { s = 0; f = 0 }
            if s >= input - 1 { s = input - 1; f = 0 }
            return (s, min(s + 1, input - 1), f)
        }
        var out: [Float] = []
        for k in 0..<c {
            for y in 0..<oh {
                let (y0, y1, fy) = coord(y, h, oh)
                for x in 0..<ow {
                    let (x0, x1, fx) = coord(x, w, ow)
                    func p(_ yy: Int, _ xx: Int) -> Float { image.floats[(k * h + yy) * w + xx] }
                    out.append((1 - fy) * ((1 - fx) * p(y0, x0) + fx * p(y0, x1))
                               + fy * ((1 - fx) * p(y1, x0) + fx * p(y1, x1)))
                }
            }
        }
        return out
    }

    func testResizeMatchesNaiveReference() {
        let image = makeImage(2, 7, 9) { c, y, x in Float((c * 31 + y * 17 + x * 5) % 23) * 11 }
        for (oh, ow) in [(14, 18), (3, 4), (7, 9), (5, 13), (1, 1), (20, 2)] {
            let got = resizeBilinear(image, height: oh, width: ow)
            XCTAssertEqual(got.shape, [2, oh, ow])
            assertClose(got.floatArray, naiveResize(image, oh, ow), tolerance: 1e-3, "\(oh)x\(ow)")
        }
    }

    func testResizeKnownValues() {
        // 1x2 -> 1x4 under half-pixel centres: [0, 4] -> [0, 1, 3, 4] (as cv2.resize gives).
        let got = resizeBilinear(Tensor(shape: [1, 1, 2], floats: [0, 4]), height: 1, width: 4)
        XCTAssertEqual(got.floatArray, [0, 1, 3, 4])
        // 4 -> 2 averages neighbouring pairs.
        let down = resizeBilinear(Tensor(shape: [1, 1, 4], floats: [0, 2, 6, 10]), height: 1, width: 2)
        XCTAssertEqual(down.floatArray, [1, 8])
    }

    func testChannelConversion() {
        let rgb = Tensor(shape: [3, 1, 2], floats: [100, 0, 50, 255, 10, 0])
        let gray = convertChannels(rgb, to: 1)
        assertClose(gray.floatArray, [0.299 * 100 + 0.587 * 50 + 0.114 * 10, 0.587 * 255],
                    tolerance: 1e-3)
        let back = convertChannels(Tensor(shape: [1, 1, 2], floats: [7, 9]), to: 3)
        XCTAssertEqual(back.floatArray, [7, 9, 7, 9, 7, 9])
    }

    func testNormalisationBGRAndLayouts() {
        let image = Tensor(shape: [3, 1, 2], floats: [10, 20, 30, 40, 50, 60])
        let mean: [Float] = [0.1, 0.2, 0.3], std: [Float] = [0.5, 0.25, 2]
        let nchw = InputSpec(channels: 3, height: 1, width: 2, layout: .nchw, scale: 0.01,
                             mean: mean, std: std, bgr: true)
        // BGR: channel 0 of the output is the image's B plane (50, 60).
        let planes: [[Float]] = [[50, 60], [30, 40], [10, 20]]
        var want: [Float] = []
        for k in 0..<3 { for v in planes[k] { want.append((v * 0.01 - mean[k]) / std[k]) } }
        let a = nchw.adapt(image)
        XCTAssertEqual(a.shape, [1, 3, 1, 2])
        assertClose(a.floatArray, want, tolerance: 1e-5)
        var nhwc = nchw
        nhwc.layout = .nhwc
        let b = nhwc.adapt(image)
        XCTAssertEqual(b.shape, [1, 1, 2, 3])
        assertClose(b.floatArray, [want[0], want[2], want[4], want[1], want[3], want[5]], tolerance: 1e-5)
    }

    func testGrayModelFromRGBImageResizedAndNormalised() {
        let image = makeImage(3, 4, 4) { c, y, x in Float(c * 40 + y * 8 + x) }
        let spec = InputSpec(channels: 1, height: 2, width: 2, layout: .nhwc, scale: 1.0 / 255,
                             mean: [0.5], std: [0.5])
        let want = naiveResize(convertChannels(image, to: 1), 2, 2).map { ($0 / 255 - 0.5) / 0.5 }
        assertClose(spec.adapt(image).floatArray, want, tolerance: 1e-5)
    }

    func testInvalidSpecsAreRejected() {
        XCTAssertThrowsError(try InputSpec(channels: 2, height: 4, width: 4).validate())
        XCTAssertThrowsError(try InputSpec(channels: 3, height: 4, width: 4, mean: [0, 0]).validate())
        XCTAssertThrowsError(try InputSpec(channels: 1, height: 4, width: 4, std: [0]).validate())
    }

    func testFlipCropAndRotation() {
        let image = makeImage(2, 3, 4) { c, y, x in Float(c * 100 + y * 10 + x) }
        let f = flipped(image)
        XCTAssertEqual(f.floats[0], 3)
        XCTAssertEqual(flipped(f).floatArray, image.floatArray)
        let c = crop(image, top: 1, left: 2, height: 2, width: 2)
        XCTAssertEqual(c.floatArray, [12, 13, 22, 23, 112, 113, 122, 123])
        XCTAssertEqual(rotated(image, degrees: 0).floatArray, image.floatArray)
        // A quarter turn counter-clockwise of a square image: out[y][x] = in[x][n - 1 - y].
        let square = makeImage(1, 3, 3) { _, y, x in Float(y * 3 + x) }
        let r = rotated(square, degrees: 90).floatArray
        var want: [Float] = []
        for y in 0..<3 { for x in 0..<3 { want.append(Float(x * 3 + (2 - y))) } }
        assertClose(r, want, tolerance: 1e-4)
    }

    func testAugmentationIsSeededAndOffByDefault() {
        let image = makeImage(1, 16, 16) { _, y, x in Float(y * 16 + x) }
        XCTAssertTrue(Augmentation().isIdentity)
        let aug = Augmentation(cropScale: 0.3...0.8, horizontalFlip: true, rotationDegrees: 10)
        var g1 = SplitMix64(seed: 7, 3, 4), g2 = SplitMix64(seed: 7, 3, 4)
        let a = aug.apply(image, using: &g1), b = aug.apply(image, using: &g2)
        XCTAssertEqual(a.shape, b.shape)
        XCTAssertEqual(a.floatArray, b.floatArray)
        var shapes = Set<[Int]>()
        for i in 0..<20 {
            var g = SplitMix64(seed: 7, 0, i)
            let out = aug.apply(image, using: &g)
            XCTAssertLessThanOrEqual(out.shape[1] * out.shape[2], 16 * 16)
            shapes.insert(out.shape)
        }
        XCTAssertGreaterThan(shapes.count, 1)
    }
}
