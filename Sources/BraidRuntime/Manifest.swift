import BraidData
import Foundation

/// Loads Models/manifest from `path`, or from the repository's copy beside the working
/// directory when `path` is nil.
public func loadManifest(path: String?) throws -> [ModelManifest] {
    let candidates = path.map { [$0] } ?? [
        ProcessInfo.processInfo.environment["BRAID_MANIFEST"],
        FileManager.default.currentDirectoryPath + "/Models/manifest",
    ].compactMap { $0 }
    for p in candidates where FileManager.default.fileExists(atPath: p) {
        return try ModelManifest.load(path: p)
    }
    if let path { throw ModelLoadError("\(path): no such manifest") }
    return []
}
