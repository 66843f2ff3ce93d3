import BraidHDF5
import BraidTensor
import Foundation

/// A training snapshot: named tensors (parameters, running statistics, optimiser state)
/// and string facts (epoch, step counts, history: what an exact resume needs besides the
/// run's seed, from which every epoch's shuffling is derived).
///
/// The file is HDF5, so `h5ls -r` and h5py read it:
/// - root attributes `format` = `braid-checkpoint` and `format_version` = `1`;
/// - group `tensors`: one dataset per tensor at the tensor's name (`m0/opt/conv.weight.v`
///   becomes groups `m0`, `opt` and dataset `conv.weight.v`), float32 stored as IEEE
///   float32, every other dtype as int64 (Braid's storage); each dataset carries attributes
///   `name` (the exact tensor name) and `dtype` (`DType.rawValue`);
/// - group `facts`: one UTF-8 string attribute per fact.
///
/// `save` writes to a temporary name beside `path` and renames it (`writeAtomically`), so a
/// crash never leaves a half-written checkpoint. `load` checks every dataset's type, rank and size against the
/// file before allocating, and every error names the file.
public struct Checkpoint {
    public var tensors: [String: Tensor]
    public var facts: [String: String]

    public init(tensors: [String: Tensor], facts: [String: String]) {
        self.tensors = tensors; self.facts = facts
    }

    /// The value of the root `format` attribute.
    public static let format = "braid-checkpoint"
    /// The layout version this build writes and reads.
    public static let formatVersion = "1"

    /// Writes the checkpoint to `path` (atomically).
    ///
    /// - Throws: `TrainingError` naming `path` and the reason when the file cannot be written.
    public func save(to path: String) throws {
        // libhdf5 builds the file in memory; the bytes then go through `writeAtomically`,
        // whose errors carry the system's reason (no space left, read-only file system).
        let image = try hdf5Lock.withLock { try hdf5Image(reportedAs: path) }
        do { try writeAtomically(image, to: path) } catch let e as NpyError {
            throw TrainingError(e.description)
        }
    }

    /// Reads a checkpoint written by `save`.
    ///
    /// - Throws: `TrainingError` naming `path` when the file is missing, not HDF5, truncated,
    ///   not a Braid checkpoint, of another layout version, or holds a tensor whose type,
    ///   shape or size is inconsistent.
    public static func load(from path: String) throws -> Checkpoint {
        try hdf5Lock.withLock { try readHDF5(from: path) }
    }
}

/// A training problem a user can act on.
public struct TrainingError: SettingError, Sendable {
    public var description: String
    /// The training setting that would fix it (`lr`, `onNonfinite`, `freeze`), or nil.
    public var setting: String?
    public init(_ message: String, setting: String? = nil) { description = message; self.setting = setting }
}
