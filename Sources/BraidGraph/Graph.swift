import BraidTensor

/// One dimension of a declared shape: a fixed size or a named symbol such as a dynamic batch.
public enum Dim: Sendable, Equatable, CustomStringConvertible {
    case fixed(Int)
    case symbol(String)

    public var description: String {
        switch self {
        case .fixed(let n): return String(n)
        case .symbol(let s): return s
        }
    }

    public var value: Int? { if case .fixed(let n) = self { return n }; return nil }
}

/// A graph input or output as declared: name, element type and (possibly symbolic) shape.
/// `shape` is nil when the file states no shape.
public struct ValueDecl: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Dim]?

    public init(name: String, dtype: DType, shape: [Dim]?) {
        self.name = name; self.dtype = dtype; self.shape = shape
    }
}

/// One operation. Inputs and outputs name values; an empty input name is an absent optional
/// operand.
public struct Node: Sendable {
    public var name: String
    public var op: Op
    public var inputs: [String]
    public var outputs: [String]
    /// The importer's name for the op (for messages and `inspect`), e.g. "Conv" or "Dense".
    public var sourceOp: String

    public init(name: String, op: Op, inputs: [String], outputs: [String], sourceOp: String) {
        self.name = name; self.op = op; self.inputs = inputs; self.outputs = outputs
        self.sourceOp = sourceOp
    }
}

/// A dataflow graph in Braid's IR, in topological order.
public struct Graph: Sendable {
    public var name: String
    public var inputs: [ValueDecl]
    public var outputs: [ValueDecl]
    /// Named constant tensors (weights). A graph input that also has an initializer is an
    /// overridable default, as in ONNX.
    public var initializers: [String: Tensor]
    public var nodes: [Node]
    /// Free-form facts about the source file (producer, opset, format), shown by `inspect`.
    public var metadata: [String: String]

    public init(name: String, inputs: [ValueDecl], outputs: [ValueDecl],
                initializers: [String: Tensor], nodes: [Node], metadata: [String: String] = [:]) {
        self.name = name; self.inputs = inputs; self.outputs = outputs
        self.initializers = initializers; self.nodes = nodes; self.metadata = metadata
    }

    /// Inputs the caller must feed: declared inputs without an initializer.
    public var feedInputs: [ValueDecl] {
        inputs.filter { initializers[$0.name] == nil }
    }

    /// Total element count of float initializers.
    public var parameterCount: Int {
        initializers.values.reduce(0) { $0 + ($1.dtype.isFloat ? $1.count : 0) }
    }
}

/// A problem with a graph, naming the node (or value) and what was expected.
public struct GraphError: Error, CustomStringConvertible, Sendable {
    public var node: String?
    public var message: String

    public init(node: String?, _ message: String) {
        self.node = node; self.message = message
    }

    public var description: String {
        if let node { return "node '\(node)': \(message)" }
        return message
    }
}
