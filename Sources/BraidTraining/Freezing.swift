import BraidGraph
import BraidTensor

/// What a training run updates: parameter names, and the batch normalisations that run in
/// training mode.
public struct TrainingSetup: Sendable {
    /// The graph with trained batch normalisations switched to training mode.
    public var graph: Graph
    public var trainable: Set<String>
    /// Layer units of the backbone (the new head excluded), in order.
    public var units: [LayerUnit]
    public var frozenDepth: Int
}

extension Graph {
    /// Freezes the first `depth` layer units of the backbone and trains the rest and the
    /// head (parameters named `head.*`). A frozen unit's batch normalisation runs in
    /// inference mode with its running statistics (Keras's rule); a trained one uses batch
    /// statistics and updates its running ones with `momentum`. Names in `freezeNames`
    /// (parameters or unit nodes) are frozen whatever the depth.
    public func trainingSetup(freezeDepth depth: Int, freezeNames: Set<String> = [],
                              bnMomentum: Float = 0.1) throws -> TrainingSetup {
        let all = layerUnits
        let units = all.filter { !$0.parameters.contains { $0.hasPrefix("head.") } }
        guard depth >= 0 && depth <= units.count else {
            throw GraphError(node: nil, "freeze depth \(depth) is outside 0...\(units.count) (the model has \(units.count) layer units)")
        }
        var g = self
        var trainable = Set(initializers.keys.filter { $0.hasPrefix("head.") })
        var consumers: [String: [Int]] = [:]
        for (i, n) in nodes.enumerated() { for v in n.inputs { consumers[v, default: []].append(i) } }
        let nodeIndex = Dictionary(nodes.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
        for u in units[depth...] where !freezeNames.contains(u.node) {
            guard let ni = nodeIndex[u.node] else { continue }
            let n = nodes[ni]
            for p in n.inputs.dropFirst() where initializers[p]?.dtype.isFloat == true && !freezeNames.contains(p) {
                trainable.insert(p)
            }
            if let out = n.outputs.first, let c = consumers[out], c.count == 1,
               case .batchNorm(let eps) = nodes[c[0]].op {
                var bn = g.nodes[c[0]]
                bn.op = .batchNormTraining(epsilon: eps, momentum: bnMomentum)
                bn.outputs = [bn.outputs[0], bn.name + "::batch_mean", bn.name + "::batch_invstd"]
                g.nodes[c[0]] = bn
                for p in bn.inputs[1...2] where !freezeNames.contains(p) { trainable.insert(p) }
            }
        }
        if depth < units.count, let first = nodeIndex[units[depth].node] {
            g.trainNormalizations(after: first, trainable: &trainable, freezeNames: freezeNames, bnMomentum: bnMomentum)
        }
        return TrainingSetup(graph: g, trainable: trainable, units: units, frozenDepth: depth)
    }

    /// Normalisations that belong to no layer unit (DenseNet's and pre-activation ResNets'
    /// batch norms before their convolutions, transformers' layer norms) train like the
    /// units around them: from node `first` (the first trained unit) on, their scale and
    /// shift are parameters, and a batch norm runs with batch statistics, as PyTorch's
    /// fine-tuning in `train()` mode does. Batch norms that follow a unit were handled with it.
    public mutating func trainNormalizations(after first: Int, trainable: inout Set<String>, freezeNames: Set<String> = [],
                                      bnMomentum: Float) {
        for i in nodes.indices where i > first && !freezeNames.contains(nodes[i].name) {
            let n = nodes[i]
            switch n.op {
            case .batchNorm(let eps):
                var bn = n
                bn.op = .batchNormTraining(epsilon: eps, momentum: bnMomentum)
                bn.outputs = [bn.outputs[0], bn.name + "::batch_mean", bn.name + "::batch_invstd"]
                nodes[i] = bn
                for p in n.inputs[1...2] where initializers[p]?.dtype.isFloat == true && !freezeNames.contains(p) {
                    trainable.insert(p)
                }
            case .layerNorm, .instanceNorm:
                for p in n.inputs.dropFirst() where !p.isEmpty && initializers[p]?.dtype.isFloat == true
                    && !freezeNames.contains(p) {
                    trainable.insert(p)
                }
            default:
                continue
            }
        }
    }
}
