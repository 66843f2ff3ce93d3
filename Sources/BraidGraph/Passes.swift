import BraidTensor

/// Graph-to-graph rewrites that keep outputs the same.
public enum Passes {
    /// Removes nodes none of whose outputs reaches a graph output, initializers no node
    /// reads, and graph inputs that had such an initializer as their default (an input a pass
    /// folded away must not become one the caller has to feed).
    public static func removeDeadCode(_ g: Graph) -> Graph {
        var live = Set(g.outputs.map(\.name))
        var keep = [Bool](repeating: false, count: g.nodes.count)
        for i in stride(from: g.nodes.count - 1, through: 0, by: -1) {
            let n = g.nodes[i]
            if n.outputs.contains(where: { live.contains($0) }) {
                keep[i] = true
                for name in n.inputs where !name.isEmpty { live.insert(name) }
            }
        }
        var out = g
        out.nodes = zip(g.nodes, keep).filter(\.1).map(\.0)
        out.initializers = g.initializers.filter { live.contains($0.key) }
        out.inputs = g.inputs.filter { live.contains($0.name) || g.initializers[$0.name] == nil }
        return out
    }

    /// Replaces every node whose inputs are all initializers (or results of such nodes) by an
    /// initializer holding its result. Inputs that a caller may feed are never folded.
    public static func foldConstants(_ g: Graph) throws -> Graph {
        var out = g
        let fed = Set(g.feedInputs.map(\.name))
        var consts = g.initializers.filter { !fed.contains($0.key) }
        var nodes: [Node] = []
        for node in g.nodes {
            let allConst = node.inputs.allSatisfy { $0.isEmpty || consts[$0] != nil }
            guard allConst else { nodes.append(node); continue }
            let ins: [PlanValue?] = node.inputs.map { name in
                name.isEmpty ? nil : consts[name].map { PlanValue(shape: $0.shape, dtype: $0.dtype, constant: $0) }
            }
            let lowered = try lower(node, ins)
            let outs = lowered.outputs.map { Tensor(zeros: $0.shape, dtype: $0.dtype) }
            lowered.make(node.inputs.map { $0.isEmpty ? nil : consts[$0] }, outs)()
            for (name, t) in zip(node.outputs, outs) where !name.isEmpty { consts[name] = t }
        }
        out.nodes = nodes
        out.initializers = consts
        return removeDeadCode(out)
    }

    /// Folds an inference-mode batch normalisation into the convolution that feeds it, when
    /// that convolution's weights are initializers and its output has no other reader.
    public static func foldBatchNorm(_ g: Graph) -> Graph {
        var out = g
        var readers: [String: Int] = [:]
        for n in g.nodes { for i in n.inputs where !i.isEmpty { readers[i, default: 0] += 1 } }
        let outputs = Set(g.outputs.map(\.name))
        var producer: [String: Int] = [:]
        for (i, n) in g.nodes.enumerated() { for o in n.outputs { producer[o] = i } }
        var removed = Set<Int>()
        for (bi, bn) in g.nodes.enumerated() {
            guard case .batchNorm(let eps) = bn.op, bn.inputs.count >= 5,
                  let ci = producer[bn.inputs[0]], !removed.contains(ci) else { continue }
            var conv = out.nodes[ci]
            guard case .conv = conv.op, readers[conv.outputs[0]] == 1, !outputs.contains(conv.outputs[0]),
                  let w = out.initializers[conv.inputs[1]], w.dtype.isFloat,
                  let scale = out.initializers[bn.inputs[1]], let shift = out.initializers[bn.inputs[2]],
                  let mean = out.initializers[bn.inputs[3]], let variance = out.initializers[bn.inputs[4]]
            else { continue }
            let m = w.shape[0]
            guard scale.count == m, shift.count == m, mean.count == m, variance.count == m else { continue }
            let per = w.count / m
            let nw = w.copy()
            let nb = Tensor(zeros: [m])
            let oldBias = conv.inputs.count > 2 && !conv.inputs[2].isEmpty ? out.initializers[conv.inputs[2]] : nil
            if conv.inputs.count > 2 && !conv.inputs[2].isEmpty && oldBias == nil { continue }
            for o in 0..<m {
                let s = scale.floats[o] / (variance.floats[o] + eps).squareRoot()
                for k in 0..<per { nw.floats[o * per + k] *= s }
                let b0 = oldBias?.floats[o] ?? 0
                nb.floats[o] = (b0 - mean.floats[o]) * s + shift.floats[o]
            }
            let wName = conv.name + "::folded_weight", bName = conv.name + "::folded_bias"
            out.initializers[wName] = nw
            out.initializers[bName] = nb
            conv.inputs = [conv.inputs[0], wName, bName]
            conv.outputs = [bn.outputs[0]]
            out.nodes[ci] = conv
            removed.insert(bi)
        }
        out.nodes = out.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        return removeDeadCode(out)
    }

    /// The inference pipeline: fold constants, fold batch norms, drop dead code.
    public static func optimizeForInference(_ g: Graph) throws -> Graph {
        foldBatchNorm(try foldConstants(g))
    }
}
