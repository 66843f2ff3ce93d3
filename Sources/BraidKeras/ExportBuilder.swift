import BraidGraph
import BraidTensor
import Foundation

/// A Keras tensor during export: the layer that outputs it, its Keras shape (batch first,
/// nil for the batch) and how the IR value it stands for is laid out against it: the IR
/// value is `transpose(kerasTensor, perm)`, so IR axis `i` is Keras axis `perm[i]`.
/// A graph imported from Keras holds channels-first views of channels-last Keras tensors,
/// and transposes between them become perm bookkeeping, not layers.
struct XTensor {
    var layer: String
    var shape: [Int?]
    var perm: [Int]
    /// Which output of the layer (an operation node such as Split has several).
    var index: Int = 0

    var rank: Int { perm.count }
    func kerasAxis(_ irAxis: Int) -> Int { perm[irAxis < 0 ? irAxis + rank : irAxis] }
}

/// One Keras layer to be written: class, config (without the common name/trainable/dtype
/// entries), weights in the order the Keras layer creates them, and the tensors it is
/// called on (a list for merge layers).
struct KLayer {
    var name: String
    var className: String
    var config: [String: Any]
    var weights: [(name: String, tensor: Tensor)]
    var inputs: [XTensor]
    var listInput: Bool
    var outputShape: [Int?]
    /// Set for a Keras 3 operation node (a `keras.ops` call): the module holding its class
    /// (`keras.src.ops.numpy`...) and its positional arguments in order. Operation nodes
    /// hold no weights: constant operands are written inline as NumPy arrays.
    var operation: (module: String, args: [OperationArg])? = nil

    var isOperation: Bool { operation != nil }
}

/// A positional argument of a Keras 3 operation node: a tensor, a Python number, or a
/// constant array (`__numpy__`, float32 or int64 elements in row-major order).
enum OperationArg {
    case tensor(XTensor)
    case number(Double)
    case array(shape: [Int], values: [Double], dtype: String)
}

/// An IR node that has no Keras layer, with the reason.
struct Unmappable: Error { var reason: String }

/// Translates one IR node into Keras layers (or fails with `Unmappable`).
typealias LayerWriter = @Sendable (ExportBuilder, Node) throws -> Void

/// Every IR op family a writer handles, merged from the per-family tables that sit beside
/// the readers (Layers+*.swift).
let writerTable: [String: LayerWriter] = {
    var t: [String: LayerWriter] = [:]
    for family in [coreWriters, activationWriters, convWriters, poolWriters, shapeWriters, mergeWriters] {
        t.merge(family) { a, _ in a }
    }
    return t
}()

/// The key of an op's writer: its case name (`conv`, `unary`, `binary`...).
func writerKey(_ op: Op) -> String {
    let s = String(describing: op)
    return String(s.prefix { $0 != "(" })
}

/// Walks an IR graph in order and builds the Keras layers that compute it.
final class ExportBuilder {
    let graph: Graph
    let values: [String: PlanValue]
    /// The plan at batch 2 when the graph's batch is symbolic (nil otherwise): the axes whose
    /// size differs from `values` scale with the batch.
    let valuesAtBatch2: [String: PlanValue]?
    private(set) var layers: [KLayer] = []
    var tensors: [String: XTensor] = [:]
    /// Nodes already written as part of an earlier node's layer (a conv's bias add...).
    var claimed: Set<String> = []
    private var consumers: [String: [Node]] = [:]
    private var usedNames: Set<String> = []
    private var permuteCache: [String: XTensor] = [:]
    private let outputNames: Set<String>
    /// The node being written, for layer names.
    var current: Node?

    init(graph: Graph, values: [String: PlanValue], valuesAtBatch2: [String: PlanValue]? = nil) {
        self.graph = graph
        self.values = values
        self.valuesAtBatch2 = valuesAtBatch2
        outputNames = Set(graph.outputs.map(\.name))
        for n in graph.nodes {
            for i in Set(n.inputs) where !i.isEmpty { consumers[i, default: []].append(n) }
        }
    }

    // MARK: Facts about IR values

    func shape(_ value: String) -> [Int] { values[value]?.shape ?? [] }

    /// The value's elements when known before the run (weights, folded constants).
    func constant(_ value: String) -> Tensor? {
        guard !value.isEmpty, tensors[value] == nil else { return nil }
        return values[value]?.constant
    }

    func requireConstant(_ node: Node, _ i: Int, _ what: String) throws -> Tensor {
        guard i < node.inputs.count, let t = constant(node.inputs[i]) else {
            throw Unmappable(reason: "its \(what) is not a constant")
        }
        return t
    }

    /// The node that alone reads `value`, when the value is not also a graph output.
    func soleConsumer(_ value: String) -> Node? {
        guard !outputNames.contains(value), let c = consumers[value], c.count == 1 else { return nil }
        return c[0]
    }

    /// The Keras tensor standing for a computed IR value.
    func tensor(_ value: String) throws -> XTensor {
        guard let t = tensors[value] else {
            throw Unmappable(reason: "input '\(value)' is a constant tensor, which Keras layers take only as weights")
        }
        return t
    }

    func input(_ node: Node, _ i: Int = 0) throws -> XTensor { try tensor(node.inputs[i]) }

    // MARK: Layouts

    /// The tensor re-laid so that the IR value is `transpose(result, perm)`: a Permute layer
    /// when the layout differs, a Keras `Transpose` operation node when the change moves the
    /// batch axis (which no layer can).
    func layout(_ x: XTensor, _ perm: [Int]) throws -> XTensor {
        if x.perm == perm { return x }
        var s = [Int](repeating: 0, count: perm.count)
        for i in 0..<perm.count { s[perm[i]] = x.perm[i] }
        let key = "\(x.layer)|\(x.index)|\(perm)"
        if let t = permuteCache[key] { return t }
        let shape = s.map { x.shape[$0] }
        let t = s[0] == 0
            ? addLayer("Permute", ["dims": Array(s.dropFirst())], inputs: [x], outputShape: shape, perm: perm, suffix: "permute")
            : addOperation("Transpose", module: "keras.src.ops.numpy", ["axes": s], args: [.tensor(x)], outputShape: shape,
                           perm: perm, suffix: "transpose")
        permuteCache[key] = t
        return t
    }

    /// The axis of `value` whose size scales with the batch, when the graph's batch is
    /// symbolic and exactly one axis does (nil for a fixed batch or none).
    func batchAxis(_ value: String) throws -> Int? {
        guard let other = valuesAtBatch2?[value]?.shape else { return nil }
        let differing = zip(shape(value), other).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        guard differing.count <= 1 else {
            throw Unmappable(reason: "\(differing.count) axes of its output scale with the batch")
        }
        return differing.first
    }

    /// Keras's layout for the IR value (Keras tensor axes = IR axes).
    func plain(_ x: XTensor) throws -> XTensor { try layout(x, Array(0..<x.rank)) }

    /// A channels-first IR value over a channels-last Keras tensor (what conv layers take).
    func channelsLast(_ x: XTensor) throws -> XTensor { try layout(x, cfPerm(x.rank)) }

    /// The perm of an IR `[N, C, spatial...]` value over a Keras `[N, spatial..., C]` tensor.
    func cfPerm(_ r: Int) -> [Int] { r > 2 ? [0, r - 1] + Array(1..<(r - 1)) : Array(0..<r) }

    /// The Keras shape of an IR value held with `perm`.
    func kerasShape(_ value: String, perm: [Int]) -> [Int?] {
        let s = shape(value)
        var k = [Int?](repeating: nil, count: s.count)
        for i in 0..<s.count { k[perm[i]] = s[i] }
        if !k.isEmpty { k[0] = nil }
        return k
    }

    // MARK: Layers

    /// A Keras-legal unique layer name (no '/').
    func uniqueName(_ base: String) -> String {
        var b = String(base.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" })
        if b.isEmpty { b = "layer" }
        var n = b, i = 1
        while usedNames.contains(n) { n = "\(b)_\(i)"; i += 1 }
        usedNames.insert(n)
        return n
    }

    /// Adds a layer and returns its output tensor, whose IR view has `perm`.
    @discardableResult
    func addLayer(_ cls: String, _ config: [String: Any], weights: [(String, Tensor)] = [], inputs: [XTensor],
                  listInput: Bool = false, outputShape: [Int?], perm: [Int], suffix: String? = nil) -> XTensor {
        let base = current.map { $0.name + (suffix.map { "_" + $0 } ?? "") } ?? (suffix ?? cls.lowercased())
        let name = uniqueName(base)
        layers.append(KLayer(name: name, className: cls, config: config, weights: weights.map { (name: $0.0, tensor: $0.1) },
                             inputs: inputs, listInput: listInput, outputShape: outputShape))
        return XTensor(layer: name, shape: outputShape, perm: perm)
    }

    /// Adds a layer computing `node`'s first output, laid out with `perm`.
    @discardableResult
    func emit(_ node: Node, _ cls: String, _ config: [String: Any], weights: [(String, Tensor)] = [],
              inputs: [XTensor], listInput: Bool = false, perm: [Int], output: String? = nil) -> XTensor {
        let out = output ?? node.outputs[0]
        let t = addLayer(cls, config, weights: weights, inputs: inputs, listInput: listInput,
                         outputShape: kerasShape(out, perm: perm), perm: perm)
        tensors[out] = t
        return t
    }

    /// Adds a Keras 3 operation node (`keras.ops.<cls>` recorded in the functional config) and
    /// returns its output tensor, whose IR view has `perm`.
    @discardableResult
    func addOperation(_ cls: String, module: String, _ config: [String: Any], args: [OperationArg], outputShape: [Int?],
                      perm: [Int], suffix: String? = nil) -> XTensor {
        let base = current.map { $0.name + (suffix.map { "_" + $0 } ?? "") } ?? (suffix ?? cls.lowercased())
        let name = uniqueName(base)
        let inputs: [XTensor] = args.compactMap { if case .tensor(let t) = $0 { return t } else { return nil } }
        layers.append(KLayer(name: name, className: cls, config: config, weights: [], inputs: inputs, listInput: false,
                             outputShape: outputShape, operation: (module, args)))
        return XTensor(layer: name, shape: outputShape, perm: perm)
    }

    /// Gives the IR value `value` the Keras tensor `t` (ops that are layouts or identities).
    func alias(_ value: String, _ t: XTensor) { tensors[value] = t }

    /// Marks `node` as written by the current layer, its output standing for `t`.
    func claim(_ node: Node, as t: XTensor) {
        claimed.insert(node.name)
        tensors[node.outputs[0]] = t
    }

    /// An input layer for a graph input.
    func addInput(_ decl: ValueDecl) -> XTensor {
        let shape: [Int?] = (decl.shape ?? shape(decl.name).map(Dim.fixed)).enumerated().map { i, d in i == 0 ? nil : d.value }
        let name = uniqueName(decl.name)
        layers.append(KLayer(name: name, className: "InputLayer", config: ["batch_shape": shape.map { $0 as Any? ?? NSNull() }],
                             weights: [], inputs: [], listInput: false, outputShape: shape))
        let t = XTensor(layer: name, shape: shape, perm: Array(0..<shape.count))
        tensors[decl.name] = t
        return t
    }
}

/// Float parameters as JSON numbers (Double, so that they print as Keras reads them).
func jsonFloat(_ v: Float) -> Double { Double(v) }
