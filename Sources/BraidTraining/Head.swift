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
    /// initializer) or to a convolution followed by global pooling (Keras's mini-Xception
    /// ends Conv -> GlobalAveragePooling -> Softmax).
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
            case .globalPool:
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
            throw GraphError(node: n.name, "cannot find the classifier: \(n.sourceOp) is not a dense layer or a trailing op (give --feature-node NAME)")
        }
        throw GraphError(node: nil, "cannot find the classifier from output '\(start)' (give --feature-node NAME)")
    }

    /// This graph with its classifier replaced by a new linear head for `classes` classes
    /// on the value `cut.feature`. The new graph's single output is `logits` `[N, classes]`;
    /// its parameters are `head.weight` `[classes, F]` and `head.bias` `[classes]`,
    /// initialised like PyTorch's Linear (uniform in +-1/sqrt(F)) from `seed`.
    /// `featureSize` is F, the feature's channel count.
    public func replacingHead(cut: FeatureCut, classes: Int, featureSize: Int, seed: UInt64) -> Graph {
        var g = self
        var feature = cut.feature
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

/// A small seeded generator (SplitMix64) for reproducible initialisation and masks.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
}
