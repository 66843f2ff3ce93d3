import BraidTensor

extension Graph {
    /// Feed inputs declared with a fixed batch of 1 (`[1, ...]`, rank 2 or more), as an exporter
    /// that traced the model at batch 1 without a dynamic batch writes them.
    public var unitBatchInputs: [String] {
        feedInputs.filter { d in
            guard let s = d.shape, s.count >= 2, case .fixed(1) = s[0] else { return false }
            return true
        }.map(\.name)
    }
}

extension Passes {
    /// Makes a graph traced at batch 1 run at any batch.
    ///
    /// Exporters that trace at batch 1 without a dynamic batch (PyTorch's dynamo exporter,
    /// the default since 2.9) bake the 1 into shape constants: a Reshape to `[1, 1280]`, a
    /// class token `[1, 1, 768]` concatenated with the patches, a Slice ending at 1. This pass
    /// follows the batch axis from every input in `Graph.unitBatchInputs` through the graph
    /// (planned at batch 1) and rewrites the operands that would pin it:
    /// - a constant Reshape target gets -1 where the batch is (its other dims spelt out);
    /// - a constant Expand target that repeats the batched dim's size gets 1 there;
    /// - a constant concatenated with batched values along another axis is first expanded to
    ///   the batch read from a batched operand's shape (`Shape` -> `Concat` -> `Expand`);
    /// - a Slice over the whole batch (start 0, step 1) ends at the largest Int64;
    /// - a Squeeze without axes gets every size-1 axis but the batch.
    /// The inputs are then declared with a symbolic batch `N`. Graphs with no such input
    /// come back unchanged.
    ///
    /// - Parameter sampleShapes: full input shapes to plan with (batch ignored) for inputs
    ///   whose declared shape has other symbolic dims.
    /// - Throws: `GraphError` naming the node when the batch meets an operation that does
    ///   not keep it separable (a reduction or Concat along it, a Gather of one sample, a
    ///   Reshape mixing it with a minor dim...), with the advice to re-export the model with
    ///   a dynamic batch; or when the graph cannot be planned at batch 1.
    public static func generalizeBatch(_ g: Graph, sampleShapes: [String: [Int]] = [:]) throws -> Graph {
        let batched = Set(g.unitBatchInputs)
        guard !batched.isEmpty else { return g }
        var feeds: [String: PlanValue] = [:]
        for d in g.feedInputs {
            var shape: [Int]
            if let given = sampleShapes[d.name] {
                shape = given
            } else {
                guard let dims = d.shape, dims.allSatisfy({ $0.value != nil }) else {
                    throw GraphError(node: nil, "input '\(d.name)' has symbolic dims: give its shape to plan the batch generalisation")
                }
                shape = dims.map { $0.value! }
            }
            if batched.contains(d.name) { shape[0] = 1 }
            feeds[d.name] = PlanValue(shape: shape, dtype: d.dtype)
        }
        // A Reshape can often place the batch in more than one way at batch 1 ([17, 1, 768]
        // to [17, 768] is [17 * N, 768] or [17, N * 768]); the walk takes the likeliest and
        // goes back to the latest such choice when a later node cannot accept it.
        var choices: [Int] = []
        var first: GraphError?
        for _ in 0..<64 {
            var walker = BatchWalker(graph: g, choices: choices)
            for (name, v) in feeds {
                walker.values[name] = v
                walker.facts[name] = batched.contains(name) ? .batched(BatchAxis(axis: 0)) : .opaque
            }
            do {
                for node in g.nodes { try walker.visit(node) }
            } catch let pinned as BatchPinned {
                first = first ?? pinned.error
                let taken = walker.options.indices.map { $0 < choices.count ? choices[$0] : 0 }
                guard let i = taken.indices.last(where: { taken[$0] + 1 < walker.options[$0] }) else { break }
                choices = Array(taken[..<i]) + [taken[i] + 1]
                continue
            }
            var out = walker.graph
            out.nodes = walker.nodes
            for (i, d) in out.inputs.enumerated() where batched.contains(d.name) {
                out.inputs[i].shape![0] = .symbol("N")
            }
            return removeDeadCode(out)
        }
        throw first!
    }
}

/// Where a value holds the batch: along `axis`, whose size is `outer * batch * per` with the
/// batch between the `outer` and `per` parts (at batch 1 the axis has `outer * per`).
struct BatchAxis: Equatable {
    var axis: Int
    var outer = 1
    var per = 1

    /// The size of the axis at batch 1.
    var size: Int { outer * per }
    /// The batch is an axis of its own.
    var alone: Bool { outer == 1 && per == 1 }

    func moved(to axis: Int) -> BatchAxis { BatchAxis(axis: axis, outer: outer, per: per) }
}

/// What the batch-generalisation pass knows of a value.
enum BatchFact: Equatable {
    /// Independent of the inputs (initializers and what is computed from them alone).
    case constant
    /// Computed from input shapes or non-batch inputs: trusted to follow the batch.
    case opaque
    /// Holds the batch.
    case batched(BatchAxis)
}

/// A node the batch cannot pass (the walk may still choose differently at an earlier
/// Reshape).
struct BatchPinned: Error {
    var error: GraphError
}

/// Walks a graph at batch 1, tracking the batch axis and rewriting the operands that pin it.
struct BatchWalker {
    var graph: Graph
    var values: [String: PlanValue] = [:]
    var facts: [String: BatchFact] = [:]
    var nodes: [Node] = []
    /// The candidate to take at each choice point, in the order the walk meets them (0 when
    /// not given).
    let choices: [Int]
    /// How many candidates each choice point met had.
    var options: [Int] = []

    init(graph: Graph, choices: [Int] = []) {
        self.graph = graph
        self.choices = choices
        for (name, t) in graph.initializers where facts[name] == nil {
            values[name] = PlanValue(shape: t.shape, dtype: t.dtype, constant: t)
            facts[name] = .constant
        }
    }

    mutating func visit(_ original: Node) throws {
        let ins = try planValues(original)
        let inFacts = original.inputs.map { $0.isEmpty ? BatchFact.constant : facts[$0] ?? .opaque }
        let lowered = try lower(original, ins)
        var node = original
        let outFacts: [BatchFact]
        do {
            outFacts = try transfer(&node, ins, inFacts, lowered.outputs.map(\.shape))
        } catch let e as GraphError {
            throw BatchPinned(error: e)
        }
        nodes.append(node)
        // A rewritten node is planned again: a Squeeze given explicit axes keeps the batch of 1.
        if node.inputs == original.inputs {
            record(node, ins, lowered, outFacts)
        } else {
            let rewritten = try planValues(node)
            record(node, rewritten, try lower(node, rewritten), outFacts)
        }
    }

    /// Appends a node the pass made and records what it computes at batch 1.
    mutating func append(_ node: Node) throws {
        nodes.append(node)
        let ins = try planValues(node)
        record(node, ins, try lower(node, ins), node.outputs.map { _ in .opaque })
    }

    private mutating func planValues(_ node: Node) throws -> [PlanValue?] {
        try node.inputs.map { name in
            if name.isEmpty { return nil }
            if let v = values[name] { return v }
            if let t = graph.initializers[name] { return PlanValue(shape: t.shape, dtype: t.dtype, constant: t) }
            throw GraphError(node: node.name, "input '\(name)' is not produced by any earlier node, input or initializer")
        }
    }

    /// Stores each output's shape, its elements when known before the run (constants and
    /// shape computations, evaluated here), and its fact.
    private mutating func record(_ node: Node, _ ins: [PlanValue?], _ lowered: LoweredOp, _ outFacts: [BatchFact]) {
        let shapeOnly: Bool
        switch node.op {
        case .shape, .size: shapeOnly = true
        default: shapeOnly = false
        }
        let foldable = shapeOnly || ins.allSatisfy { $0 == nil || $0!.constant != nil }
        var outs: [Tensor]?
        if foldable {
            let tensors = lowered.outputs.map { Tensor(zeros: $0.shape, dtype: $0.dtype) }
            lowered.make(ins.map { $0?.constant }, tensors)()
            outs = tensors
        }
        for (i, name) in node.outputs.enumerated() where !name.isEmpty && i < lowered.outputs.count {
            values[name] = PlanValue(shape: lowered.outputs[i].shape, dtype: lowered.outputs[i].dtype, constant: outs?[i])
            facts[name] = i < outFacts.count ? outFacts[i] : .opaque
        }
    }

    /// The error for a node that keeps the batch from being generalised.
    func pinned(_ node: Node, _ why: String) -> BatchPinned {
        BatchPinned(error: GraphError(node: node.name, "\(node.sourceOp) \(why), so the batch of 1 this model was exported with cannot be generalised; "
            + "re-export it with a dynamic batch (torch.onnx.export(..., dynamo=True, dynamic_shapes=...) "
            + "or dynamo=False with dynamic_axes={'input': {0: 'N'}})"))
    }

    /// The output facts of `node`, rewriting its operands where they pin the batch.
    mutating func transfer(_ node: inout Node, _ ins: [PlanValue?], _ inFacts: [BatchFact],
                           _ outShapes: [[Int]]) throws -> [BatchFact] {
        let batchedIndex = inFacts.indices.filter { if case .batched = inFacts[$0] { return true }; return false }
        guard let first = batchedIndex.first, case .batched(let ax) = inFacts[first] else {
            switch node.op {
            case .shape, .size: return outShapes.map { _ in .opaque }
            default:
                let constant = inFacts.allSatisfy { $0 == .constant }
                return outShapes.map { _ in constant ? .constant : .opaque }
            }
        }
        let b = ax.axis
        let x = ins[first]!.shape
        let same = [BatchFact.batched(ax)]
        func at(_ axis: Int) -> [BatchFact] { [.batched(ax.moved(to: axis))] }
        switch node.op {
        case .unary, .cast, .dropout, .identity, .lrn, .dropoutTraining:
            return same + outShapes.dropFirst().map { _ in .opaque }
        case .clip, .batchNorm, .instanceNorm, .batchNormTraining, .channelChain, .prelu:
            guard first == 0 else { throw pinned(node, "takes a batch-dependent parameter") }
            return same + outShapes.dropFirst().map { _ in .opaque }
        case .softmax(_, let axis, _):
            guard (axis < 0 ? axis + x.count : axis) != b else { throw pinned(node, "normalises along the batch axis") }
            return same
        case .layerNorm(let axis, _):
            guard (axis < 0 ? axis + x.count : axis) > b else { throw pinned(node, "normalises over the batch axis") }
            return same
        case .conv, .convTranspose, .pool, .globalPool, .depthToSpace, .spaceToDepth:
            guard first == 0, b == 0 else { throw pinned(node, "is not batched along axis 0") }
            return same
        case .resize(let params):
            guard first == 0 else { throw pinned(node, "resizes to a batch-dependent size") }
            if node.inputs.count > 3, !node.inputs[3].isEmpty, inFacts[3] == .constant {
                try resizeSizes(&node, ins, params, ax)
            }
            return same
        case .pad:
            if let pads = ins.count > 1 ? ins[1]?.constant : nil, inFacts.count < 4 || node.inputs[3].isEmpty,
               pads.count == 2 * x.count, pads.int(at: b) != 0 || pads.int(at: b + x.count) != 0 {
                throw pinned(node, "pads the batch axis")
            }
            return same
        case .binary, .variadic, .select:
            return [try broadcast(node, ins, inFacts, rank: outShapes[0].count)]
        case .gemm(let transA, let transB, _, _):
            if first == 0 && b == (transA ? 1 : 0) && batchedIndex == [0] { return at(0) }
            if first == 1 && b == (transB ? 0 : 1) && batchedIndex == [1] { return at(1) }
            throw pinned(node, "multiplies along the batch axis")
        case .matMul:
            return [try matMulFact(node, ins, inFacts, rank: outShapes[0].count)]
        case .reshape(let allowZero):
            return [try reshape(&node, ins, inFacts, ax, out: outShapes[0], allowZero: allowZero)]
        case .flatten(let axis):
            let a = axis < 0 ? axis + x.count : axis
            let group = b < a ? 0..<a : a..<x.count
            return [.batched(BatchAxis(axis: b < a ? 0 : 1, outer: x[group.lowerBound..<b].reduce(ax.outer, *),
                                       per: x[(b + 1)..<group.upperBound].reduce(ax.per, *)))]
        case .transpose(let perm):
            let p = perm ?? Array((0..<x.count).reversed())
            guard let a = p.firstIndex(of: b) else { throw pinned(node, "drops the batch axis") }
            return at(a)
        case .concat(let axis):
            let a = axis < 0 ? axis + x.count : axis
            guard a != b else { throw pinned(node, "concatenates along the batch axis") }
            try concat(&node, ins, inFacts, ax, batchedInput: first)
            return same
        case .split(let axis, _):
            guard first == 0, (axis < 0 ? axis + x.count : axis) != b else { throw pinned(node, "splits the batch") }
            return outShapes.map { _ in .batched(ax) }
        case .slice:
            guard first == 0 else { throw pinned(node, "slices with batch-dependent bounds") }
            try slice(&node, ins, inFacts, ax)
            return same
        case .gather(let axis):
            let a = axis < 0 ? axis + x.count : axis
            guard first == 0, batchedIndex == [0] else { throw pinned(node, "gathers with batch-dependent indices") }
            if a == b { return [try gatherFlat(&node, ins, inFacts, ax)] }
            return at(b < a ? b : b + ins[1]!.shape.count - 1)
        case .gatherElements(let axis):
            guard (axis < 0 ? axis + x.count : axis) != b else { throw pinned(node, "gathers along the batch axis") }
            return same
        case .unsqueeze:
            let r = outShapes[0].count
            let axes = Set(ins[1]?.constant.map { t in (0..<t.count).map { Int(t.int(at: $0)) }.map { $0 < 0 ? $0 + r : $0 } } ?? [])
            let kept = (0..<r).filter { !axes.contains($0) }
            return at(kept[b])
        case .squeeze:
            return [try squeeze(&node, ins, ax)]
        case .expand:
            guard first == 0 else { throw pinned(node, "expands to a batch-dependent shape") }
            return [try expand(&node, ins, inFacts, ax, rank: outShapes[0].count)]
        case .tile:
            guard first == 0 else { throw pinned(node, "tiles by batch-dependent repeats") }
            if let reps = ins[1]?.constant, reps.count == x.count, reps.int(at: b) != 1 {
                throw pinned(node, "repeats along the batch axis")
            }
            return same
        case .reduce(_, let attrAxes, let keepDims, let noop):
            var axes = attrAxes ?? []
            if node.inputs.count > 1, !node.inputs[1].isEmpty, let t = ins[1]?.constant {
                axes = (0..<t.count).map { Int(t.int(at: $0)) }
            }
            axes = axes.map { $0 < 0 ? $0 + x.count : $0 }
            if axes.isEmpty && noop { return same }
            guard !axes.isEmpty, !axes.contains(b) else { throw pinned(node, "reduces over the batch axis") }
            return at(keepDims ? b : b - axes.filter { $0 < b }.count)
        case .argExtreme(_, let axis, let keepDims, _):
            let a = axis < 0 ? axis + x.count : axis
            guard a != b else { throw pinned(node, "reduces over the batch axis") }
            return at(keepDims || a > b ? b : b - 1)
        case .shape, .size, .constantOfShape, .range:
            return outShapes.map { _ in .opaque }
        case .constant:
            return [.constant]
        case .castLike, .reinterpretBits:
            guard first == 0 else { throw pinned(node, "takes its type from a batch-dependent value") }
            return same + outShapes.dropFirst().map { _ in .opaque }
        case .gatherND, .scatterND, .scatterElements, .cumSum, .cumProd, .topK, .oneHot, .triangle, .gridSample,
             .compress, .unique, .recurrent, .dft, .col2im, .nonMaxSuppression, .linearAttention, .determinant, .maxUnpool:
            throw pinned(node, "has no batch rule yet")
        }
    }
}
