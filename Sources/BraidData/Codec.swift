import BraidTensor
import CDataShim
import Foundation

/// A decoded image with its samples as stored in the file.
///
/// `pixels` holds `height * width * channels` interleaved samples (HWC), as Float in
/// 0...255; 16-bit files are scaled by 255/65535. `channels` is 1 (gray), 2 (gray+alpha),
/// 3 (RGB) or 4 (RGBA).
public struct DecodedImage: Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var bitDepth: Int
    public var pixels: [Float]

    /// The image as a `[C, H, W]` float32 tensor in 0...255 with the alpha channel dropped
    /// (alpha is ignored, not composited, as PIL's `convert("RGB")` does).
    public func tensor() -> Tensor {
        let colour = channels >= 3 ? 3 : 1
        let t = Tensor(zeros: [colour, height, width])
        let dst = t.floats
        let plane = height * width
        pixels.withUnsafeBufferPointer { src in
            for p in 0..<plane {
                for c in 0..<colour { dst[c * plane + p] = src[p * channels + c] }
            }
        }
        return t
    }
}

/// Image decoding and encoding through libpng and libjpeg-turbo.
public enum ImageCodec {
    /// Decodes a PNG or JPEG file, chosen by its first bytes (not its extension).
    ///
    /// - Throws: `DataError.corruptImage` naming `path` for a corrupt, truncated or unknown file.
    public static func decode(path: String) throws -> DecodedImage {
        try decode(data: try readFile(path), path: path)
    }

    /// Decodes PNG or JPEG bytes; `path` is only used in error messages.
    public static func decode(data: Data, path: String) throws -> DecodedImage {
        var image = braid_image()
        var message = [CChar](repeating: 0, count: 256)
        let bytes = [UInt8](data)
        let status: Int32 = bytes.withUnsafeBufferPointer { raw in
            guard let base = raw.baseAddress else { return -2 }
            if bytes.count >= 8, bytes[0] == 0x89, bytes[1] == 0x50 {
                return braid_png_decode(base, raw.count, &image, &message, message.count)
            }
            if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8 {
                return braid_jpeg_decode(base, raw.count, &image, &message, message.count)
            }
            return -2
        }
        if status == -2 { throw DataError.corruptImage(path: path, reason: "neither PNG nor JPEG") }
        if status != 0 {
            throw DataError.corruptImage(path: path, reason: cMessage(message))
        }
        defer { braid_free(image.pixels) }
        let count = Int(image.width) * Int(image.height) * Int(image.channels)
        var pixels = [Float](repeating: 0, count: count)
        if image.bit_depth == 16 {
            image.pixels.withMemoryRebound(to: UInt16.self, capacity: count) { src in
                for i in 0..<count { pixels[i] = Float(src[i]) * (255 / 65535) }
            }
        } else {
            for i in 0..<count { pixels[i] = Float(image.pixels[i]) }
        }
        return DecodedImage(width: Int(image.width), height: Int(image.height),
                            channels: Int(image.channels), bitDepth: Int(image.bit_depth),
                            pixels: pixels)
    }

    /// Encodes a `[C, H, W]` float32 tensor (C 1...4, values in 0...255, rounded and
    /// clamped) as an 8-bit PNG.
    public static func encodePNG(_ image: Tensor) throws -> Data {
        guard image.rank == 3, (1...4).contains(image.shape[0]), image.dtype == .float32 else {
            throw DataError.invalidArgument("encodePNG needs a [C, H, W] float32 tensor with C in 1...4, got \(image.shape)")
        }
        let (c, h, w) = (image.shape[0], image.shape[1], image.shape[2])
        var bytes = [UInt8](repeating: 0, count: c * h * w)
        let src = image.floats
        for p in 0..<(h * w) {
            for k in 0..<c {
                let v = src[k * h * w + p].rounded()
                bytes[p * c + k] = UInt8(v.isNaN ? 0 : min(255, max(0, v)))
            }
        }
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = braid_png_encode(bytes, Int32(w), Int32(h), Int32(c), 8, &out, &size,
                                      &message, message.count)
        guard status == 0, let out else {
            throw DataError.invalidArgument("PNG encoding failed: \(cMessage(message))")
        }
        defer { braid_free(out) }
        return Data(bytes: out, count: size)
    }

    /// Writes `image` (`[C, H, W]`, 0...255) as a PNG file through a temporary file and a rename.
    public static func writePNG(_ image: Tensor, to path: String) throws {
        let data = try encodePNG(image)
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).part")
        do {
            try data.write(to: tmp)
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(at: url) }
            try FileManager.default.moveItem(at: tmp, to: url)
        } catch {
            throw DataError.unreadable(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }
}

/// Inflates gzip data (one or more members).
func gunzip(_ data: Data) throws -> Data {
    var out: UnsafeMutablePointer<UInt8>?
    var size = 0
    var message = [CChar](repeating: 0, count: 256)
    let status = data.withUnsafeBytes { raw -> Int32 in
        guard let base = raw.bindMemory(to: UInt8.self).baseAddress else { return -1 }
        return braid_gunzip(base, raw.count, &out, &size, &message, message.count)
    }
    guard status == 0, let out else {
        throw DataError.badFormat(path: "", detail: cMessage(message))
    }
    defer { braid_free(out) }
    return Data(bytes: out, count: size)
}

/// The NUL-terminated text a C helper wrote into `buffer`.
func cMessage(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
