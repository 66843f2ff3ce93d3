import BraidTensor
import Foundation

// TensorProto <-> Tensor. Every count read from the file is checked against the bytes that
// are actually there before anything is allocated.

extension ONNXDataType {
    /// The Braid element type this ONNX type is held as, nil when Braid cannot hold it.
    var braidType: DType? {
        switch self {
        case .float, .float16, .double, .bfloat16: return .float32
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float4e2m1, .float8e8m0: return .float32
        case .int4, .int2: return .int8
        case .uint4, .uint2: return .uint8
        case .int64: return .int64
        case .int32: return .int32
        case .int16: return .int16
        case .int8: return .int8
        case .uint8: return .uint8
        case .uint16: return .uint16
        case .uint32: return .uint32
        case .uint64: return .uint64
        case .bool: return .bool
        case .undefined, .string, .complex64, .complex128: return nil
        }
    }

    /// Bytes per element in `raw_data`.
    var rawWidth: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0: return 1
        case .uint4, .int4, .float4e2m1, .uint2, .int2: return 0
        case .uint16, .int16, .float16, .bfloat16: return 2
        case .float, .int32, .uint32: return 4
        case .int64, .uint64, .double, .complex64: return 8
        case .complex128: return 16
        case .undefined, .string: return 0
        }
    }

    /// The ONNX type Braid writes for a Braid element type.
    init(_ d: DType) {
        switch d {
        case .float32: self = .float
        case .int64: self = .int64
        case .int32: self = .int32
        case .int16: self = .int16
        case .int8: self = .int8
        case .uint8: self = .uint8
        case .uint16: self = .uint16
        case .uint32: self = .uint32
        case .uint64: self = .uint64
        case .bool: self = .bool
        }
    }

    var name: String { String(describing: self) }
}

/// The Braid element type for an ONNX element-type code, or an error naming the value.
func braidType(code: Int32, subject: String) throws -> DType {
    guard let t = ONNXDataType(rawValue: code) else {
        throw ONNXError(subject: subject, "unsupported element type code \(code)")
    }
    if t == .string { throw ONNXError(subject: subject, "string tensors are not supported") }
    guard let d = t.braidType else {
        throw ONNXError(subject: subject, "unsupported element type \(t.name)")
    }
    return d
}

extension ONNXTensorProto {
    /// The tensor's elements converted to Braid storage: float16, bfloat16 and float64 become
    /// float32; integer types and bool become Int64 storage tagged with their type.
    ///
    /// `baseDirectory` is the model's directory, where external data files are looked up; nil
    /// makes external data an error.
    public func tensor(baseDirectory: String?) throws -> Tensor {
        let subject = "tensor '\(name)'"
        if segment != nil { throw ONNXError(subject: subject, "segmented tensors are not supported") }
        guard let type = ONNXDataType(rawValue: dataType), type != .undefined else {
            throw ONNXError(subject: subject, "unsupported or missing element type code \(dataType)")
        }
        let dtype = try braidType(code: dataType, subject: subject)
        var count = 1
        for d in dims {
            guard d >= 0 else { throw ONNXError(subject: subject, "negative dimension in \(dims)") }
            let (p, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, p <= Int.max / 16 else {
                throw ONNXError(subject: subject, "dimensions \(dims) are too large")
            }
            count = p
        }
        let shape = dims.map { Int($0) }
        let rawBytes = type.narrowFormat.map { (count * $0.bits + 7) / 8 } ?? count * type.rawWidth

        if isExternal {
            let data = try externalBytes(expected: rawBytes, baseDirectory: baseDirectory, subject: subject)
            return Self.fromRaw(data, type: type, dtype: dtype, shape: shape)
        }
        if let rawData {
            guard rawData.count == rawBytes else {
                throw ONNXError(subject: subject, rawData.count < rawBytes
                    ? "shape \(dims) needs \(rawBytes) bytes of \(type.name) but raw_data holds only \(rawData.count)"
                    : "raw_data holds \(rawData.count) bytes, shape \(dims) of \(type.name) needs \(rawBytes)")
            }
            return Self.fromRaw(rawData, type: type, dtype: dtype, shape: shape)
        }
        return try fromTyped(type: type, dtype: dtype, shape: shape, count: count, subject: subject)
    }

    private static func fromRaw(_ data: Data, type: ONNXDataType, dtype: DType, shape: [Int]) -> Tensor {
        let t = Tensor(zeros: shape, dtype: dtype)
        let n = t.count
        data.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
            guard n > 0, let s = src.baseAddress else { return }
            func each<T: FixedWidthInteger>(_: T.Type, _ f: (T) -> Int64) {
                let d = t.ints
                for i in 0..<n { d[i] = f(T(littleEndian: s.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))) }
            }
            switch type {
            case .float:
                let d = t.floats
                for i in 0..<n { d[i] = Float(bitPattern: UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .float16:
                let d = t.floats
                for i in 0..<n { d[i] = halfToFloat(UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .bfloat16:
                let d = t.floats
                for i in 0..<n { d[i] = Float(bitPattern: UInt32(UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            case .double:
                let d = t.floats
                for i in 0..<n { d[i] = Float(Double(bitPattern: UInt64(littleEndian: s.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .int8: each(Int8.self) { Int64($0) }
            case .uint8: each(UInt8.self) { Int64($0) }
            case .bool: each(UInt8.self) { $0 != 0 ? 1 : 0 }
            case .int16: each(Int16.self) { Int64($0) }
            case .uint16: each(UInt16.self) { Int64($0) }
            case .int32: each(Int32.self) { Int64($0) }
            case .uint32: each(UInt32.self) { Int64($0) }
            case .int64: each(Int64.self) { $0 }
            case .uint64: each(UInt64.self) { Int64(bitPattern: $0) }
            case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float4e2m1, .float8e8m0,
                 .uint4, .int4, .uint2, .int2:
                unpack(UnsafeRawBufferPointer(rebasing: src[0...]), type.narrowFormat!, into: t)
            case .undefined, .string, .complex64, .complex128: break
            }
        }
        return t
    }

    private func fromTyped(type: ONNXDataType, dtype: DType, shape: [Int], count: Int,
                           subject: String) throws -> Tensor {
        func check(_ n: Int, _ field: String) throws {
            guard n == count else {
                throw ONNXError(subject: subject, n < count
                    ? "shape \(dims) needs \(count) elements but \(field) holds only \(n)"
                    : "\(field) holds \(n) elements, shape \(dims) needs \(count)")
            }
        }
        // The element count is checked against the field before anything is allocated.
        switch type {
        case .float: try check(floatData.count, "float_data")
        case .double: try check(doubleData.count, "double_data")
        case .float16, .bfloat16, .int32, .int16, .int8, .uint16, .uint8, .bool:
            try check(int32Data.count, "int32_data")
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float4e2m1, .float8e8m0,
             .uint4, .int4, .uint2, .int2:
            // One int32 per byte of the packed form.
            let f = type.narrowFormat!
            guard int32Data.count == (count * f.bits + 7) / 8 else {
                throw ONNXError(subject: subject, "int32_data holds \(int32Data.count) bytes, shape \(dims) of \(type.name) needs \((count * f.bits + 7) / 8)")
            }
            let bytes = Data(int32Data.map { UInt8(truncatingIfNeeded: $0) })
            let t = Tensor(zeros: shape, dtype: dtype)
            bytes.withUnsafeBytes { unpack($0, f, into: t) }
            return t
        case .int64: try check(int64Data.count, "int64_data")
        case .uint32, .uint64: try check(uint64Data.count, "uint64_data")
        case .undefined, .string, .complex64, .complex128:
            throw ONNXError(subject: subject, "unsupported element type \(type.name)")
        }
        let t = Tensor(zeros: shape, dtype: dtype)
        switch type {
        case .float:
            for i in 0..<count { t.floats[i] = floatData[i] }
        case .double:
            for i in 0..<count { t.floats[i] = Float(doubleData[i]) }
        case .float16, .bfloat16:
            for i in 0..<count {
                let bits = UInt16(truncatingIfNeeded: int32Data[i])
                t.floats[i] = type == .float16 ? halfToFloat(bits) : Float(bitPattern: UInt32(bits) << 16)
            }
        case .int32, .int16, .int8, .uint16, .uint8, .bool:
            for i in 0..<count {
                t.ints[i] = type == .bool ? (int32Data[i] != 0 ? 1 : 0) : Int64(int32Data[i])
            }
        case .int64:
            for i in 0..<count { t.ints[i] = int64Data[i] }
        case .uint32, .uint64:
            for i in 0..<count { t.ints[i] = Int64(bitPattern: uint64Data[i]) }
        case .undefined, .string, .complex64, .complex128, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2,
             .float8e5m2fnuz, .float4e2m1, .float8e8m0, .uint4, .int4, .uint2, .int2:
            throw ONNXError(subject: subject, "unsupported element type \(type.name)")
        }
        return t
    }

    /// Reads `expected` bytes of external data named by `external_data`.
    private func externalBytes(expected: Int, baseDirectory: String?, subject: String) throws -> Data {
        var location: String?
        var offset = 0
        var length: Int?
        for (k, v) in externalData {
            switch k {
            case "location": location = v
            case "offset", "length":
                guard let n = Int(v), n >= 0 else {
                    throw ONNXError(subject: subject, "external data \(k) '\(v)' is not a non-negative integer")
                }
                if k == "offset" { offset = n } else { length = n }
            default: break
            }
        }
        guard let location, !location.isEmpty else {
            throw ONNXError(subject: subject, "external data has no location")
        }
        let parts = location.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        guard !location.hasPrefix("/"), !location.hasPrefix("\\"), !location.contains(":"),
              !parts.contains("..") else {
            throw ONNXError(subject: subject, "external data location '\(location)' leaves the model's directory")
        }
        guard let baseDirectory else {
            throw ONNXError(subject: subject, "external data '\(location)' needs the model's directory (read the model from a file)")
        }
        if let length, length != expected {
            throw ONNXError(subject: subject, "external data length \(length) does not match the \(expected) bytes its shape \(dims) needs")
        }
        let path = (baseDirectory as NSString).appendingPathComponent(location)
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ONNXError(subject: subject, "external data file '\(path)' cannot be opened")
        }
        defer { try? handle.close() }
        let size = Int((try? handle.seekToEnd()) ?? 0)
        guard offset <= size, size - offset >= expected else {
            throw ONNXError(subject: subject, "external data file '\(path)' holds \(size) bytes; \(expected) needed from offset \(offset)")
        }
        try handle.seek(toOffset: UInt64(offset))
        let data = try handle.read(upToCount: expected) ?? Data()
        guard data.count == expected else {
            throw ONNXError(subject: subject, "external data file '\(path)' ended after \(data.count) of \(expected) bytes")
        }
        return data
    }

    /// A TensorProto holding `tensor` as little-endian `raw_data` in its declared type.
    public init(_ tensor: Tensor, name: String) {
        self.init()
        self.name = name
        dims = tensor.shape.map { Int64($0) }
        let type = ONNXDataType(tensor.dtype)
        dataType = type.rawValue
        let n = tensor.count
        var data = Data(count: n * type.rawWidth)
        data.withUnsafeMutableBytes { (dst: UnsafeMutableRawBufferPointer) in
            guard n > 0, let d = dst.baseAddress else { return }
            func each<T: FixedWidthInteger>(_: T.Type) {
                for i in 0..<n {
                    d.storeBytes(of: T(truncatingIfNeeded: tensor.ints[i]).littleEndian,
                                 toByteOffset: i * MemoryLayout<T>.size, as: T.self)
                }
            }
            switch tensor.dtype {
            case .float32:
                for i in 0..<n { d.storeBytes(of: tensor.floats[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            case .int64, .uint64: each(Int64.self)
            case .int32, .uint32: each(Int32.self)
            case .int16, .uint16: each(Int16.self)
            case .int8, .uint8: each(Int8.self)
            case .bool:
                for i in 0..<n { d.storeBytes(of: UInt8(tensor.ints[i] != 0 ? 1 : 0), toByteOffset: i, as: UInt8.self) }
            }
        }
        rawData = data
    }
}

/// IEEE 754 half-precision bits to Float (exact).
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = Int((h >> 10) & 0x1F)
    let frac = UInt32(h & 0x3FF)
    if exp == 0 {
        let magnitude = Float(frac) * 0x1p-24
        return sign != 0 ? -magnitude : magnitude
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (frac << 13)) }
    return Float(bitPattern: sign | UInt32(exp + 112) << 23 | (frac << 13))
}

/// Reads a standalone serialized `TensorProto` (ONNX test data such as `input_0.pb`).
/// Throws `ONNXError` naming the file for unreadable, corrupt or unsupported tensors.
public func readTensorProto(path: String) throws -> Tensor {
    try readTensorProtoNamed(path: path).tensor
}

/// Like `readTensorProto(path:)`, also returning the name stored in the file.
public func readTensorProtoNamed(path: String) throws -> (name: String, tensor: Tensor) {
    do {
        let data = try readFile(path)
        let proto = try data.withUnsafeBytes { try ONNXTensorProto(serialized: $0) }
        let dir = (path as NSString).deletingLastPathComponent
        return (proto.name, try proto.tensor(baseDirectory: dir.isEmpty ? "." : dir))
    } catch let e as ONNXError {
        throw e.inFile(path)
    }
}

/// Writes `tensor` as a serialized `TensorProto` (via a temporary file, then a rename).
public func writeTensorProto(_ tensor: Tensor, name: String = "", to path: String) throws {
    try writeFileAtomically(Data(ONNXTensorProto(tensor, name: name).serialized()), to: path)
}

func readFile(_ path: String) throws -> Data {
    guard FileManager.default.fileExists(atPath: path) else {
        throw ONNXError(file: path, "file not found")
    }
    do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw ONNXError(file: path, "cannot read: \(error.localizedDescription)")
    }
}

func writeFileAtomically(_ data: Data, to path: String) throws {
    let tmp = path + ".tmp-\(getpid())"
    do {
        try data.write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else { throw CocoaError(.fileWriteUnknown) }
    } catch {
        try? FileManager.default.removeItem(atPath: tmp)
        throw ONNXError(file: path, "cannot write: \(error.localizedDescription)")
    }
}

extension ONNXDataType {
    /// The narrow format of the 8-, 4- and 2-bit types, nil for the others.
    var narrowFormat: NarrowFormat? {
        switch self {
        case .float8e4m3fn: return .float8e4m3fn
        case .float8e4m3fnuz: return .float8e4m3fnuz
        case .float8e5m2: return .float8e5m2
        case .float8e5m2fnuz: return .float8e5m2fnuz
        case .float4e2m1: return .float4e2m1
        case .float8e8m0: return .float8e8m0(.up)
        case .uint4: return .uint4
        case .int4: return .int4
        case .uint2: return .uint2
        case .int2: return .int2
        default: return nil
        }
    }
}

/// Elements of a narrow format packed little-end first (two 4-bit or four 2-bit elements per
/// byte), decoded into `t` (float32 storage for floats, Int64 for integers).
private func unpack(_ bytes: UnsafeRawBufferPointer, _ f: NarrowFormat, into t: Tensor) {
    let n = t.count, bits = f.bits, perByte = 8 / bits, mask = UInt32((1 << bits) - 1)
    for i in 0..<n {
        let byte = i / perByte
        guard byte < bytes.count else { return }
        let raw = (UInt32(bytes[byte]) >> UInt32((i % perByte) * bits)) & mask
        let v = f.decode(raw)
        if f.isInteger { t.ints[i] = Int64(v) } else { t.floats[i] = v }
    }
}
