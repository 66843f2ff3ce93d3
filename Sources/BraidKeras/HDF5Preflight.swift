import Foundation

/// Checks, before libhdf5 sees a file, the structures on which libhdf5 (1.10, as shipped by
/// Debian) loops for ever or reads out of bounds when they are corrupt.
///
/// Global heap collections ("GCOL") hold variable-length strings such as Keras's
/// `model_config`. libhdf5 walks a collection's objects by their declared sizes without
/// checking them: a free-space object (index 0) of size 0 never advances the walk, and an
/// object whose size runs past its collection is later copied out with that size. Every
/// collection found in the file is walked here the same way, and one with such an object is
/// refused.
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
                // "GCOL", version 1, three reserved zero bytes.
                guard raw[at + 1] == 0x43, raw[at + 2] == 0x4F, raw[at + 3] == 0x4C, raw[at + 4] == 1,
                      raw[at + 5] == 0, raw[at + 6] == 0, raw[at + 7] == 0 else { continue }
                if let problem = problem(raw, collection: at) {
                    throw KerasError(file: path, "corrupt HDF5 global heap at byte \(at): \(problem)")
                }
            }
        }
    }

    /// What is wrong with the collection at `at`, nil when libhdf5 can walk it safely.
    private static func problem(_ raw: UnsafeRawBufferPointer, collection at: Int) -> String? {
        let size = Int(clamping: raw.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self).littleEndian)
        let end = at + min(size, raw.count - at)
        var p = at + 16
        while p + objectHeader <= end {
            let index = raw.loadUnaligned(fromByteOffset: p, as: UInt16.self).littleEndian
            let objectSize = Int(clamping: raw.loadUnaligned(fromByteOffset: p + 8, as: UInt64.self).littleEndian)
            if index == 0 {
                // The free space, header included; it runs to the end of the collection.
                if objectSize == 0 { return "free-space object at byte \(p) has size 0 (libhdf5 would loop for ever)" }
                if objectSize > end - p { return nil }
                p += objectSize
            } else {
                guard objectSize <= end - p - objectHeader else {
                    return "object \(index) at byte \(p) declares \(objectSize) bytes, past the collection's end at byte \(end)"
                }
                p += objectHeader + (objectSize + 7) / 8 * 8
            }
        }
        return nil
    }
}
