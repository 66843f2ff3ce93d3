import Foundation

// Braid's own protobuf encoder for the ONNX messages it writes. Field numbers are those of
// Formats/onnx/onnx.proto. Repeated numbers are packed only where ONNX's schema declares
// `[packed = true]` (TensorProto's data fields), so Braid writes the bytes onnx itself writes.

struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: Int, _ wire: UInt64) { varint(UInt64(field) << 3 | wire) }

    mutating func int(_ field: Int, _ v: Int64) { tag(field, 0); varint(UInt64(bitPattern: v)) }

    mutating func float(_ field: Int, _ v: Float) {
        tag(field, 5)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func bytesField(_ field: Int, _ b: some Collection<UInt8>) {
        tag(field, 2); varint(UInt64(b.count)); bytes.append(contentsOf: b)
    }

    mutating func string(_ field: Int, _ s: String) { bytesField(field, Array(s.utf8)) }

    /// A string field skipped when empty (proto2 optional with the empty default).
    mutating func optionalString(_ field: Int, _ s: String) { if !s.isEmpty { string(field, s) } }

    mutating func message(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
        var w = ProtoWriter()
        body(&w)
        bytesField(field, w.bytes)
    }

    mutating func packedVarints<S: Sequence>(_ field: Int, _ values: S) where S.Element == UInt64 {
        var w = ProtoWriter()
        for v in values { w.varint(v) }
        if !w.bytes.isEmpty { bytesField(field, w.bytes) }
    }

    mutating func packedFixed<T: FixedWidthInteger>(_ field: Int, _ values: [T]) {
        guard !values.isEmpty else { return }
        var b: [UInt8] = []
        b.reserveCapacity(values.count * MemoryLayout<T>.size)
        for v in values { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
        bytesField(field, b)
    }
}

extension ONNXModelProto {
    /// The model serialized as ONNX protobuf bytes.
    public func serialized() -> [UInt8] {
        var w = ProtoWriter()
        w.int(1, irVersion)
        w.optionalString(2, producerName)
        w.optionalString(3, producerVersion)
        w.optionalString(4, domain)
        if modelVersion != 0 { w.int(5, modelVersion) }
        w.optionalString(6, docString)
        w.message(7) { graph.write(to: &$0) }
        for o in opsetImport {
            w.message(8) { $0.string(1, o.domain); $0.int(2, o.version) }
        }
        for p in metadataProps { w.message(14) { $0.string(1, p.key); $0.string(2, p.value) } }
        return w.bytes
    }
}

extension ONNXGraphProto {
    func write(to w: inout ProtoWriter) {
        for n in nodes { w.message(1) { n.write(to: &$0) } }
        w.optionalString(2, name)
        for t in initializers { w.message(5) { t.write(to: &$0) } }
        w.optionalString(10, docString)
        for v in inputs { w.message(11) { v.write(to: &$0) } }
        for v in outputs { w.message(12) { v.write(to: &$0) } }
    }
}

extension ONNXNodeProto {
    func write(to w: inout ProtoWriter) {
        for i in inputs { w.string(1, i) }
        for o in outputs { w.string(2, o) }
        w.optionalString(3, name)
        w.string(4, opType)
        for a in attributes { w.message(5) { a.write(to: &$0) } }
        w.optionalString(7, domain)
    }
}

extension ONNXAttributeProto {
    func write(to w: inout ProtoWriter) {
        w.string(1, name)
        switch type {
        case .float: w.float(2, f)
        case .int: w.int(3, i)
        case .string: w.bytesField(4, s)
        case .tensor: if let t { w.message(5) { t.write(to: &$0) } }
        case .graph: if let g { w.message(6) { g.write(to: &$0) } }
        case .floats: for x in floats { w.float(7, x) }
        case .ints: for x in ints { w.int(8, x) }
        case .strings: for s in strings { w.bytesField(9, s) }
        case .tensors: for t in tensors { w.message(10) { t.write(to: &$0) } }
        case .graphs: for g in graphs { w.message(11) { g.write(to: &$0) } }
        default: break
        }
        w.int(20, Int64(type.rawValue))
    }
}

extension ONNXTensorProto {
    /// The tensor serialized as ONNX protobuf bytes (the `.pb` test-data format).
    public func serialized() -> [UInt8] {
        var w = ProtoWriter()
        write(to: &w)
        return w.bytes
    }

    func write(to w: inout ProtoWriter) {
        for d in dims { w.int(1, d) }
        w.int(2, Int64(dataType))
        if let segment { w.message(3) { $0.int(1, segment.begin); $0.int(2, segment.end) } }
        w.packedFixed(4, floatData.map(\.bitPattern))
        w.packedVarints(5, int32Data.map { UInt64(bitPattern: Int64($0)) })
        for s in stringData { w.bytesField(6, s) }
        w.packedVarints(7, int64Data.map { UInt64(bitPattern: $0) })
        w.optionalString(8, name)
        if let rawData { w.bytesField(9, rawData) }
        w.packedFixed(10, doubleData.map(\.bitPattern))
        w.packedVarints(11, uint64Data)
        for e in externalData { w.message(13) { $0.string(1, e.key); $0.string(2, e.value) } }
        if isExternal { w.int(14, 1) }
    }
}

extension ONNXValueInfoProto {
    func write(to w: inout ProtoWriter) {
        w.string(1, name)
        w.message(2) { type.write(to: &$0) }
    }
}

extension ONNXTypeProto {
    func write(to w: inout ProtoWriter) {
        switch self {
        case .tensor(let elemType, let shape):
            w.message(1) { t in
                t.int(1, Int64(elemType))
                if let shape {
                    t.message(2) { s in
                        for d in shape {
                            s.message(1) { dw in
                                switch d {
                                case .value(let v): dw.int(1, v)
                                case .param(let p): dw.string(2, p)
                                case .unknown: break
                                }
                            }
                        }
                    }
                }
            }
        case .sequence: w.message(4) { $0.message(1) { _ in } }
        case .map: w.message(5) { $0.int(1, 8) }
        case .opaque: w.message(7) { _ in }
        case .sparseTensor: w.message(8) { $0.int(1, 1) }
        case .optional: w.message(9) { $0.message(1) { _ in } }
        case .none: break
        }
    }
}
