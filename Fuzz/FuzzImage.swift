// libFuzzer target: arbitrary bytes as a PNG or JPEG file. Built by tools/fuzz.
import BraidData
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    if let image = try? ImageCodec.decode(data: bytes, path: "fuzz-image") {
        precondition(image.pixels.count == image.width * image.height * image.channels)
        _ = image.tensor()
    }
    return 0
}
