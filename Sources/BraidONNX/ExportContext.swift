import BraidGraph
import BraidTensor

/// The state of writing one IR node as ONNX: the node, the target opset, what the exporter
/// knows about value shapes, and the ONNX nodes and constant initializers it produces.
final class NodeExport {
    let node: Node
    let opset: Int
    private let session: ExportSession
    private(set) var protos: [ONNXNodeProto] = []

    init(node: Node, opset: Int, session: ExportSession) {
        self.node = node; self.opset = opset; self.session = session
    }

    /// Input `i`, or "" when absent.
    func input(_ i: Int) -> String { i < node.inputs.count ? node.inputs[i] : "" }

    /// The IR op's case name, for messages.
    var opName: String { irOpName(node.op) }

    func error(_ message: String) -> ONNXError {
        ONNXError(subject: "node '\(node.name)' (IR op \(opName), from \(node.sourceOp))",
                  "cannot be exported at opset \(opset): \(message)")
    }

    /// Throws unless the target opset is at least `since`.
    func require(opset since: Int, _ what: String) throws {
        if opset < since { throw error("\(what) needs opset \(since) or later") }
    }

    // MARK: What is known about values

    /// The shape of `value` as far as planning could tell: nil when unknown, and nil entries
    /// for dimensions that depend on a symbolic input dimension.
    func shape(_ value: String) -> [Int?]? { value.isEmpty ? nil : session.shapes.shape(value) }

    /// The element type planning found for `value`, nil when unknown.
    func dtype(_ value: String) -> DType? { value.isEmpty ? nil : session.shapes.dtype(value) }

    /// The IR ops of the nodes that read `value`.
    func readers(of value: String) -> [Op] { session.readers[value] ?? [] }

    /// The elements of `value` when fixed before the run: an initializer, a constant node's
    /// value, or a plan-time constant that does not depend on the input sizes.
    func constantValue(_ value: String) -> Tensor? {
        value.isEmpty ? nil : session.initializers[value] ?? session.shapes.constant(value)
    }

    // MARK: Output

    /// Adds an ONNX node. Inputs and outputs default to the IR node's own; trailing absent
    /// optional inputs are dropped.
    func emit(_ opType: String, _ inputs: [String]? = nil, outputs: [String]? = nil,
              attrs attributes: [ONNXAttributeProto] = []) {
        var ins = inputs ?? node.inputs
        while ins.last == "" { ins.removeLast() }
        let name = protos.isEmpty ? node.name : "\(node.name)/\(protos.count)"
        protos.append(ONNXNodeProto(name: name, opType: opType, inputs: ins,
                                    outputs: outputs ?? node.outputs, attributes: attributes))
    }

    /// A single-output helper node writing to a fresh intermediate value; returns its name.
    func emitTemporary(_ opType: String, _ inputs: [String], _ role: String,
                       _ attributes: [ONNXAttributeProto] = []) -> String {
        let out = temporary(role)
        emit(opType, inputs, outputs: [out], attrs: attributes)
        return out
    }

    /// Adds a constant initializer and returns its value name.
    func constant(_ t: Tensor, _ role: String) -> String {
        let name = temporary(role)
        session.addConstant(name, t)
        return name
    }

    func constant(ints values: [Int], _ role: String) -> String {
        constant(Tensor(shape: [values.count], ints: values.map(Int64.init)), role)
    }

    /// A float32 scalar constant.
    func constant(scalar value: Float, _ role: String) -> String {
        constant(Tensor(shape: [], floats: [value]), role)
    }

    /// A fresh value name not used anywhere in the graph.
    func temporary(_ role: String) -> String { session.freshName("\(node.name)__\(role)") }
}

/// The name of an IR op's case, without its parameters.
func irOpName(_ op: Op) -> String {
    if let label = Mirror(reflecting: op).children.first?.label { return label }
    return String(describing: op)
}

/// Attribute helpers shared by the op families' writers.
extension ONNXAttributeProto {
    static func ints(_ name: String, _ v: [Int]) -> Self { .ints(name, v.map(Int64.init)) }
    static func int(_ name: String, _ v: Int) -> Self { .int(name, Int64(v)) }
    static func bool(_ name: String, _ v: Bool) -> Self { .int(name, v ? 1 : 0) }
}

/// State shared by every node of one export: value names in use, constant initializers
/// added by the writers, and the shapes found by planning.
final class ExportSession {
    private(set) var taken: Set<String>
    /// Graph initializers plus the constants writers add, by name.
    private(set) var initializers: [String: Tensor]
    /// Constants added by writers, in the order added.
    private(set) var added: [String] = []
    let shapes: ShapeKnowledge
    /// The ops reading each value.
    let readers: [String: [Op]]
    private let graphOutputs: Set<String>

    init(graph: Graph, shapes: ShapeKnowledge) {
        graphOutputs = Set(graph.outputs.map(\.name))
        var names = Set(graph.initializers.keys).union(graph.inputs.map(\.name)).union(graph.outputs.map(\.name))
        var readers: [String: [Op]] = [:]
        for n in graph.nodes {
            names.formUnion(n.inputs); names.formUnion(n.outputs)
            for i in Set(n.inputs) where !i.isEmpty { readers[i, default: []].append(n.op) }
        }
        taken = names
        self.readers = readers
        initializers = graph.initializers
        self.shapes = shapes
    }

    func freshName(_ base: String) -> String {
        var n = base, k = 1
        while taken.contains(n) { n = "\(base)_\(k)"; k += 1 }
        taken.insert(n)
        return n
    }

    func isGraphOutput(_ name: String) -> Bool { graphOutputs.contains(name) }

    func addConstant(_ name: String, _ t: Tensor) {
        initializers[name] = t
        added.append(name)
    }
}

extension NodeExport {
    /// A constant becomes an initializer under its output's name, or a Constant node when it
    /// is itself a graph output.
    func writeConstant(_ t: Tensor) {
        let out = node.outputs[0]
        if session.isGraphOutput(out) {
            emit("Constant", [], attrs: [.tensor("value", ONNXTensorProto(t, name: out))])
        } else {
            session.addConstant(out, t)
        }
    }
}
