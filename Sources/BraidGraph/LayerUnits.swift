import BraidTensor

/// A trainable layer as fine-tuning counts it: one convolution or dense product together
/// with its bias (its own operand, or an Add of a constant that directly follows a MatMul)
/// and the batch normalisation that directly follows it.
public struct LayerUnit: Sendable {
    /// Position in the ordered list (0 = closest to the input).
    public var index: Int
    /// The node of the convolution or dense product.
    public var node: String
    public var kind: String
    /// Names of the initializers the unit owns (weight, bias, BN scale/shift/statistics).
    /// Which of them train is `Graph.parameterAnchors`' business (statistics do not).
    public var parameters: [String]
    public var parameterCount: Int
}

extension Graph {
    /// The ordered layer units: every Conv, ConvTranspose, Gemm or MatMul whose weight is an
    /// initializer, in node order, each with its bias and a directly following BatchNorm.
    /// Other parameters (normalisations elsewhere, layer scales, embeddings) belong to no unit;
    /// `trainingSetup` trains them with the units after the first trained one.
    public var layerUnits: [LayerUnit] {
        var consumers: [String: [Int]] = [:]
        for (i, n) in nodes.enumerated() { for v in n.inputs { consumers[v, default: []].append(i) } }
        var units: [LayerUnit] = []
        for n in nodes {
            let kind: String
            switch n.op {
            case .conv: kind = "conv"
            case .convTranspose: kind = "conv-transpose"
            case .gemm, .matMul: kind = "dense"
            default: continue
            }
            let weights = n.inputs.dropFirst().filter { !$0.isEmpty && initializers[$0] != nil }
            guard !weights.isEmpty, initializers[n.inputs[0]] == nil else { continue }
            var params = Array(weights)
            if let out = n.outputs.first, let c = consumers[out], c.count == 1 {
                let next = nodes[c[0]]
                switch next.op {
                case .batchNorm:
                    params += next.inputs.dropFirst().filter { initializers[$0] != nil }
                case .binary(.add) where n.op.isMatMul:
                    // PyTorch's Linear on a sequence exports as MatMul then Add(bias).
                    params += next.inputs.filter { $0 != out && initializers[$0]?.dtype.isFloat == true }
                default:
                    break
                }
            }
            let count = params.reduce(0) { $0 + (initializers[$1]?.count ?? 0) }
            units.append(LayerUnit(index: units.count, node: n.name, kind: kind,
                                   parameters: params, parameterCount: count))
        }
        return units
    }
}

extension Graph {
    /// Every float initializer the graph uses as a trainable parameter, with the index of the
    /// node where it is first used: the weights and biases of convolutions and dense products
    /// (also a bias added after a MatMul), normalisation scales and shifts, and tensors added
    /// to, multiplied with or concatenated to activations (layer scales, position embeddings,
    /// class tokens, relative-position biases), or gathered from (embedding tables).
    ///
    /// A parameter reaches the graph's outputs through differentiable operands, possibly after
    /// ops that only rearrange it (Identity, Cast, Reshape, Transpose, Expand, Slice...); it is
    /// attributed to the node that consumes the rearranged tensor (so `MatMul(x, Transpose(W))`
    /// attributes W to the MatMul). Not parameters: batch-norm running statistics, shapes and
    /// indices, scalars combined element-wise with activations (an attention scale, GELU's
    /// constants), and tensors that only feed non-parameter operands (clip bounds, a Where's
    /// fill values, a scatter's updates).
    public var parameterAnchors: [String: Int] {
        var consumers: [String: [(node: Int, slot: Int)]] = [:]
        for (i, n) in nodes.enumerated() {
            for (k, v) in n.inputs.enumerated() where !v.isEmpty { consumers[v, default: []].append((i, k)) }
        }
        // Values from which an output is reachable through differentiable operands.
        var reach = Set(outputs.map(\.name))
        for n in nodes.reversed() where n.outputs.contains(where: { reach.contains($0) }) {
            for k in n.op.differentiableInputs(count: n.inputs.count) where !n.inputs[k].isEmpty {
                reach.insert(n.inputs[k])
            }
        }
        var anchors: [String: Int] = [:]
        for (name, t) in initializers where t.dtype.isFloat && reach.contains(name) {
            var frontier = [name], seen = Set<String>(), anchor: Int?
            while let v = frontier.popLast() {
                guard seen.insert(v).inserted else { continue }
                for (i, k) in consumers[v] ?? [] where nodes[i].outputs.contains(where: { reach.contains($0) }) {
                    let n = nodes[i]
                    if n.op.rearrangesOperand, k == 0, let out = n.outputs.first, !out.isEmpty {
                        frontier.append(out)
                    } else if n.op.takesParameter(at: k, scalar: t.count == 1) {
                        anchor = min(anchor ?? i, i)
                    }
                }
            }
            if let anchor { anchors[name] = anchor }
        }
        return anchors
    }
}

extension Op {
    /// Operand positions a gradient flows to (shapes, indices, conditions and bounds excluded).
    public func differentiableInputs(count: Int) -> [Int] {
        let all = Array(0..<count)
        switch self {
        case .shape, .size, .constantOfShape, .range, .argExtreme, .constant, .oneHot, .nonMaxSuppression, .unique:
            return []
        case .binary(let b):
            switch b {
            case .add, .sub, .mul, .div, .pow, .max, .min: return all
            default: return []
            }
        case .unary(let u):
            switch u {
            case .not, .isNaN, .isInf, .bitwiseNot, .sign, .floor, .ceil, .round: return []
            default: return all
            }
        case .select: return [1, 2].filter { $0 < count }
        case .batchNorm, .batchNormTraining: return [0, 1, 2].filter { $0 < count }
        case .scatterND, .scatterElements: return [0, 2].filter { $0 < count }
        case .reshape, .flatten, .transpose, .expand, .tile, .unsqueeze, .squeeze, .slice, .gather, .gatherElements,
             .gatherND, .split, .pad, .resize, .reduce, .cumSum, .cumProd, .clip, .triangle, .depthToSpace, .spaceToDepth,
             .dropout, .dropoutTraining, .softmax, .pool, .globalPool, .lrn, .topK, .compress, .cast, .castLike:
            return count > 0 ? [0] : []
        default:
            return all
        }
    }

    var isMatMul: Bool {
        if case .matMul = self { return true }
        return false
    }

    /// True for ops that pass operand 0 on rearranged or selected, not combined with anything.
    var rearrangesOperand: Bool {
        switch self {
        case .identity, .cast, .reshape, .flatten, .transpose, .unsqueeze, .squeeze, .expand, .tile, .slice, .split:
            return true
        default:
            return false
        }
    }

    /// True when a tensor fed at operand `slot` of this op is one of the layer's parameters.
    func takesParameter(at slot: Int, scalar: Bool) -> Bool {
        switch self {
        case .conv, .convTranspose, .gemm, .matMul:
            return true
        case .batchNorm, .batchNormTraining, .instanceNorm, .layerNorm:
            return slot == 1 || slot == 2
        case .prelu:
            return slot == 1
        case .gather:
            return slot == 0
        case .binary(.add), .binary(.sub), .binary(.mul), .binary(.div), .variadic(.sum), .variadic(.mean), .concat:
            return !scalar
        default:
            return false
        }
    }
}
