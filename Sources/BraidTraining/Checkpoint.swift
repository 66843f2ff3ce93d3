import BraidTensor
import Foundation

/// A training snapshot: named tensors (parameters, running statistics, optimiser state)
/// and string facts (epoch, step count, configuration).
///
/// The file is `BRAIDCK1`, an 8-byte little-endian header length, a JSON header listing
/// each tensor's name, dtype, shape and byte offset, then the tensors' bytes. It is written
/// to a temporary name and renamed, so a crash never leaves a half-written checkpoint, and
/// every offset and size is checked against the file before anything is allocated.
public struct Checkpoint {
    public var tensors: [String: Tensor]
    public var facts: [String: String]

    public init(tensors: [String: Tensor], facts: [String: String]) {
        self.tensors = tensors; self.facts = facts
    }

    static let magic = Array("BRAIDCK1".utf8)

    public func save(to path: String) throws {
        var entries: [[String: Any]] = []
        var offset = 0
        for name in tensors.keys.sorted() {
            let t = tensors[name]!
            let bytes = t.count * t.dtype.storageStride
            entries.append(["name": name, "dtype": t.dtype.rawValue, "shape": t.shape, "offset": offset, "bytes": bytes])
            offset += bytes
        }
        let header = try JSONSerialization.data(withJSONObject: ["tensors": entries, "facts": facts], options: [.sortedKeys])
        var data = Data(Self.magic)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(header)
        data.reserveCapacity(data.count + offset)
        for name in tensors.keys.sorted() {
            let t = tensors[name]!
            data.append(Data(bytes: t.buffer.raw, count: t.count * t.dtype.storageStride))
        }
        try writeAtomically(data, to: path)
    }

    public static func load(from path: String) throws -> Checkpoint {
        func bad(_ m: String) -> TrainingError { TrainingError("\(path): not a valid Braid checkpoint (\(m))") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainingError("\(path): cannot read checkpoint")
        }
        guard data.count >= 16, Array(data.prefix(8)) == magic else { throw bad("bad magic") }
        let headerLen = data.subdata(in: 8..<16).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard headerLen >= 0, headerLen <= data.count - 16 else { throw bad("header length \(headerLen) exceeds the file") }
        guard let obj = try? JSONSerialization.jsonObject(with: data.subdata(in: 16..<(16 + headerLen))) as? [String: Any],
              let entries = obj["tensors"] as? [[String: Any]], let facts = obj["facts"] as? [String: String]
        else { throw bad("unreadable header") }
        let base = 16 + headerLen
        var tensors: [String: Tensor] = [:]
        for e in entries {
            guard let name = e["name"] as? String, let dt = (e["dtype"] as? String).flatMap(DType.init(rawValue:)),
                  let shape = e["shape"] as? [Int], let offset = e["offset"] as? Int, let bytes = e["bytes"] as? Int,
                  shape.allSatisfy({ $0 >= 0 && $0 < 1 << 31 }), offset >= 0, bytes >= 0,
                  offset <= data.count - base, bytes <= data.count - base - offset
            else { throw bad("tensor entry out of range") }
            let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
            guard count * dt.storageStride == bytes else { throw bad("tensor '\(name)' size mismatch") }
            let t = Tensor(zeros: shape, dtype: dt)
            data.withUnsafeBytes { raw in
                t.buffer.raw.copyMemory(from: raw.baseAddress!.advanced(by: base + offset), byteCount: bytes)
            }
            tensors[name] = t
        }
        return Checkpoint(tensors: tensors, facts: facts)
    }
}

/// A training problem a user can act on.
public struct TrainingError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ message: String) { description = message }
}
