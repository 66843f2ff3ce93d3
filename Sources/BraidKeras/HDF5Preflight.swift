import Foundation

/// Checks, before libhdf5 sees a file, the structures on which libhdf5 (1.10, as shipped by
/// Debian) loops for ever when they are corrupt.
///
/// Global heap collections ("GCOL") hold variable-length strings such as Keras's
/// `model_config`. libhdf5 walks a collection's objects by their declared sizes; a free-space
/// object (index 0) declaring size 0 never advances the walk. Every collection found in the
/// file is walked here the same way, and one that would not advance is refused.
enum HDF5Preflight {
    /// Bytes in a global heap object header (index, reference count, reserved, size) with
    /// 8-byte lengths, which is what Keras and h5py write.
    static let objectHeader = 16

    static func check(path: String) throws {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else { return }
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            guard let base = raw.baseAddress, raw.count >= 16 else { return }
            var from = 0
            while from + 16 <= raw.count {
                guard let hit = memchr(base + from, 0x47 /* G */, raw.count - from - 15) else { return }
                let at = base.distance(to: UnsafeRawPointer(hit))
                from = at + 1
                guard raw[at + 1] == 0x43, raw[at + 2] == 0x4F, raw[at + 3] == 0x4C else { continue }
                if let offset = stallingObject(raw, collection: at) {
                    throw KerasError(file: path, "corrupt HDF5 global heap at byte \(at): free-space object at byte \(offset) has size 0 (libhdf5 would loop for ever)")
                }
            }
        }
    }

    /// The offset of an object on which libhdf5's walk of the collection at `at` would stop
    /// advancing, nil when the walk ends (or the bytes are not a version 1 collection).
    private static func stallingObject(_ raw: UnsafeRawBufferPointer, collection at: Int) -> Int? {
        guard at + 16 <= raw.count, raw[at + 4] == 1 else { return nil }
        let size = Int(clamping: raw.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self).littleEndian)
        let end = at + min(size, raw.count - at)
        var p = at + 16
        while p + objectHeader <= end {
            let index = raw.loadUnaligned(fromByteOffset: p, as: UInt16.self).littleEndian
            let objectSize = Int(clamping: raw.loadUnaligned(fromByteOffset: p + 8, as: UInt64.self).littleEndian)
            if index == 0 {
                if objectSize == 0 { return p }
                p += min(objectSize, end)
            } else {
                let (aligned, overflow) = objectSize.addingReportingOverflow(7)
                if overflow { return nil }
                p += objectHeader + aligned / 8 * 8
            }
        }
        return nil
    }
}
