import BraidTensor
import Foundation

/// Where one rank of a job keeps its run directory.
public struct RankRunDirectories: Sendable, Equatable {
    /// The directory to write the run into (nil when the caller gave none).
    public var out: String?
    /// The directory to resume from (nil when not resuming).
    public var resume: String?
    /// This rank's private scratch directory, which the caller removes at the end
    /// (`removeScratch`); nil on rank 0.
    public var scratch: String?

    /// Removes the scratch directory, if any.
    public func removeScratch() {
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
    }
}

extension ProcessGroup {
    /// The run directories this rank works in: on rank 0 `out` and `resume` unchanged; on the
    /// other ranks a private scratch directory, which for a resumed run receives from rank 0
    /// the small files of `resume` (its record, search state and checkpoint: the `.json` files
    /// and `checkpoint.bin`), so that no rank needs to see rank 0's disk. Collective: every
    /// rank calls it.
    public func runDirectories(out: String?, resume: String?) throws -> RankRunDirectories {
        var files: [String: Data] = [:]
        if rank == 0, let resume {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: resume)) ?? [] {
                let path = resume + "/" + name
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                      name.hasSuffix(".json") || name == "checkpoint.bin" else { continue }
                files[name] = FileManager.default.contents(atPath: path)
            }
        }
        if resume != nil { files = try broadcast(files) }
        guard rank > 0 else { return RankRunDirectories(out: out, resume: resume, scratch: nil) }
        let dir = NSTemporaryDirectory() + "braid-rank\(rank)-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, data) in files { try writeAtomically(data, to: dir + "/" + name) }
        return RankRunDirectories(out: out == nil ? nil : dir, resume: resume == nil ? nil : dir, scratch: dir)
    }
}
