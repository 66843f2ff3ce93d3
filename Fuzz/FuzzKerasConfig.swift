// libFuzzer target: a Keras model JSON config (`model.to_json()`, a `.keras` zip's
// config.json) imported against a fixture's weights. The first byte picks the weights file
// from BRAID_FUZZ_WEIGHTS (colon-separated, set by tools/fuzz); the rest is the config.
import BraidKeras
import Foundation

private let weights: [String] = {
    let list = (ProcessInfo.processInfo.environment["BRAID_FUZZ_WEIGHTS"] ?? "")
        .split(separator: ":").map(String.init)
    guard !list.isEmpty, list.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else {
        fatalError("set BRAID_FUZZ_WEIGHTS to HDF5 weights files separated by ':' (tools/fuzz does)")
    }
    return list
}()

private let configPath: String = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let dir = "\(base)/braid-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return "\(dir)/config.json"
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let weightsPath = weights[Int(data[0]) % weights.count]
    _ = FileManager.default.createFile(atPath: configPath, contents: Data(bytes: data + 1, count: size - 1))
    _ = try? importKeras(configPath: configPath, weightsPath: weightsPath)
    return 0
}
