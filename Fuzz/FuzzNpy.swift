// libFuzzer target: arbitrary bytes as a .npy file. Built by tools/fuzz.
import BraidTensor
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    if let t = try? Npy.decode(bytes, path: "fuzz.npy") {
        // A decoded tensor must re-encode and read back to the same shape.
        let again = try? Npy.decode(Npy.encode(t))
        precondition(again?.shape == t.shape, "npy round trip changed the shape")
    }
    return 0
}
