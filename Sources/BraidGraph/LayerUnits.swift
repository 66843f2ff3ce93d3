import BraidTensor

/// A trainable layer as fine-tuning counts it: one convolution or dense product together
/// with its bias and the batch normalisation that directly follows it.
public struct LayerUnit: Sendable {
    /// Position in the ordered list (0 = closest to the input).
    public var index: Int
    /// The node of the convolution or dense product.
    public var node: String
    public var kind: String
    /// Names of the initializers the unit owns (weight, bias, BN scale/shift/statistics).
    public var parameters: [String]
    public var parameterCount: Int
}

extension Graph {
    /// The ordered layer units: every Conv, ConvTranspose, Gemm or MatMul whose weight is an
    /// initializer, in node order, each with its bias and a directly following BatchNorm.
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
            if let out = n.outputs.first, let c = consumers[out], c.count == 1,
               case .batchNorm = nodes[c[0]].op {
                params += nodes[c[0]].inputs.dropFirst().filter { initializers[$0] != nil }
            }
            let count = params.reduce(0) { $0 + (initializers[$1]?.count ?? 0) }
            units.append(LayerUnit(index: units.count, node: n.name, kind: kind,
                                   parameters: params, parameterCount: count))
        }
        return units
    }
}
