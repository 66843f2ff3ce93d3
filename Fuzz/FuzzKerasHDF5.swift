// libFuzzer target: arbitrary bytes written to a file and imported as a Keras model
// (HDF5 .h5, or a .keras zip when the bytes start with a zip header). Built by tools/fuzz.
import BraidKeras
import Foundation

private let path = fuzzScratchPath("model.h5")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size))
    _ = try? importKeras(path: path)
    return 0
}

/// A file in a per-process scratch directory (in memory when /dev/shm exists).
func fuzzScratchPath(_ name: String) -> String {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let dir = "\(base)/braid-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return "\(dir)/\(name)"
}
