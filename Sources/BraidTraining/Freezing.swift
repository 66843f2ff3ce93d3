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
        let first = depth < units.count ? units[depth] : nil
        let (g, trainable) = training(units: units[depth...].filter { !freezeNames.contains($0.node) }, from: first,
                                      freezeNames: freezeNames, bnMomentum: bnMomentum)
        return TrainingSetup(graph: g, trainable: trainable, units: units, frozenDepth: depth)
    }

    /// This graph with `trained` layer units training (their parameters as `parameterAnchors`
    /// finds them, and the batch norm directly after each switched to batch statistics) and,
    /// from unit `first` on, the parameters that belong to no unit (`trainNormalizations`);
    /// with the trainable names, the head's (`head.*`) among them.
    public func training(units trained: [LayerUnit], from first: LayerUnit?, freezeNames: Set<String> = [],
                         bnMomentum: Float) -> (Graph, Set<String>) {
        var g = self
        var trainable = Set(initializers.keys.filter { $0.hasPrefix("head.") })
        var consumers: [String: [Int]] = [:]
        for (i, n) in nodes.enumerated() { for v in n.inputs { consumers[v, default: []].append(i) } }
        let nodeIndex = Dictionary(nodes.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
        let anchors = parameterAnchors
        for u in trained {
            guard let ni = nodeIndex[u.node] else { continue }
            for p in u.parameters where anchors[p] != nil && !freezeNames.contains(p) { trainable.insert(p) }
            if let out = nodes[ni].outputs.first, let c = consumers[out], c.count == 1,
               let bn = nodes[c[0]].withBatchStatistics(momentum: bnMomentum) {
                g.nodes[c[0]] = bn
                for p in bn.inputs[1...2] where !freezeNames.contains(p) { trainable.insert(p) }
            }
        }
        if let first, let at = nodeIndex[first.node] {
            g.trainNormalizations(after: at, trainable: &trainable, freezeNames: freezeNames, bnMomentum: bnMomentum,
                                  anchors: anchors)
        }
        return (g, trainable)
    }

    /// Parameters that belong to no layer unit train like the units around them: from node
    /// `first` (the first trained unit) on, every parameter `parameterAnchors` finds whose
    /// first use is there or later trains. That covers DenseNet's and pre-activation
    /// ResNets' batch norms before their convolutions, transformers' layer norms, a MatMul's
    /// weight behind a Transpose, layer scales, position embeddings, class tokens and
    /// relative-position biases, as PyTorch's fine-tuning trains them; a parameter first used
    /// before `first` stays frozen with the prefix. A batch norm after `first` runs with batch
    /// statistics, as PyTorch's fine-tuning in `train()` mode does. Layer units' own
    /// parameters are the caller's (a unit after `first` may be frozen).
    public mutating func trainNormalizations(after first: Int, trainable: inout Set<String>, freezeNames: Set<String> = [],
                                             bnMomentum: Float, anchors known: [String: Int]? = nil) {
        let anchors = known ?? parameterAnchors
        let owned = Set(layerUnits.flatMap(\.parameters))
        for i in nodes.indices where i > first && !freezeNames.contains(nodes[i].name) {
            guard !owned.contains(nodes[i].inputs.dropFirst().first ?? ""),
                  let bn = nodes[i].withBatchStatistics(momentum: bnMomentum) else { continue }
            nodes[i] = bn
        }
        for (p, at) in anchors where at >= first && !owned.contains(p) && !freezeNames.contains(p)
            && !freezeNames.contains(nodes[at].name) {
            trainable.insert(p)
        }
    }
}

extension Node {
    /// This inference-mode batch norm run with batch statistics (updating its running ones
    /// with `momentum`), its batch mean and inverse deviation as extra outputs for the
    /// backward pass; nil for any other node.
    func withBatchStatistics(momentum: Float) -> Node? {
        guard case .batchNorm(let eps) = op else { return nil }
        var bn = self
        bn.op = .batchNormTraining(epsilon: eps, momentum: momentum)
        bn.outputs = [outputs[0], name + "::batch_mean", name + "::batch_invstd"]
        return bn
    }
}
