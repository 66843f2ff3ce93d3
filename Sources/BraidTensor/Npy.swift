import Foundation

/// A problem reading or writing a .npy file, naming the file and what was expected.
public struct NpyError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// NumPy's .npy format (versions 1.0 to 3.0, C order, little-endian).
///
/// Reads float32, float64 and float16 into float32, and every integer type and bool into
/// Braid's Int64 storage with the matching dtype tag. Writes float32 as `<f4` and integer
/// dtypes as their declared NumPy type (`<i8`, `<i4`, `|u1`, `|b1`...).
public enum Npy {
    public static func read(path: String) throws -> Tensor {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NpyError(path: path, message: "cannot read file")
        }
        return try decode(data, path: path)
    }

    public static func decode(_ data: Data, path: String = "<memory>") throws -> Tensor {
        let bytes = [UInt8](data)
        func fail(_ m: String) -> NpyError { NpyError(path: path, message: m) }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else {
            throw fail("not a .npy file (missing \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerLen: Int
        let headerStart: Int
        if major == 1 {
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else if major == 2 || major == 3 {
            guard bytes.count >= 12 else { throw fail("truncated header") }
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        } else {
            throw fail("unsupported .npy version \(major)")
        }
        guard headerStart + headerLen <= bytes.count,
              let header = String(bytes: bytes[headerStart..<headerStart + headerLen], encoding: .utf8) else {
            throw fail("truncated or unreadable header")
        }
        let descr = try field("descr", in: header, path: path)
        let fortran = try field("fortran_order", in: header, path: path)
        if fortran.hasPrefix("True") { throw fail("Fortran-order arrays are not supported; save with C order") }
        let shapeText = try field("shape", in: header, path: path)
        let shape = try parseShape(shapeText, path: path)
        guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("invalid shape \(shape)") }
        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail("shape \(shape) has more elements than can be addressed") }
            count = p
        }
        let kind = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
        let (dtype, width, reader) = try elementReader(kind, path: path)
        let payload = headerStart + headerLen
        guard count <= (bytes.count - payload) / max(width, 1), count * width <= bytes.count - payload else {
            throw fail("declares \(count) elements of \(kind) but holds \(bytes.count - payload) data bytes")
        }
        let t = Tensor(zeros: shape, dtype: dtype)
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress!.advanced(by: payload)
            reader(base, t, count)
        }
        return t
    }

    public static func write(_ t: Tensor, path: String) throws {
        try writeAtomically(encode(t), to: path)
    }

    public static func encode(_ t: Tensor) -> Data {
        let descr: String
        switch t.dtype {
        case .float32: descr = "<f4"
        case .int64: descr = "<i8"
        case .int32: descr = "<i4"
        case .int16: descr = "<i2"
        case .int8: descr = "|i1"
        case .uint8: descr = "|u1"
        case .uint16: descr = "<u2"
        case .uint32: descr = "<u4"
        case .uint64: descr = "<u8"
        case .bool: descr = "|b1"
        }
        let shapeText = t.shape.isEmpty ? "()" : t.shape.count == 1 ? "(\(t.shape[0]),)"
            : "(" + t.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let len = header.utf8.count
        out.append(contentsOf: [UInt8(len & 0xff), UInt8(len >> 8)])
        out.append(contentsOf: Array(header.utf8))
        let n = t.count
        if t.dtype == .float32 {
            out.append(Data(bytes: t.floats, count: n * 4))
        } else {
            var raw = [UInt8]()
            raw.reserveCapacity(n * 8)
            for i in 0..<n {
                let v = t.ints[i]
                switch t.dtype {
                case .int64, .uint64: withUnsafeBytes(of: v.littleEndian) { raw += $0 }
                case .int32, .uint32: withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { raw += $0 }
                case .int16, .uint16: withUnsafeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian) { raw += $0 }
                default: raw.append(UInt8(truncatingIfNeeded: v))
                }
            }
            out.append(contentsOf: raw)
        }
        return out
    }

    private static func field(_ key: String, in header: String, path: String) throws -> String {
        guard let r = header.range(of: "'\(key)':") else {
            throw NpyError(path: path, message: "header has no '\(key)'")
        }
        var rest = header[r.upperBound...].drop(while: { $0 == " " })
        if rest.first == "(" {
            guard let close = rest.firstIndex(of: ")") else {
                throw NpyError(path: path, message: "unterminated '\(key)'")
            }
            return String(rest[...close])
        }
        if let end = rest.firstIndex(where: { $0 == "," || $0 == "}" }) { rest = rest[..<end] }
        return rest.trimmingCharacters(in: .whitespaces)
    }

    private static func parseShape(_ text: String, path: String) throws -> [Int] {
        let inner = text.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
        if inner.isEmpty { return [] }
        return try inner.split(separator: ",").compactMap { part -> Int? in
            let s = part.trimmingCharacters(in: .whitespaces)
            if s.isEmpty { return nil }
            guard let v = Int(s.replacingOccurrences(of: "L", with: "")) else {
                throw NpyError(path: path, message: "bad shape entry '\(s)'")
            }
            return v
        }
    }

    private typealias Reader = (UnsafeRawPointer, Tensor, Int) -> Void

    private static func elementReader(_ kind: String, path: String) throws -> (DType, Int, Reader) {
        func ints<T: FixedWidthInteger>(_: T.Type, _ dt: DType) -> (DType, Int, Reader) {
            (dt, MemoryLayout<T>.size, { src, t, n in
                for i in 0..<n { t.ints[i] = Int64(truncatingIfNeeded: T(littleEndian: src.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))) }
            })
        }
        switch kind {
        case "<f4", "=f4":
            return (.float32, 4, { src, t, n in
                for i in 0..<n { t.floats[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
            })
        case "<f8", "=f8":
            return (.float32, 8, { src, t, n in
                for i in 0..<n { t.floats[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))) }
            })
        case "<f2", "=f2":
            return (.float32, 2, { src, t, n in
                for i in 0..<n { t.floats[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
            })
        case "<i8", "=i8": return ints(Int64.self, .int64)
        case "<i4", "=i4": return ints(Int32.self, .int32)
        case "<i2", "=i2": return ints(Int16.self, .int16)
        case "|i1", "<i1": return ints(Int8.self, .int8)
        case "|u1", "<u1": return ints(UInt8.self, .uint8)
        case "<u2", "=u2": return ints(UInt16.self, .uint16)
        case "<u4", "=u4": return ints(UInt32.self, .uint32)
        case "<u8", "=u8": return ints(UInt64.self, .uint64)
        case "|b1": return ints(UInt8.self, .bool)
        default:
            throw NpyError(path: path, message: "unsupported dtype '\(kind)' (expected float32/64/16, an integer type or bool, little-endian)")
        }
    }
}

/// IEEE 754 half-precision bits to Float.
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = Int((h >> 10) & 0x1f)
    let mant = UInt32(h & 0x3ff)
    if exp == 0 {
        let v = Float(mant) * Float(sign == 0 ? 1 : -1) / Float(1 << 24)
        return v
    }
    if exp == 31 {
        return Float(bitPattern: sign | 0x7f80_0000 | (mant << 13))
    }
    return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
}

/// Writes `data` to `path` so that a crash or a failed write never leaves a half-written
/// file: the bytes go to a temporary file beside `path`, which is flushed to disk (`fsync`),
/// renamed over `path`, and then the directory is flushed so the rename itself survives a
/// power loss. On any failure the temporary file is removed and a previous file at `path`
/// is left as it was.
///
/// - Throws: `NpyError` naming `path` and the system's reason (read-only file system, no
///   space left on device...).
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    let tmp = dir + "/.\(url.lastPathComponent).tmp-\(getpid())"
    func failure(_ step: String, _ code: Int32) -> NpyError {
        NpyError(path: path, message: "cannot write (\(step)): \(String(cString: strerror(code)))")
    }
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw failure("create \(tmp)", errno) }
    var closed = false
    var renamed = false
    defer {
        if !closed { close(fd) }
        if !renamed { unlink(tmp) }
    }
    try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("write", errno)
            }
            done += n
        }
    }
    guard fsync(fd) == 0 else { throw failure("fsync", errno) }
    closed = true
    guard close(fd) == 0 else { throw failure("close", errno) }
    guard rename(tmp, path) == 0 else { throw failure("rename into place", errno) }
    renamed = true
    try fsyncDirectory(dir, failure)
}

/// Flushing the directory makes a rename durable; some file systems refuse fsync on a
/// directory (EINVAL), which costs durability there but not atomicity.
private func fsyncDirectory(_ dir: String, _ failure: (String, Int32) -> NpyError) throws {
    let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard dfd >= 0 else { return }
    let status = fsync(dfd)
    let code = errno
    close(dfd)
    if status != 0 && code != EINVAL { throw failure("fsync directory \(dir)", code) }
}

/// Makes a finished temporary file durable and moves it over `path`: fsync of the file,
/// rename(2) (atomic, replacing any old file), fsync of the directory. For writers that
/// produce their file through a library (HDF5, zip) rather than from one buffer.
///
/// - Throws: `NpyError` naming `path` and the step that failed; `tmp` is left for the
///   caller to remove.
public func commitTemporaryFile(_ tmp: String, to path: String) throws {
    func failure(_ step: String, _ code: Int32) -> NpyError {
        NpyError(path: path, message: "cannot write (\(step)): \(String(cString: strerror(code)))")
    }
    let fd = open(tmp, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw failure("open \(tmp)", errno) }
    let status = fsync(fd)
    let code = errno
    close(fd)
    guard status == 0 else { throw failure("fsync", code) }
    guard rename(tmp, path) == 0 else { throw failure("rename into place", errno) }
    try fsyncDirectory(URL(fileURLWithPath: path).deletingLastPathComponent().path, failure)
}
