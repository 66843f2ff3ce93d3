import BraidGraph
import BraidTensor
import Foundation

/// Where a model's features end and its original classifier begins.
public struct FeatureCut: Sendable {
    /// The value fed to the original classifier.
    public var feature: String
    /// The original classifier's node (nil when the cut was given by name).
    public var classifier: String?
    /// True when the feature is a spatial map `[N, C, H, W]` that the new head must pool.
    public var needsPooling: Bool

    public init(feature: String, classifier: String?, needsPooling: Bool) {
        self.feature = feature; self.classifier = classifier; self.needsPooling = needsPooling
    }
}

extension Graph {
    /// Finds the input of the final classifier by walking back from the first output over
    /// trailing ops (Softmax, Identity, Flatten, Reshape, Dropout, a bias Add, global
    /// pooling and transposes) to the last dense product (Gemm/MatMul with a weight
    /// initializer), to a convolution followed by global pooling (Keras's mini-Xception
    /// ends Conv -> GlobalAveragePooling -> Softmax), or to a 1x1 convolution on globally
    /// pooled features.
    public func findFeatureCut() throws -> FeatureCut {
        guard let start = outputs.first?.name else { throw GraphError(node: nil, "the model has no outputs") }
        var producer: [String: Node] = [:]
        for n in nodes { for o in n.outputs { producer[o] = n } }
        var value = start
        var sawGlobalPool = false
        for _ in 0..<64 {
            guard let n = producer[value] else { break }
            switch n.op {
            case .gemm, .matMul:
                if n.inputs.count > 1, initializers[n.inputs[1]] != nil {
                    return FeatureCut(feature: n.inputs[0], classifier: n.name, needsPooling: false)
                }
            case .conv where sawGlobalPool && n.inputs.count > 1 && initializers[n.inputs[1]] != nil:
                return FeatureCut(feature: n.inputs[0], classifier: n.name, needsPooling: true)
            case .conv(let p) where n.inputs.count > 1 && initializers[n.inputs[1]] != nil
                && p.kernel.allSatisfy({ $0 == 1 }) && p.group == 1 && Self.followsGlobalPool(n.inputs[0], producer):
                // A 1x1 convolution on globally pooled features is a dense layer (Keras's
                // MobileNetV3 ends GlobalAveragePooling(keepdims) -> Conv2D -> ... -> Conv2D
                // 'Logits' -> Flatten -> Softmax).
                return FeatureCut(feature: n.inputs[0], classifier: n.name, needsPooling: true)
            case .globalPool:
                sawGlobalPool = true
                value = n.inputs[0]; continue
            case .reduce(.mean, _, _, _) where spatialMean(n):
                // The dynamo exporter writes adaptive average pooling to 1x1 as a mean over
                // the last two axes (SqueezeNet's classifier: Conv -> ReLU -> ReduceMean).
                sawGlobalPool = true
                value = n.inputs[0]; continue
            case .softmax, .identity, .flatten, .reshape, .dropout, .transpose, .squeeze, .unary, .cast:
                value = n.inputs[0]; continue
            case .binary(.add), .binary(.mul):
                // A bias or scale: follow the operand that is not a constant.
                if let other = n.inputs.first(where: { initializers[$0] == nil }) { value = other; continue }
            case .pool:
                value = n.inputs[0]; continue
            default:
                break
            }
            throw TrainingError("node '\(n.name)': cannot find the classifier: \(n.sourceOp) is not a dense layer or a trailing op (name the feature node)",
                                setting: "featureNode")
        }
        throw TrainingError("cannot find the classifier from output '\(start)' (name the feature node)", setting: "featureNode")
    }

    /// Whether `n` is a mean over the spatial axes of an NCHW value only (2 and 3, or -1 and -2,
    /// given as an attribute or a constant input): a global average pooling.
    func spatialMean(_ n: Node) -> Bool {
        guard case .reduce(.mean, let attr, _, _) = n.op else { return false }
        let axes = attr ?? (n.inputs.count > 1 ? initializers[n.inputs[1]].map { $0.intArray.map(Int.init) } : nil)
        guard let axes, !axes.isEmpty else { return false }
        return Set(axes) == [2, 3] || Set(axes) == [-1, -2]
    }

    /// Whether `value` comes from a global pooling through ops that keep a 1x1 map 1x1
    /// (activations, dropout, casts, 1x1 convolutions, constant bias or scale).
    static func followsGlobalPool(_ value: String, _ producer: [String: Node]) -> Bool {
        var v = value
        for _ in 0..<16 {
            guard let n = producer[v] else { return false }
            switch n.op {
            case .globalPool: return true
            case .unary, .dropout, .identity, .cast, .binary(.add), .binary(.mul):
                v = n.inputs[0]
            case .conv(let p) where p.kernel.allSatisfy({ $0 == 1 }):
                v = n.inputs[0]
            default:
                return false
            }
        }
        return false
    }

    /// This graph with its classifier replaced by a new linear head for `classes` classes
    /// on the value `cut.feature`. The new graph's single output is `logits` `[N, classes]`;
    /// its parameters are `head.weight` `[classes, F]` and `head.bias` `[classes]`,
    /// initialised like PyTorch's Linear (uniform in +-1/sqrt(F)) from `seed`.
    /// `featureSize` is F, the feature's channel count.
    public func replacingHead(cut: FeatureCut, classes: Int, featureSize: Int, seed: UInt64) -> Graph {
        // A source's own values may already be called `logits` (torch exports often name
        // their output so) or `head.*`: two producers of one name would send the new head's
        // gradient into the old classifier's backward as well. Rename the source's first.
        let (renamed, map) = renamingValues(Self.headValueNames, nodes: Self.headNodeNames)
        var g = renamed
        var feature = map[cut.feature] ?? cut.feature
        var extra: [Node] = []
        if cut.needsPooling {
            extra.append(Node(name: "head.pool", op: .globalPool(.average), inputs: [feature],
                              outputs: ["head.pooled"], sourceOp: "GlobalAveragePool"))
            feature = "head.pooled"
        }
        extra.append(Node(name: "head.flatten", op: .flatten(axis: 1), inputs: [feature],
                          outputs: ["head.features"], sourceOp: "Flatten"))
        extra.append(Node(name: "head.dense", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1),
                          inputs: ["head.features", "head.weight", "head.bias"], outputs: ["logits"],
                          sourceOp: "Gemm"))
        var rng = SplitMix64(seed: seed)
        let bound = 1 / Float(featureSize).squareRoot()
        g.initializers["head.weight"] = Tensor(shape: [classes, featureSize],
            floats: (0..<(classes * featureSize)).map { _ in rng.uniform(-bound, bound) })
        g.initializers["head.bias"] = Tensor(shape: [classes], floats: (0..<classes).map { _ in rng.uniform(-bound, bound) })
        g.nodes += extra
        g.outputs = [ValueDecl(name: "logits", dtype: .float32, shape: nil)]
        return Passes.removeDeadCode(g)
    }
}

extension Graph {
    /// The values and nodes `replacingHead` adds.
    static let headValueNames: Set<String> = ["logits", "head.weight", "head.bias", "head.pooled", "head.features"]
    static let headNodeNames: Set<String> = ["head.pool", "head.flatten", "head.dense"]

    /// This graph with every value (input, output, initializer, node input or output) named in
    /// `values` and every node named in `nodes` given a fresh name (`NAME.source`, then
    /// `NAME.source2`, ...); returns the value renames made.
    public func renamingValues(_ values: Set<String>, nodes nodeNames: Set<String> = []) -> (Graph, [String: String]) {
        var used = Set(initializers.keys).union(inputs.map(\.name)).union(outputs.map(\.name))
        for n in nodes { used.formUnion(n.outputs); used.formUnion(n.inputs); used.insert(n.name) }
        func fresh(_ name: String) -> String {
            var candidate = name + ".source", k = 2
            while used.contains(candidate) || values.contains(candidate) || nodeNames.contains(candidate) {
                candidate = name + ".source\(k)"; k += 1
            }
            used.insert(candidate)
            return candidate
        }
        var map: [String: String] = [:]
        for name in values.sorted() where used.contains(name) { map[name] = fresh(name) }
        var g = self
        for (old, new) in map {
            if let t = g.initializers.removeValue(forKey: old) { g.initializers[new] = t }
        }
        g.inputs = g.inputs.map { var d = $0; d.name = map[d.name] ?? d.name; return d }
        g.outputs = g.outputs.map { var d = $0; d.name = map[d.name] ?? d.name; return d }
        for i in g.nodes.indices {
            g.nodes[i].inputs = g.nodes[i].inputs.map { map[$0] ?? $0 }
            g.nodes[i].outputs = g.nodes[i].outputs.map { map[$0] ?? $0 }
            if nodeNames.contains(g.nodes[i].name) { g.nodes[i].name = fresh(g.nodes[i].name) }
        }
        return (g, map)
    }
}
