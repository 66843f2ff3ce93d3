import CONNXProto
import Foundation

// Conversion from protobuf-c's unpacked structures into the Swift mirror. protobuf-c checks
// every length against the buffer and returns NULL for truncated or malformed input, so the
// code here only reads what it produced.

/// Checks the nesting, unpacks the message with protobuf-c, converts it and frees the C copy.
/// Throws `ONNXError` naming `what` when the bytes are not a well-formed message.
private func unpacked<C, T>(_ bytes: UnsafeRawBufferPointer, _ root: WireMessage, _ what: String,
                            _ unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<C>?,
                            _ free: (UnsafeMutablePointer<C>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
                            _ convert: (C) -> T) throws -> T {
    try checkNesting(bytes, root: root)
    guard let base = bytes.baseAddress, let m = unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
        throw ONNXError("not a valid \(what) (protobuf parse failed: truncated or corrupt file)")
    }
    defer { free(m, nil) }
    return convert(m.pointee)
}

extension ONNXModelProto {
    /// Parses a serialized `ModelProto`.
    /// Throws `ONNXError` when the bytes are not a well-formed message.
    public init(serialized bytes: UnsafeRawBufferPointer) throws {
        self = try unpacked(bytes, .model, "ONNX model", onnx__model_proto__unpack, onnx__model_proto__free_unpacked,
                            ONNXModelProto.init)
    }

    init(_ c: Onnx__ModelProto) {
        self.init()
        irVersion = c.has_ir_version != 0 ? c.ir_version : 0
        producerName = cString(c.producer_name)
        producerVersion = cString(c.producer_version)
        domain = cString(c.domain)
        modelVersion = c.has_model_version != 0 ? c.model_version : 0
        docString = cString(c.doc_string)
        if let g = c.graph { graph = ONNXGraphProto(g.pointee) }
        opsetImport = cMessages(c.opset_import, c.n_opset_import).map {
            (cString($0.domain), $0.has_version != 0 ? $0.version : 0)
        }
        metadataProps = cEntries(c.metadata_props, c.n_metadata_props)
    }
}

extension ONNXGraphProto {
    init(_ c: Onnx__GraphProto) {
        self.init()
        name = cString(c.name)
        docString = cString(c.doc_string)
        nodes = cMessages(c.node, c.n_node).map(ONNXNodeProto.init)
        initializers = cMessages(c.initializer, c.n_initializer).map(ONNXTensorProto.init)
        inputs = cMessages(c.input, c.n_input).map(ONNXValueInfoProto.init)
        outputs = cMessages(c.output, c.n_output).map(ONNXValueInfoProto.init)
        sparseInitializerNames = cMessages(c.sparse_initializer, c.n_sparse_initializer).map {
            $0.values.map { cString($0.pointee.name) } ?? ""
        }
    }
}

extension ONNXNodeProto {
    init(_ c: Onnx__NodeProto) {
        self.init(name: cString(c.name), opType: cString(c.op_type), domain: cString(c.domain),
                  inputs: cStrings(c.input, c.n_input), outputs: cStrings(c.output, c.n_output),
                  attributes: cMessages(c.attribute, c.n_attribute).map(ONNXAttributeProto.init))
    }
}

extension ONNXAttributeProto {
    init(_ c: Onnx__AttributeProto) {
        var kind = Kind(rawValue: c.has_type != 0 ? Int32(c.type.rawValue) : 0) ?? .undefined
        if kind == .undefined {
            // Files from before IR version 2 carry no type; the one field present decides.
            if c.has_f != 0 { kind = .float } else if c.has_i != 0 { kind = .int }
            else if c.has_s != 0 { kind = .string } else if c.t != nil { kind = .tensor }
            else if c.g != nil { kind = .graph } else if c.n_floats > 0 { kind = .floats }
            else if c.n_ints > 0 { kind = .ints } else if c.n_strings > 0 { kind = .strings }
            else if c.n_tensors > 0 { kind = .tensors } else if c.n_graphs > 0 { kind = .graphs }
        }
        self.init(name: cString(c.name), type: kind)
        f = c.f
        i = c.i
        s = cBinary(c.s)
        t = c.t.map { ONNXTensorProto($0.pointee) }
        g = c.g.map { ONNXGraphProto($0.pointee) }
        floats = cArray(c.floats, c.n_floats)
        ints = cArray(c.ints, c.n_ints)
        strings = cArray(c.strings, c.n_strings).map(cBinary)
        tensors = cMessages(c.tensors, c.n_tensors).map(ONNXTensorProto.init)
        graphs = cMessages(c.graphs, c.n_graphs).map(ONNXGraphProto.init)
        refAttrName = cString(c.ref_attr_name)
    }
}

extension ONNXTensorProto {
    init(_ c: Onnx__TensorProto) {
        self.init()
        name = cString(c.name)
        dims = cArray(c.dims, c.n_dims)
        dataType = c.has_data_type != 0 ? c.data_type : 0
        if c.has_raw_data != 0 {
            rawData = c.raw_data.len > 0 ? Data(bytes: c.raw_data.data, count: c.raw_data.len) : Data()
        }
        floatData = cArray(c.float_data, c.n_float_data)
        int32Data = cArray(c.int32_data, c.n_int32_data)
        int64Data = cArray(c.int64_data, c.n_int64_data)
        doubleData = cArray(c.double_data, c.n_double_data)
        uint64Data = cArray(c.uint64_data, c.n_uint64_data)
        stringData = cArray(c.string_data, c.n_string_data).map(cBinary)
        externalData = cEntries(c.external_data, c.n_external_data)
        isExternal = c.has_data_location != 0 && c.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
        if let s = c.segment?.pointee { segment = (s.begin, s.end) }
    }
}

extension ONNXValueInfoProto {
    init(_ c: Onnx__ValueInfoProto) {
        self.init(name: cString(c.name), type: c.type.map { ONNXTypeProto($0.pointee) } ?? .none)
    }
}

extension ONNXTypeProto {
    init(_ c: Onnx__TypeProto) {
        switch c.value_case {
        case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE:
            guard let t = c.tensor_type?.pointee else { self = .none; return }
            let shape: [ONNXDim]? = t.shape.map { s in
                cMessages(s.pointee.dim, s.pointee.n_dim).map { d in
                    switch d.value_case {
                    case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE: return .value(d.dim_value)
                    case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM:
                        let p = cString(d.dim_param)
                        return p.isEmpty ? .unknown : .param(p)
                    default: return .unknown
                    }
                }
            }
            self = .tensor(elemType: t.has_elem_type != 0 ? t.elem_type : 0, shape: shape)
        case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE: self = .sequence
        case ONNX__TYPE_PROTO__VALUE_MAP_TYPE: self = .map
        case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE: self = .optional
        case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE: self = .sparseTensor
        case ONNX__TYPE_PROTO__VALUE_OPAQUE_TYPE: self = .opaque
        default: self = .none
        }
    }
}

private func cString(_ p: UnsafeMutablePointer<CChar>?) -> String {
    p.map { String(cString: $0) } ?? ""
}

private func cBinary(_ b: ProtobufCBinaryData) -> [UInt8] {
    guard b.len > 0, let d = b.data else { return [] }
    return Array(UnsafeBufferPointer(start: d, count: b.len))
}

private func cArray<T>(_ p: UnsafeMutablePointer<T>?, _ n: Int) -> [T] {
    guard n > 0, let p else { return [] }
    return Array(UnsafeBufferPointer(start: p, count: n))
}

private func cMessages<T>(_ p: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?, _ n: Int) -> [T] {
    guard n > 0, let p else { return [] }
    return UnsafeBufferPointer(start: p, count: n).compactMap { $0?.pointee }
}

private func cStrings(_ p: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ n: Int) -> [String] {
    guard n > 0, let p else { return [] }
    return UnsafeBufferPointer(start: p, count: n).map(cString)
}

private func cEntries(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__StringStringEntryProto>?>?,
                     _ n: Int) -> [(key: String, value: String)] {
    cMessages(p, n).map { (cString($0.key), cString($0.value)) }
}

extension ONNXTensorProto {
    /// Parses a serialized `TensorProto` (ONNX's `input_0.pb` test-data format).
    public init(serialized bytes: UnsafeRawBufferPointer) throws {
        self = try unpacked(bytes, .tensor, "ONNX TensorProto", onnx__tensor_proto__unpack, onnx__tensor_proto__free_unpacked,
                            ONNXTensorProto.init)
    }
}
