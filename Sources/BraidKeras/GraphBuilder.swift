import BraidGraph
import BraidKernels
import BraidTensor

/// A Keras tensor during import: the IR value holding it, its shape as Keras states it
/// (`[batch, ..., channels]`, nil for unknown sizes, the batch always nil) and whether the IR
/// value holds it channels-first (`[N, C, spatial...]`), the layout Braid's conv and pooling
/// ops compute in. Rank-2 tensors are the same in both layouts and never marked.
struct KTensor {
    var name: String
    var shape: [Int?]
    var channelsFirst: Bool = false

    var rank: Int { shape.count }
    var channels: Int? { shape.last ?? nil }
    /// Spatial sizes in Keras order (between batch and channels).
    var spatial: [Int?] { Array(shape.dropFirst().dropLast()) }

    /// The IR axis holding Keras axis `axis` (negative counts from the end).
    func irAxis(_ axis: Int) -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard channelsFirst, rank > 2 else { return a }
        if a == 0 { return 0 }
        if a == rank - 1 { return 1 }
        return a + 1
    }
}

/// Accumulates IR nodes and constants while a Keras model is translated.
final class GraphBuilder {
    var nodes: [Node] = []
    var initializers: [String: Tensor] = [:]
    private var usedNames: Set<String> = []
    private var layoutCache: [String: String] = [:]
    private var weightCache: [String: String] = [:]

    func unique(_ base: String) -> String {
        var name = base
        var i = 1
        while usedNames.contains(name) { name = "\(base)_\(i)"; i += 1 }
        usedNames.insert(name)
        return name
    }

    func reserve(_ name: String) { usedNames.insert(name) }

    /// Appends one node and returns the names of its outputs.
    @discardableResult
    func add(_ op: Op, _ inputs: [String], name: String, source: String, outputs: Int = 1) -> [String] {
        let nodeName = unique(name)
        var outs = [nodeName]
        for i in 1..<max(outputs, 1) { outs.append(unique("\(nodeName):\(i)")) }
        nodes.append(Node(name: nodeName, op: op, inputs: inputs, outputs: outs, sourceOp: source))
        return outs
    }

    /// Appends a one-output node.
    func add1(_ op: Op, _ inputs: [String], name: String, source: String) -> String {
        add(op, inputs, name: name, source: source)[0]
    }

    /// Registers a constant tensor and returns its value name.
    func constant(_ t: Tensor, name: String) -> String {
        let n = unique(name)
        initializers[n] = t
        return n
    }

    /// A constant made once per `key` (a layer's weight seen through one transform), so
    /// that a layer applied twice shares its weights.
    func sharedConstant(key: String, name: String, make: () throws -> Tensor) rethrows -> String {
        if let n = weightCache[key] { return n }
        let n = constant(try make(), name: name)
        weightCache[key] = n
        return n
    }

    func scalar(_ v: Float, name: String) -> String {
        constant(Tensor(shape: [], floats: [v]), name: name)
    }

    func intsConstant(_ v: [Int], name: String) -> String {
        constant(Tensor(shape: [v.count], ints: v.map(Int64.init)), name: name)
    }

    /// The tensor in channels-first layout (a transpose is added once per value).
    func channelsFirst(_ t: KTensor) -> KTensor {
        guard !t.channelsFirst, t.rank > 2 else { return t }
        let r = t.rank
        let perm = [0, r - 1] + Array(1..<(r - 1))
        let key = t.name + "->cf"
        let n = layoutCache[key] ?? add1(.transpose(perm: perm), [t.name], name: t.name + "/to_nchw", source: "Transpose")
        layoutCache[key] = n
        return KTensor(name: n, shape: t.shape, channelsFirst: true)
    }

    /// The tensor in Keras's channels-last layout.
    func channelsLast(_ t: KTensor) -> KTensor {
        guard t.channelsFirst, t.rank > 2 else { return KTensor(name: t.name, shape: t.shape) }
        let r = t.rank
        let perm = [0] + Array(2..<r) + [1]
        let key = t.name + "->cl"
        let n = layoutCache[key] ?? add1(.transpose(perm: perm), [t.name], name: t.name + "/to_nhwc", source: "Transpose")
        layoutCache[key] = n
        return KTensor(name: n, shape: t.shape)
    }

    /// Brings several tensors to one layout: channels-first when any of them is.
    func sameLayout(_ ts: [KTensor]) -> [KTensor] {
        if ts.contains(where: { $0.channelsFirst && $0.rank > 2 }) { return ts.map(channelsFirst) }
        return ts
    }
}

/// Permutes a constant tensor's axes (for weight layout changes at import time), with the
/// runtime's strided copy.
func permuted(_ t: Tensor, _ perm: [Int]) -> Tensor {
    let outShape = perm.map { t.shape[$0] }
    let out = Tensor(zeros: outShape)
    guard t.count > 0 else { return out }
    let inStrides = t.shape.strides
    StridedCopy(shape: outShape, strides: perm.map { inStrides[$0] }, elementSize: 4)
        .run(UnsafeRawPointer(t.floats), UnsafeMutableRawPointer(out.floats))
    return out
}
