import Foundation

// Swift values mirroring the ONNX wire messages Braid reads and writes. Decoding goes through
// protobuf-c (ONNXProto+Decode.swift); encoding is Braid's own (ONNXProto+Encode.swift).

/// ONNX `TensorProto.DataType` codes.
public enum ONNXDataType: Int32, Sendable, CaseIterable {
    case undefined = 0, float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6
    case int64 = 7, string = 8, bool = 9, float16 = 10, double = 11, uint32 = 12, uint64 = 13
    case complex64 = 14, complex128 = 15, bfloat16 = 16
    case float8e4m3fn = 17, float8e4m3fnuz = 18, float8e5m2 = 19, float8e5m2fnuz = 20
    case uint4 = 21, int4 = 22, float4e2m1 = 23, float8e8m0 = 24, uint2 = 25, int2 = 26
}

/// A `ModelProto`: the graph and the operator sets it was written against.
public struct ONNXModelProto: Sendable {
    public var irVersion: Int64 = 0
    public var producerName = ""
    public var producerVersion = ""
    public var domain = ""
    public var modelVersion: Int64 = 0
    public var docString = ""
    public var graph = ONNXGraphProto()
    /// `(domain, version)` pairs; domain "" is the default ONNX domain.
    public var opsetImport: [(domain: String, version: Int64)] = []
    public var metadataProps: [(key: String, value: String)] = []

    public init() {}
}

public struct ONNXGraphProto: Sendable {
    public var name = ""
    public var nodes: [ONNXNodeProto] = []
    public var initializers: [ONNXTensorProto] = []
    public var inputs: [ONNXValueInfoProto] = []
    public var outputs: [ONNXValueInfoProto] = []
    public var docString = ""
    /// Names of sparse initializers (Braid does not read their contents).
    public var sparseInitializerNames: [String] = []

    public init() {}
}

public struct ONNXNodeProto: Sendable {
    public var name = ""
    public var opType = ""
    public var domain = ""
    public var inputs: [String] = []
    public var outputs: [String] = []
    public var attributes: [ONNXAttributeProto] = []

    public init(name: String = "", opType: String, domain: String = "", inputs: [String],
                outputs: [String], attributes: [ONNXAttributeProto] = []) {
        self.name = name; self.opType = opType; self.domain = domain
        self.inputs = inputs; self.outputs = outputs; self.attributes = attributes
    }
}

/// An `AttributeProto`. Exactly one value is meaningful, as said by `type`.
public struct ONNXAttributeProto: Sendable {
    /// ONNX `AttributeProto.AttributeType` codes.
    public enum Kind: Int32, Sendable {
        case undefined = 0, float = 1, int = 2, string = 3, tensor = 4, graph = 5
        case floats = 6, ints = 7, strings = 8, tensors = 9, graphs = 10
        case sparseTensor = 11, sparseTensors = 12, typeProto = 13, typeProtos = 14
    }

    public var name: String
    public var type: Kind
    public var f: Float = 0
    public var i: Int64 = 0
    public var s: [UInt8] = []
    public var t: ONNXTensorProto?
    public var g: ONNXGraphProto?
    public var floats: [Float] = []
    public var ints: [Int64] = []
    public var strings: [[UInt8]] = []
    public var tensors: [ONNXTensorProto] = []
    public var graphs: [ONNXGraphProto] = []
    /// Set only inside function bodies.
    public var refAttrName = ""

    public init(name: String, type: Kind) { self.name = name; self.type = type }

    public static func int(_ name: String, _ v: Int64) -> Self {
        var a = Self(name: name, type: .int); a.i = v; return a
    }
    public static func float(_ name: String, _ v: Float) -> Self {
        var a = Self(name: name, type: .float); a.f = v; return a
    }
    public static func string(_ name: String, _ v: String) -> Self {
        var a = Self(name: name, type: .string); a.s = Array(v.utf8); return a
    }
    public static func ints(_ name: String, _ v: [Int64]) -> Self {
        var a = Self(name: name, type: .ints); a.ints = v; return a
    }
    public static func floats(_ name: String, _ v: [Float]) -> Self {
        var a = Self(name: name, type: .floats); a.floats = v; return a
    }
    public static func tensor(_ name: String, _ v: ONNXTensorProto) -> Self {
        var a = Self(name: name, type: .tensor); a.t = v; return a
    }
}

/// A `TensorProto`, with its elements still in the file's encoding.
public struct ONNXTensorProto: Sendable {
    public var name = ""
    public var dims: [Int64] = []
    public var dataType: Int32 = 0
    public var rawData: Data?
    public var floatData: [Float] = []
    public var int32Data: [Int32] = []
    public var int64Data: [Int64] = []
    public var doubleData: [Double] = []
    public var uint64Data: [UInt64] = []
    public var stringData: [[UInt8]] = []
    /// `external_data` entries: location, offset, length, checksum.
    public var externalData: [(key: String, value: String)] = []
    /// True when `data_location` is EXTERNAL.
    public var isExternal = false
    /// `(begin, end)` when the tensor is one segment of a larger one.
    public var segment: (begin: Int64, end: Int64)?

    public init() {}
}

public struct ONNXValueInfoProto: Sendable {
    public var name: String
    public var type: ONNXTypeProto

    public init(name: String, type: ONNXTypeProto) { self.name = name; self.type = type }
}

/// A `TypeProto`. Only tensors are usable in Braid; the other kinds are kept so that an
/// error can name them.
public enum ONNXTypeProto: Sendable {
    case none
    /// `elemType` is an `ONNXDataType` code; `shape` is nil when the file states none.
    case tensor(elemType: Int32, shape: [ONNXDim]?)
    case sequence, map, optional, sparseTensor, opaque

    var kindName: String {
        switch self {
        case .none: return "no type"
        case .tensor: return "tensor"
        case .sequence: return "sequence"
        case .map: return "map"
        case .optional: return "optional"
        case .sparseTensor: return "sparse tensor"
        case .opaque: return "opaque"
        }
    }
}

/// One `TensorShapeProto.Dimension`.
public enum ONNXDim: Sendable, Equatable {
    case value(Int64)
    case param(String)
    case unknown
}
