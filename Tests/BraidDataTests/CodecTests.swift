import BraidData
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

final class CodecTests: XCTestCase {
    private func checkPNG(_ name: String, channels: Int, expected: (Int, Int, Int) -> Float,
                          bitDepth: Int = 8, tolerance: Double = 0) throws {
        let image = try ImageCodec.decode(path: fixture(name))
        XCTAssertEqual([image.width, image.height, image.channels, image.bitDepth], [5, 4, channels, bitDepth], name)
        var want: [Float] = []
        for y in 0..<4 { for x in 0..<5 { for c in 0..<channels { want.append(expected(x, y, c)) } } }
        assertClose(image.pixels, want, tolerance: tolerance, name)
    }

    func testEightBitPNGColourTypes() throws {
        try checkPNG("gray8.png", channels: 1, expected: v8)
        try checkPNG("graya8.png", channels: 2, expected: v8)
        try checkPNG("rgb8.png", channels: 3, expected: v8)
        try checkPNG("rgba8.png", channels: 4, expected: v8)
    }

    func testSixteenBitPNGIsScaledTo255() throws {
        let scaled = { (x: Int, y: Int, c: Int) in Float(v16(x, y, c)) * 255 / 65535 }
        try checkPNG("gray16.png", channels: 1, expected: scaled, bitDepth: 16, tolerance: 1e-4)
        try checkPNG("rgb16.png", channels: 3, expected: scaled, bitDepth: 16, tolerance: 1e-4)
    }

    func testPaletteWithTransparencyExpandsToRGBA() throws {
        let palette: [[Float]] = [[10, 20, 30, 255], [200, 100, 50, 128], [0, 255, 128, 255], [77, 77, 77, 255]]
        try checkPNG("palette.png", channels: 4, expected: { x, y, c in palette[(x + y) % 4][c] })
    }

    func testOneBitGrayExpandsTo255() throws {
        try checkPNG("gray1.png", channels: 1, expected: { x, y, _ in (x + 2 * y) % 3 == 0 ? 255 : 0 })
    }

    func testTensorDropsAlphaAndIsCHW() throws {
        let t = try ImageCodec.decode(path: fixture("rgba8.png")).tensor()
        XCTAssertEqual(t.shape, [3, 4, 5])
        XCTAssertEqual(t.floats[2 * 20 + 3 * 5 + 4], v8(4, 3, 2))
        let gray = try ImageCodec.decode(path: fixture("graya8.png")).tensor()
        XCTAssertEqual(gray.shape, [1, 4, 5])
        XCTAssertEqual(gray.floats[7], v8(2, 1, 0))
    }

    func testJPEGMatchesDjpeg() throws {
        for (name, reference) in [("rgb.jpg", "rgb.jpg.ppm"), ("gray.jpg", "gray.jpg.pgm")] {
            let image = try ImageCodec.decode(path: fixture(name))
            let (w, h, c, bytes) = try readPNM(fixture(reference))
            XCTAssertEqual([image.width, image.height, image.channels], [w, h, c], name)
            XCTAssertEqual(image.pixels, bytes.map(Float.init), name)
        }
    }

    func testJPEGIsCloseToItsSource() throws {
        // rgb.jpg was made from (x * 16, y * 32, 128) at quality 95 with 4:2:0 chroma.
        let image = try ImageCodec.decode(path: fixture("rgb.jpg"))
        var worst: Float = 0, total: Float = 0
        for y in 0..<8 {
            for x in 0..<16 {
                let source: [Float] = [Float(x * 16), Float(y * 32), 128]
                for c in 0..<3 {
                    let e = abs(image.pixels[(y * 16 + x) * 3 + c] - source[c])
                    if !(e <= worst) { worst = e }  // NaN-aware: a NaN pixel stays the worst
                    total += e
                }
            }
        }
        XCTAssertLessThan(worst, 20)
        XCTAssertLessThan(total / Float(16 * 8 * 3), 4)
    }

    func testCorruptFilesThrowNamingThePath() {
        for name in ["truncated.png", "badcrc.png", "notimage.png", "truncated.jpg"] {
            let path = fixture(name)
            XCTAssertThrowsError(try ImageCodec.decode(path: path), name) { error in
                guard case let DataError.corruptImage(p, reason) = error else {
                    return XCTFail("\(name): unexpected error \(error)")
                }
                XCTAssertEqual(p, path)
                XCTAssertFalse(reason.isEmpty)
                XCTAssertTrue("\(error)".contains(name))
            }
        }
    }

    func testEveryPrefixOfAPNGFailsCleanly() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture("rgb8.png")))
        for n in 0..<data.count {
            XCTAssertThrowsError(try ImageCodec.decode(data: data.prefix(n), path: "cut\(n)"))
        }
        XCTAssertNoThrow(try ImageCodec.decode(data: data, path: "whole"))
    }

    func testEveryPrefixOfAJPEGFailsCleanly() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture("rgb.jpg")))
        for n in stride(from: 0, to: data.count - 2, by: 7) {
            XCTAssertThrowsError(try ImageCodec.decode(data: data.prefix(n), path: "cut\(n)"), "prefix \(n)")
        }
    }

    func testMissingFileIsUnreadable() {
        XCTAssertThrowsError(try ImageCodec.decode(path: "/nonexistent/x.png")) { error in
            guard case DataError.unreadable(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "/nonexistent/x.png")
        }
    }

    func testPNGEncodingRoundTripsThroughTheHandMadeDecoderReference() throws {
        let source = try ImageCodec.decode(path: fixture("rgb8.png")).tensor()
        let data = try ImageCodec.encodePNG(source)
        let back = try ImageCodec.decode(data: data, path: "memory").tensor()
        XCTAssertEqual(back.shape, [3, 4, 5])
        XCTAssertEqual(back.floatArray, source.floatArray)
        let folder = try temporaryFolder(self)
        let clipped = Tensor(shape: [1, 1, 3], floats: [-5, 127.6, 300])
        try ImageCodec.writePNG(clipped, to: folder + "/c.png")
        XCTAssertEqual(try ImageCodec.decode(path: folder + "/c.png").pixels, [0, 128, 255])
    }
}
