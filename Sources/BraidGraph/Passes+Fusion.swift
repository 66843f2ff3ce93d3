import BraidTensor

extension Passes {
    /// The pipeline for running a graph here: `optimizeForInference`, then
    /// `recognizeHardSwish`, `recognizeGELU`, `fuseConvEpilogues`, `fuseChannelChains` and `markConstantWeights`. The result holds fused convolutions, which only the executor
    /// understands: export and train the graph from `optimizeForInference` (or the imported
    /// one), never this one.
    public static func optimizeForExecution(_ g: Graph) throws -> Graph {
        markConstantWeights(fuseChannelChains(fuseConvEpilogues(recognizeGELU(recognizeHardSwish(try optimizeForInference(g))))))
    }

    /// True for the ONNX (and onnxruntime contrib) ops whose lowering quantizes or dequantizes.
    static func isQuantizationOp(_ sourceOp: String) -> Bool {
        sourceOp.hasPrefix("QLinear") || ["QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QGemm",
                                          "ConvInteger", "MatMulInteger"].contains(sourceOp)
    }

    /// Fuses runs of per-channel steps on one tensor into one `channelChain` node: inference-mode
    /// batch normalisations, and Add, Sub, Mul or Div of the data with an operand that no fed
    /// input reaches (a weight, or a default a caller may override: it is read at each run),
    /// the data on the left for Sub and Div; then an optional activation. DenseNet-121 as the
    /// ONNX model zoo has it runs BatchNormalization, Mul, Add and Relu before each
    /// convolution: four passes over the tensor become one. Each value inside a run must have
    /// one reader and not be a graph output; a run needs at least two nodes.
    public static func fuseChannelChains(_ g: Graph) -> Graph {
        var readers: [String: Int] = [:]
        for n in g.nodes { for v in Set(n.inputs) where !v.isEmpty { readers[v, default: 0] += 1 } }
        let outputs = Set(g.outputs.map(\.name))
        var soleReader: [String: Int] = [:]
        for (i, n) in g.nodes.enumerated() {
            for v in Set(n.inputs) where !v.isEmpty && readers[v] == 1 && !outputs.contains(v) { soleReader[v] = i }
        }
        // Values a fed input reaches.
        var data = Set(g.feedInputs.map(\.name))
        for n in g.nodes where n.inputs.contains(where: data.contains) { data.formUnion(n.outputs) }
        let overridable = Set(g.inputs.map(\.name))
        let constants = g.initializers.filter { !overridable.contains($0.key) }
        // The step `node` makes of data value `x`, with its operands.
        func step(_ node: Node, on x: String) -> (ChannelStep, [String])? {
            guard node.outputs.count == 1, node.inputs.first(where: { !$0.isEmpty }) != nil else { return nil }
            // Quantisation arithmetic must round as written: folding (q - zero point) * scale
            // into one multiply-add moves values across rounding boundaries.
            guard !Passes.isQuantizationOp(node.sourceOp) else { return nil }
            switch node.op {
            case .batchNorm(let epsilon):
                guard node.inputs.count == 5, node.inputs[0] == x,
                      node.inputs[1...].allSatisfy({ !$0.isEmpty && !data.contains($0) }) else { return nil }
                return (.batchNorm(epsilon: epsilon), Array(node.inputs[1...]))
            case .binary(let op) where [.add, .sub, .mul, .div].contains(op):
                guard node.inputs.count == 2 else { return nil }
                let a = node.inputs[0], b = node.inputs[1]
                // Only float operands: shape arithmetic on int64 (Shape -> Div) is data too.
                func isFloat(_ v: String) -> Bool { g.initializers[v]?.dtype == .float32 }
                if a == x && !b.isEmpty && !data.contains(b) && isFloat(b) { return (.binary(op), [b]) }
                if b == x && (op == .add || op == .mul) && !a.isEmpty && !data.contains(a) && isFloat(a) { return (.binary(op), [a]) }
                return nil
            default:
                return nil
            }
        }
        var removed = Set<Int>(), placed: [Int: Node] = [:]
        for (first, start) in g.nodes.enumerated() where !removed.contains(first) {
            guard let x = start.inputs.first(where: { data.contains($0) }), let s0 = step(start, on: x) else { continue }
            var steps = [s0.0], operands = s0.1, members = [first], value = start.outputs[0], tail = [start.sourceOp]
            while let i = soleReader[value], !removed.contains(i), let s = step(g.nodes[i], on: value) {
                steps.append(s.0); operands += s.1; members.append(i); value = g.nodes[i].outputs[0]
                tail.append(g.nodes[i].sourceOp)
            }
            var activation: ConvActivation?
            if let i = soleReader[value], !removed.contains(i), g.nodes[i].inputs.first == value,
               let act = fusedActivation(g.nodes[i], constants) {
                activation = act; members.append(i); value = g.nodes[i].outputs[0]; tail.append(g.nodes[i].sourceOp)
            }
            guard members.count >= 2 else { continue }
            removed.formUnion(members)
            placed[members.last!] = Node(name: start.name, op: .channelChain(steps: steps, activation: activation),
                                         inputs: [x] + operands, outputs: [value], sourceOp: tail.joined(separator: "+"))
        }
        return replacingNodes(g, placed: placed, removed: removed)
    }

    /// Replaces `Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)` (HardSwish as exporters write it for
    /// opsets before 14, e.g. PaddlePaddle's ppocr models), or the same ending in a `Mul` by
    /// 1/6, by one HardSwish node, which a convolution before it then absorbs. The three
    /// intermediate values must each have one reader and not be graph outputs; the constants
    /// must be float scalars of the graph. Four passes over the tensor become one (or none).
    /// Not in a quantized graph: there the next quantize step rounds to integers, and the one
    /// HardSwish rounds differently from the four ops as written (onnxruntime runs those).
    public static func recognizeHardSwish(_ g: Graph) -> Graph {
        guard !g.nodes.contains(where: { isQuantizationOp($0.sourceOp) }) else { return g }
        let index = PatternIndex(g), scalar = index.scalar, next = index.next
        var removed = Set<Int>(), placed: [Int: Node] = [:]
        for (ai, add) in g.nodes.enumerated() {
            guard case .binary(.add) = add.op, add.inputs.count == 2, add.outputs.count == 1 else { continue }
            let x: String
            if scalar(add.inputs[1]) == 3 { x = add.inputs[0] } else if scalar(add.inputs[0]) == 3 { x = add.inputs[1] } else { continue }
            guard let ci = next(add.outputs[0]), case .clip = g.nodes[ci].op, g.nodes[ci].inputs.first == add.outputs[0],
                  g.nodes[ci].inputs.count == 3, scalar(g.nodes[ci].inputs[1]) == 0, scalar(g.nodes[ci].inputs[2]) == 6,
                  let mi = next(g.nodes[ci].outputs[0]), case .binary(.mul) = g.nodes[mi].op,
                  Set(g.nodes[mi].inputs) == [x, g.nodes[ci].outputs[0]], g.nodes[mi].inputs.count == 2,
                  let di = next(g.nodes[mi].outputs[0]), g.nodes[di].inputs.count == 2,
                  g.nodes[di].inputs[0] == g.nodes[mi].outputs[0] else { continue }
            let last = g.nodes[di]
            switch last.op {
            case .binary(.div) where scalar(last.inputs[1]) == 6: break
            case .binary(.mul) where scalar(last.inputs[1]).map({ abs($0 - 1 / 6) < 1e-7 }) ?? false: break
            default: continue
            }
            guard removed.isDisjoint(with: [ai, ci, mi, di]) else { continue }
            removed.formUnion([ai, ci, mi])
            placed[di] = Node(name: last.name, op: .unary(.hardSwish), inputs: [x], outputs: last.outputs,
                              sourceOp: "Add+Clip+Mul+\(last.sourceOp)")
        }
        return replacingNodes(g, placed: placed, removed: removed)
    }

    /// Replaces GELU as exporters write it before ONNX's `Gelu` (opset 20) by one `gelu` node:
    /// `Erf(x / sqrt 2)` (a `Div` by sqrt 2 or a `Mul` by its inverse), `Add` 1, then the
    /// product with `x` and 0.5 in any of the orders PyTorch's two exporters write
    /// (`(x * p) * 0.5`, `(x * 0.5) * p`, `(p * 0.5) * x`). torchvision's ViT, Swin and ConvNeXt
    /// and MaxViT hold one per block; five passes over the tensor (the scalar `erf` among them)
    /// become one vectorised pass. Every intermediate value must have one reader and not be a
    /// graph output; the constants must be float scalars of the graph. Not in a quantized
    /// graph (the next quantize step would round the one op differently from the five).
    public static func recognizeGELU(_ g: Graph) -> Graph {
        guard !g.nodes.contains(where: { isQuantizationOp($0.sourceOp) }) else { return g }
        let index = PatternIndex(g), scalar = index.scalar, next = index.next
        func close(_ v: Float?, _ want: Float) -> Bool { v.map { abs($0 - want) <= 1e-6 * want } ?? false }
        // `node` as a two-input binary `op` with one operand `value`: the other operand.
        func other(_ node: Node, _ op: BinaryFunction, _ value: String) -> String? {
            guard case .binary(let o) = node.op, o == op, node.inputs.count == 2 else { return nil }
            if node.inputs[0] == value { return node.inputs[1] }
            return node.inputs[1] == value && (op == .add || op == .mul) ? node.inputs[0] : nil
        }
        var producer: [String: Int] = [:]
        for (i, n) in g.nodes.enumerated() { for v in n.outputs { producer[v] = i } }
        var removed = Set<Int>(), placed: [Int: Node] = [:]
        for (ei, erf) in g.nodes.enumerated() {
            guard case .unary(.erf) = erf.op, erf.inputs.count == 1, erf.outputs.count == 1,
                  let di = producer[erf.inputs[0]], next(erf.inputs[0]) == ei else { continue }
            let scaling = g.nodes[di]
            guard case .binary(let sop) = scaling.op, scaling.inputs.count == 2 else { continue }
            let x: String
            if sop == .div, close(scalar(scaling.inputs[1]), Float(2).squareRoot()) {
                x = scaling.inputs[0]
            } else if sop == .mul, close(scalar(scaling.inputs[1]), Float(0.5).squareRoot()) {
                x = scaling.inputs[0]
            } else if sop == .mul, close(scalar(scaling.inputs[0]), Float(0.5).squareRoot()) {
                x = scaling.inputs[1]
            } else { continue }
            guard let ai = next(erf.outputs[0]), let one = other(g.nodes[ai], .add, erf.outputs[0]), scalar(one) == 1,
                  let mi = next(g.nodes[ai].outputs[0]),
                  let factor = other(g.nodes[mi], .mul, g.nodes[ai].outputs[0]) else { continue }
            var members = [di, ei, ai, mi], last = mi
            if factor == x {
                // (x * p) * 0.5
                guard let hi = next(g.nodes[mi].outputs[0]), let half = other(g.nodes[hi], .mul, g.nodes[mi].outputs[0]),
                      scalar(half) == 0.5 else { continue }
                members.append(hi); last = hi
            } else if scalar(factor) == 0.5 {
                // (p * 0.5) * x
                guard let xi = next(g.nodes[mi].outputs[0]), other(g.nodes[xi], .mul, g.nodes[mi].outputs[0]) == x
                else { continue }
                members.append(xi); last = xi
            } else if let hi = producer[factor], next(factor) == mi, let half = other(g.nodes[hi], .mul, x),
                      scalar(half) == 0.5 {
                // (x * 0.5) * p
                members.append(hi)
            } else { continue }
            guard removed.isDisjoint(with: members) else { continue }
            removed.formUnion(members.filter { $0 != last })
            let sources = members.sorted().map { g.nodes[$0].sourceOp }
            placed[last] = Node(name: g.nodes[last].name, op: .unary(.gelu(tanhApproximation: false)), inputs: [x],
                                outputs: g.nodes[last].outputs, sourceOp: sources.joined(separator: "+"))
        }
        return replacingNodes(g, placed: placed, removed: removed)
    }

    /// Marks each convolution whose weight is an initializer that no run can override
    /// (`ConvFusion.constantWeights`), so that its kernel may prepare the weight once per plan.
    /// Only for graphs that are run as they are: a training step changes weights in place.
    public static func markConstantWeights(_ g: Graph) -> Graph {
        let overridable = Set(g.inputs.map(\.name))
        var out = g
        for (i, n) in g.nodes.enumerated() {
            guard case .conv(var p) = n.op, n.inputs.count >= 2, g.initializers[n.inputs[1]] != nil,
                  !overridable.contains(n.inputs[1]) else { continue }
            var fusion = p.fusion ?? ConvFusion()
            fusion.constantWeights = true
            p.fusion = fusion
            out.nodes[i].op = .conv(p)
        }
        return out
    }

    /// Folds into each convolution the element-wise tail only it feeds: an optional residual
    /// `Add` or two-input `Sum` (the convolution's output plus any other tensor), then an
    /// optional activation (Relu, LeakyRelu, Clip with constant bounds, HardSigmoid, HardSwish,
    /// Sigmoid, and SiLU written as `Mul(v, Sigmoid(v))`, whose `v` has just those two
    /// readers), skipping Identity nodes between them. Each other absorbed value must have
    /// exactly one reader and not be a graph output.
    /// The fused node takes the place of the last node it absorbs (so the residual is
    /// computed before it) and keeps the convolution's name; its `sourceOp` lists what was
    /// fused, e.g. "Conv+Add+Relu".
    public static func fuseConvEpilogues(_ g: Graph) -> Graph {
        var readers: [String: Int] = [:]
        for n in g.nodes { for i in n.inputs where !i.isEmpty { readers[i, default: 0] += 1 } }
        let outputs = Set(g.outputs.map(\.name))
        var soleReader: [String: Int] = [:]
        var readerNodes: [String: [Int]] = [:]
        for (i, n) in g.nodes.enumerated() {
            for v in Set(n.inputs) where !v.isEmpty {
                readerNodes[v, default: []].append(i)
                if readers[v] == 1 && !outputs.contains(v) { soleReader[v] = i }
            }
        }
        let quantized = g.nodes.contains { isQuantizationOp($0.sourceOp) }
        // A graph input with an initializer is only a default: its value may change per run.
        let overridable = Set(g.inputs.map(\.name))
        let constants = g.initializers.filter { !overridable.contains($0.key) }
        var removed = Set<Int>()
        var placed: [Int: Node] = [:]
        for (ci, conv) in g.nodes.enumerated() {
            // A convolution summed in onnxruntime's order keeps its tail as separate ops, as
            // onnxruntime runs them.
            guard case .conv(var p) = conv.op, p.fusion == nil, p.summation == .fastest, conv.outputs.count == 1,
                  conv.inputs.count >= 2, conv.inputs.count <= 3 else { continue }
            var fusion = ConvFusion()
            var inputs = conv.inputs + Array(repeating: "", count: 3 - conv.inputs.count)
            var value = conv.outputs[0], last = ci, tail = conv.sourceOp
            // Identity nodes between the convolution and its tail (exporters leave them) go too.
            func skipIdentities() {
                while let i = soleReader[value], !removed.contains(i), case .identity = g.nodes[i].op,
                      g.nodes[i].inputs == [value], g.nodes[i].outputs.count == 1 {
                    removed.insert(i)
                    value = g.nodes[i].outputs[0]; last = i
                }
            }
            skipIdentities()
            if let ai = soleReader[value], !removed.contains(ai), isTwoInputAdd(g.nodes[ai].op),
               g.nodes[ai].inputs.count == 2, g.nodes[ai].outputs.count == 1 {
                let add = g.nodes[ai]
                let other = add.inputs[0] == value ? add.inputs[1] : add.inputs[0]
                if !other.isEmpty && other != value {
                    fusion.residual = true
                    inputs.append(other)
                    value = add.outputs[0]; last = ai; tail += "+" + add.sourceOp
                    removed.insert(ai)
                    skipIdentities()
                }
            }
            // SiLU as exporters write it: `value` read by a Sigmoid and by a Mul of `value` and
            // that Sigmoid's output, the Sigmoid's output read by nothing else.
            if !quantized, !outputs.contains(value), let pair = readerNodes[value], pair.count == 2,
               let (si, mi) = [(pair[0], pair[1]), (pair[1], pair[0])].first(where: { si, mi in
                   let s = g.nodes[si], m = g.nodes[mi]
                   guard case .unary(.sigmoid) = s.op, case .binary(.mul) = m.op, s.inputs == [value],
                         s.outputs.count == 1, m.outputs.count == 1, m.inputs.count == 2,
                         Set(m.inputs) == [value, s.outputs[0]], soleReader[s.outputs[0]] == mi,
                         !removed.contains(si), !removed.contains(mi) else { return false }
                   return true
               }) {
                fusion.activation = .silu
                value = g.nodes[mi].outputs[0]; last = mi
                tail += "+" + g.nodes[si].sourceOp + "+" + g.nodes[mi].sourceOp
                removed.insert(si); removed.insert(mi)
            } else if let ri = soleReader[value], !removed.contains(ri), g.nodes[ri].inputs.first == value,
               let act = fusedActivation(g.nodes[ri], constants) {
                fusion.activation = act
                value = g.nodes[ri].outputs[0]; last = ri; tail += "+" + g.nodes[ri].sourceOp
                removed.insert(ri)
            }
            guard last != ci else { continue }
            p.fusion = fusion
            removed.insert(ci)
            placed[last] = Node(name: conv.name, op: .conv(p), inputs: inputs, outputs: [value], sourceOp: tail)
        }
        var out = g
        out.nodes = g.nodes.indices.compactMap { i in placed[i] ?? (removed.contains(i) ? nil : g.nodes[i]) }
        return removeDeadCode(out)
    }

    /// `Add`, or a `Sum` (Keras's `Add` layer exports as one); the caller checks for two inputs.
    private static func isTwoInputAdd(_ op: Op) -> Bool {
        switch op {
        case .binary(.add), .variadic(.sum): return true
        default: return false
        }
    }

    /// The activation `node` computes, when a convolution can apply it itself.
    private static func fusedActivation(_ node: Node, _ initializers: [String: Tensor]) -> ConvActivation? {
        guard node.outputs.count == 1 else { return nil }
        switch node.op {
        case .unary(.relu): return .relu
        case .unary(.leakyRelu(let alpha)): return .leakyRelu(alpha: alpha)
        case .unary(.hardSigmoid(let alpha, let beta)): return .hardSigmoid(alpha: alpha, beta: beta)
        case .unary(.hardSwish): return .hardSwish
        case .unary(.sigmoid): return .sigmoid
        case .clip:
            // A bound is usable when absent or a constant float scalar.
            var bounds: [Float] = [-.infinity, .infinity]
            for i in 1..<min(3, node.inputs.count) where !node.inputs[i].isEmpty {
                guard let t = initializers[node.inputs[i]], t.dtype == .float32, t.count == 1 else { return nil }
                bounds[i - 1] = t.floats[0]
            }
            let lo = bounds[0], hi = bounds[1]
            return .clip(min: lo, max: hi)
        default: return nil
        }
    }
}

/// Who reads what in a graph, for the passes that recognise element-wise patterns.
private struct PatternIndex {
    let g: Graph
    let readers: [String: [Int]]
    let outputs: Set<String>
    let overridable: Set<String>

    init(_ g: Graph) {
        var readers: [String: [Int]] = [:]
        for (i, n) in g.nodes.enumerated() { for v in Set(n.inputs) where !v.isEmpty { readers[v, default: []].append(i) } }
        self.g = g
        self.readers = readers
        outputs = Set(g.outputs.map(\.name))
        overridable = Set(g.inputs.map(\.name))
    }

    /// The value of `name` when it is a float32 scalar initializer that no run can override.
    func scalar(_ name: String) -> Float? {
        guard !overridable.contains(name), let t = g.initializers[name], t.dtype == .float32, t.count == 1 else { return nil }
        return t.floats[0]
    }

    /// The sole reader of `value`, when it is a single-output node and `value` is no graph output.
    func next(_ value: String) -> Int? {
        guard !outputs.contains(value), let r = readers[value], r.count == 1, g.nodes[r[0]].outputs.count == 1 else { return nil }
        return r[0]
    }
}

extension Passes {
    /// `g` with node `i` replaced by `placed[i]`, the nodes in `removed` dropped, then dead code
    /// removed; `g` itself when nothing was placed.
    static func replacingNodes(_ g: Graph, placed: [Int: Node], removed: Set<Int>) -> Graph {
        if placed.isEmpty { return g }
        var out = g
        out.nodes = g.nodes.indices.compactMap { i in placed[i] ?? (removed.contains(i) ? nil : g.nodes[i]) }
        return removeDeadCode(out)
    }
}
