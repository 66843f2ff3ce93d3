import BraidData
import BraidTensor
import Foundation
import XCTest

/// The folder of committed fixtures (made by Fixtures/make-fixtures.py).
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

func fixture(_ name: String) -> String { fixtures + "/" + name }

/// 8-bit fixture sample formula (see make-fixtures.py).
func v8(_ x: Int, _ y: Int, _ c: Int) -> Float { Float((37 * x + 11 * y + 71 * c + 5) % 256) }

/// 16-bit fixture sample formula.
func v16(_ x: Int, _ y: Int, _ c: Int) -> Int { (9001 * x + 3007 * y + 20011 * c + 123) % 65536 }

/// A fresh temporary folder, removed when the test ends.
func temporaryFolder(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "braid-data-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// A `[C, H, W]` tensor whose value at (c, y, x) is `f(c, y, x)`.
func makeImage(_ c: Int, _ h: Int, _ w: Int, _ f: (Int, Int, Int) -> Float) -> Tensor {
    var values: [Float] = []
    for k in 0..<c { for y in 0..<h { for x in 0..<w { values.append(f(k, y, x)) } } }
    return Tensor(shape: [c, h, w], floats: values)
}

/// Parses a binary PGM (P5) or PPM (P6) as written by djpeg: (width, height, channels, HWC bytes).
func readPNM(_ path: String) throws -> (Int, Int, Int, [UInt8]) {
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    var fields: [String] = []
    var i = 0
    while fields.count < 4 {
        while bytes[i] == 0x20 || bytes[i] == 0x0A { i += 1 }
        var token = ""
        while bytes[i] != 0x20 && bytes[i] != 0x0A { token.append(Character(UnicodeScalar(bytes[i]))); i += 1 }
        fields.append(token)
    }
    i += 1
    let channels = fields[0] == "P6" ? 3 : 1
    return (Int(fields[1])!, Int(fields[2])!, channels, Array(bytes[i...]))
}

