import BraidGraph
import BraidTensor

/// One version of an ONNX op's translation: it applies from opset `since` until the next
/// entry of the same op (or the highest opset Braid knows).
struct OpVersion: Sendable {
    let since: Int
    let translate: @Sendable (NodeTranslation) throws -> Void
}

/// ONNX op name -> its versions, ascending by `since`.
typealias OpTable = [String: [OpVersion]]

func v(_ since: Int, _ translate: @escaping @Sendable (NodeTranslation) throws -> Void) -> OpVersion {
    OpVersion(since: since, translate: translate)
}

/// The highest default-domain opset Braid's tables were checked against (onnx 1.23.2).
let maxSupportedOpset = 28

/// Every translation table, one per op family.
let onnxOpTable: OpTable = {
    var table = mathOps
    for family in [nnOps, shapeOps, reduceOps, indexingOps, compositeOps, quantizeOps, recurrentOps] {
        table.merge(family) { _, _ in preconditionFailure("op registered in two families") }
    }
    return table
}()

/// The entry of `op` that applies at `opset`, or nil when the op is unknown or the opset is
/// before its first supported version.
func lookupOp(_ op: String, opset: Int) -> OpVersion? {
    onnxOpTable[op]?.last { $0.since <= opset }
}

/// The state of translating one ONNX node: its attributes and inputs, and the IR nodes and
/// constant initializers it produces.
final class NodeTranslation {
    let proto: ONNXNodeProto
    let opset: Int
    let name: String
    private let attributes: [String: ONNXAttributeProto]
    private let used: Set<String>
    private let initializer: (String) -> Tensor?
    private let declaredShape: (String) -> [Int]?
    private let declaredType: (String) -> DType?
    private let declaredElementType: (String) -> ONNXDataType?
    private let freshName: (String) -> String
    private(set) var nodes: [Node] = []
    private(set) var constants: [(name: String, tensor: Tensor)] = []

    init(proto: ONNXNodeProto, opset: Int, name: String, used: Set<String>,
         initializer: @escaping (String) -> Tensor?, declaredShape: @escaping (String) -> [Int]?,
         declaredType: @escaping (String) -> DType? = { _ in nil },
         declaredElementType: @escaping (String) -> ONNXDataType? = { _ in nil },
         freshName: @escaping (String) -> String) {
        self.proto = proto; self.opset = opset; self.name = name; self.used = used
        self.initializer = initializer; self.declaredShape = declaredShape; self.freshName = freshName
        self.declaredType = declaredType; self.declaredElementType = declaredElementType
        var attrs: [String: ONNXAttributeProto] = [:]
        for a in proto.attributes { attrs[a.name] = a }
        attributes = attrs
    }

    var op: String { proto.opType }
    var inputs: [String] { proto.inputs }
    var outputs: [String] { proto.outputs }

    /// Input `i`, or "" when absent.
    func input(_ i: Int) -> String { i < proto.inputs.count ? proto.inputs[i] : "" }

    /// True when output `i` exists and is consumed by a node or is a graph output.
    func outputUsed(_ i: Int) -> Bool {
        i < proto.outputs.count && !proto.outputs[i].isEmpty && used.contains(proto.outputs[i])
    }

    /// The elements of an input that is an initializer, for attributes derived from weights.
    func initializerValue(_ i: Int) -> Tensor? {
        let n = input(i)
        return n.isEmpty ? nil : initializer(n)
    }

    /// The fixed shape of input `i` when known at import: an initializer's shape, or a graph
    /// input's declared shape without symbols.
    func knownShape(_ i: Int) -> [Int]? {
        let n = input(i)
        guard !n.isEmpty else { return nil }
        return initializer(n)?.shape ?? declaredShape(n)
    }

    /// The element type of input `i` when known at import: an initializer's, or a graph
    /// input's declared type.
    func knownType(_ i: Int) -> DType? {
        let n = input(i)
        guard !n.isEmpty else { return nil }
        return initializer(n)?.dtype ?? declaredType(n)
    }

    /// The ONNX element type of input `i` as the file declares it (graph inputs and
    /// initializers), before Braid widens narrow types.
    func knownElementType(_ i: Int) -> ONNXDataType? {
        let n = input(i)
        return n.isEmpty ? nil : declaredElementType(n)
    }

    func error(_ message: String) -> ONNXError {
        ONNXError(subject: "node '\(name)' (\(op), opset \(opset))", message)
    }

    // MARK: Attributes

    func has(_ key: String) -> Bool { attributes[key] != nil }

    private func attribute(_ key: String, _ kinds: ONNXAttributeProto.Kind...) throws -> ONNXAttributeProto? {
        guard let a = attributes[key] else { return nil }
        guard kinds.contains(a.type) else {
            throw error("attribute '\(key)' has type \(a.type), expected \(kinds.map { "\($0)" }.joined(separator: " or "))")
        }
        if !a.refAttrName.isEmpty { throw error("attribute '\(key)' refers to a function attribute") }
        return a
    }

    func int(_ key: String) throws -> Int? {
        guard let a = try attribute(key, .int) else { return nil }
        return Int(a.i)
    }

    func int(_ key: String, default d: Int) throws -> Int { try int(key) ?? d }

    func requiredInt(_ key: String) throws -> Int {
        guard let v = try int(key) else { throw error("missing required attribute '\(key)'") }
        return v
    }

    func bool(_ key: String, default d: Bool) throws -> Bool { try int(key).map { $0 != 0 } ?? d }

    func float(_ key: String) throws -> Float? {
        guard let a = try attribute(key, .float, .int) else { return nil }
        return a.type == .int ? Float(a.i) : a.f
    }

    func float(_ key: String, default d: Float) throws -> Float { try float(key) ?? d }

    func ints(_ key: String) throws -> [Int]? {
        guard let a = try attribute(key, .ints) else { return nil }
        return a.ints.map { Int($0) }
    }

    func floats(_ key: String) throws -> [Float]? { try attribute(key, .floats)?.floats }

    func string(_ key: String) throws -> String? {
        guard let a = try attribute(key, .string) else { return nil }
        return String(decoding: a.s, as: UTF8.self)
    }

    func string(_ key: String, default d: String) throws -> String { try string(key) ?? d }

    func tensor(_ key: String) throws -> Tensor? {
        guard let a = try attribute(key, .tensor), let t = a.t else { return nil }
        do { return try t.tensor(baseDirectory: nil) } catch let e as ONNXError {
            throw error("attribute '\(key)': \(e.message)")
        }
    }

    /// Refuses attributes whose non-default values Braid cannot honour.
    func reject(_ key: String, unless ok: (ONNXAttributeProto) -> Bool, _ why: String) throws {
        if let a = attributes[key], !ok(a) { throw error("attribute '\(key)': \(why)") }
    }

    // MARK: Output

    /// Adds an IR node. Inputs and outputs default to the ONNX node's own.
    func emit(_ op: Op, inputs: [String]? = nil, outputs: [String]? = nil) {
        let nodeName = nodes.isEmpty ? name : "\(name)/\(nodes.count)"
        nodes.append(Node(name: nodeName, op: op, inputs: inputs ?? proto.inputs,
                          outputs: outputs ?? proto.outputs, sourceOp: proto.opType))
    }

    /// Adds a constant initializer made from an attribute and returns its value name.
    func constant(_ t: Tensor, _ role: String) -> String {
        let n = freshName("\(name)__\(role)")
        constants.append((n, t))
        return n
    }

    func constant(ints values: [Int], _ role: String) -> String {
        constant(Tensor(shape: [values.count], ints: values.map(Int64.init)), role)
    }

    func constant(floats values: [Float], shape: [Int]? = nil, _ role: String) -> String {
        constant(Tensor(shape: shape ?? [values.count], floats: values), role)
    }

    /// An intermediate value name for multi-node translations.
    func temporary(_ role: String) -> String { freshName("\(name)__\(role)") }
}

extension ONNXAttributeProto.Kind: CustomStringConvertible {
    public var description: String {
        switch self {
        case .undefined: return "UNDEFINED"
        case .float: return "FLOAT"
        case .int: return "INT"
        case .string: return "STRING"
        case .tensor: return "TENSOR"
        case .graph: return "GRAPH"
        case .floats: return "FLOATS"
        case .ints: return "INTS"
        case .strings: return "STRINGS"
        case .tensors: return "TENSORS"
        case .graphs: return "GRAPHS"
        case .sparseTensor: return "SPARSE_TENSOR"
        case .sparseTensors: return "SPARSE_TENSORS"
        case .typeProto: return "TYPE_PROTO"
        case .typeProtos: return "TYPE_PROTOS"
        }
    }
}

/// The ONNX spellings of an enumerated string attribute, shared by its reader and writer.
/// A spelling can start at a later opset (`since`); the writer uses a value's first spelling.
struct AttributeSpellings<Value: Equatable & Sendable>: Sendable {
    let attribute: String
    let entries: [(name: String, value: Value, since: Int)]

    init(_ attribute: String, _ entries: [(String, Value)], later: [(String, Value, since: Int)] = []) {
        self.attribute = attribute
        self.entries = entries.map { ($0.0, $0.1, 0) } + later.map { ($0.0, $0.1, $0.since) }
    }

    /// The node's value for the attribute (`defaultName` when absent); an unknown spelling, or
    /// one from a later opset, throws naming the attribute, the value and the opset.
    func read(_ n: NodeTranslation, default defaultName: String) throws -> Value {
        let s = try n.string(attribute, default: defaultName)
        guard let e = entries.first(where: { $0.name == s && n.opset >= $0.since }) else {
            throw n.error("attribute '\(attribute)' = '\(s)' is not supported at opset \(n.opset)")
        }
        return e.value
    }

    /// The spelling written for `value`, checking the export opset has it.
    func name(_ value: Value, _ n: NodeExport, what: String) throws -> String {
        let e = entries.first { $0.value == value }!
        if e.since > 0 { try n.require(opset: e.since, "\(what) '\(e.name)'") }
        return e.name
    }
}
