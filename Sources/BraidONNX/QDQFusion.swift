import BraidTensor

// onnxruntime does not run a QDQ file as written. Its CPU provider first replaces node groups
// "DequantizeLinear inputs -> op -> QuantizeLinear output" by its integer kernels
// (QLinearConv, QLinearMatMul, QGemm, QLinearAdd, ...), which accumulate integers and
// requantize once, and runs every other group in float. The two readings round differently,
// and the differences grow through a network, so a file read the ONNX spec's way (all float)
// disagrees with onnxruntime on a few percent of argmaxes. This pass rewrites the groups
// onnxruntime fuses into the QOperator nodes Braid already lowers with onnxruntime's arithmetic,
// choosing them by its rules (its QDQ selectors, as on x86 CPUs):
//
// - Int8 activations: on x86 a QuantizeLinear -> DequantizeLinear pair of int8 becomes uint8
//   (zero point + 128, exact) only when the QuantizeLinear feeds exactly one DequantizeLinear
//   that feeds exactly one node (onnxruntime first gives every consumer its own
//   DequantizeLinear, so a shared one counts once per consumer). An int8 constant stays int8
//   unless a value lies outside [-64, 64]. The selectors compare these types.
// - Conv and MatMul: every input through a DequantizeLinear, the output through
//   QuantizeLinear(s), activation not int8, input type = output type, bias int32. MatMul with
//   no QuantizeLinear after it becomes an integer product scaled to float.
// - Gemm: as Conv, int8 A only with int8 B, beta 1 with a bias, the QuantizeLinear optional.
// - Add, Mul, Concat: all inputs and the output of one type. AveragePool, GlobalAveragePool,
//   LeakyRelu, Sigmoid, Softmax: input type = output type.
// - A Relu or Clip between the op and its QuantizeLinear joins the group when the
//   quantization range already clips as it does (and blocks the group when it does not).
// Ops whose quantized form equals the float one (Reshape, Transpose, MaxPool, ...: onnxruntime
// drops their DequantizeLinear/QuantizeLinear pairs) need no rewrite: dequantize, move and
// quantize again gives back the same integers.

/// `g` with the QDQ node groups onnxruntime's CPU provider fuses replaced by the equivalent
/// QOperator nodes. `initializers` are the graph's decoded initializers. The graph is returned
/// unchanged when its nodes cannot be ordered (the importer then reports why).
func fuseQDQGroups(_ g: ONNXGraphProto, initializers: [String: Tensor], opset: Int) -> ONNXGraphProto {
    guard g.nodes.contains(where: { $0.opType == "DequantizeLinear" && $0.domain.isEmpty }),
          let order = try? topologicalOrder(g, initializers: initializers) else { return g }
    var fusion = QDQFusion(g, initializers: initializers, opset: opset)
    for index in order { fusion.fuse(index) }
    return fusion.result()
}

/// The indices of `g`'s float Conv nodes whose input and weight both come from a
/// DequantizeLinear: the convolutions a QDQ file leaves in float after `fuseQDQGroups` (int8
/// activations, mismatched types). onnxruntime runs them with its plain float Conv kernel
/// (MLAS's GEMM, not its NCHWc layout, which needs a constant weight), so they are to sum in
/// its order: the QuantizeLinear after them turns a last-bit difference into a whole step.
func floatConvsBetweenQuantizeSteps(_ g: ONNXGraphProto) -> Set<Int> {
    var dequantized = Set<String>()
    for n in g.nodes where n.opType == "DequantizeLinear" && (n.domain.isEmpty || n.domain == "ai.onnx") {
        dequantized.formUnion(n.outputs.filter { !$0.isEmpty })
    }
    guard !dequantized.isEmpty else { return [] }
    var found = Set<Int>()
    for (i, n) in g.nodes.enumerated() where n.opType == "Conv" && (n.domain.isEmpty || n.domain == "ai.onnx") {
        if n.inputs.count >= 2 && dequantized.contains(n.inputs[0]) && dequantized.contains(n.inputs[1]) { found.insert(i) }
    }
    return found
}

private struct QDQFusion {
    /// The graph's nodes as read: every rule looks at these (onnxruntime's selectors see the
    /// same DequantizeLinear/QuantizeLinear nodes and value types after earlier fusions).
    let original: [ONNXNodeProto]
    /// The nodes written back: fused ones in place of their targets, removed ones nil.
    var nodes: [ONNXNodeProto?]
    /// Initializers and Constant nodes' values (onnxruntime reads both as initializers).
    var constants: [String: Tensor] = [:]
    var constantTypes: [String: ONNXDataType] = [:]
    let graphOutputs: Set<String>
    let inputTypes: [String: ONNXDataType]
    let opset: Int
    var producer: [String: Int] = [:]
    /// Consumers of each value, one entry per input slot.
    var consumers: [String: [Int]] = [:]
    var taken: Set<String>
    var added: [ONNXNodeProto] = []
    let graph: ONNXGraphProto

    init(_ g: ONNXGraphProto, initializers: [String: Tensor], opset: Int) {
        graph = g
        original = g.nodes
        nodes = g.nodes
        self.opset = opset
        constants = initializers
        for t in g.initializers { constantTypes[t.name] = ONNXDataType(rawValue: t.dataType) }
        for n in g.nodes where n.opType == "Constant" && n.domain.isEmpty && n.outputs.count == 1 {
            guard let p = n.attributes.first(where: { $0.name == "value" })?.t,
                  let t = try? p.tensor(baseDirectory: nil) else { continue }
            constants[n.outputs[0]] = t
            constantTypes[n.outputs[0]] = ONNXDataType(rawValue: p.dataType)
        }
        graphOutputs = Set(g.outputs.map(\.name))
        var inputs: [String: ONNXDataType] = [:]
        for v in g.inputs { if case .tensor(let e, _) = v.type { inputs[v.name] = ONNXDataType(rawValue: e) } }
        inputTypes = inputs
        taken = Set(initializers.keys).union(g.inputs.map(\.name))
        for (i, n) in g.nodes.enumerated() {
            for o in n.outputs where !o.isEmpty { producer[o] = i; taken.insert(o) }
            for v in n.inputs where !v.isEmpty { consumers[v, default: []].append(i) }
        }
    }

    func result() -> ONNXGraphProto {
        var g = graph
        var kept = nodes.compactMap { $0 } + added
        // DequantizeLinear nodes whose every consumer was fused away.
        var used = graphOutputs
        for n in kept { used.formUnion(n.inputs) }
        kept.removeAll { isOp($0, "DequantizeLinear") && !$0.outputs.contains(where: used.contains) }
        g.nodes = kept
        return g
    }

    // MARK: Facts about values

    func isOp(_ n: ONNXNodeProto, _ op: String) -> Bool { n.opType == op && (n.domain.isEmpty || n.domain == "ai.onnx") }

    func node(producing v: String) -> ONNXNodeProto? { producer[v].map { original[$0] } }

    func input(_ n: ONNXNodeProto, _ i: Int) -> String { i < n.inputs.count ? n.inputs[i] : "" }

    func edgeCount(_ v: String) -> Int { (consumers[v]?.count ?? 0) + (graphOutputs.contains(v) ? 1 : 0) }

    /// An int8 scalar constant's value (a QuantizeLinear/DequantizeLinear zero point).
    func int8Scalar(_ v: String) -> Int64? {
        guard let t = constants[v], constantTypes[v] == .int8, t.count == 1 else { return nil }
        return t.ints[0]
    }

    /// The element type a QuantizeLinear writes: its zero point's, else `output_dtype`, else uint8.
    func declaredType(ofQuantize q: ONNXNodeProto) -> ONNXDataType? {
        let zp = input(q, 2)
        if !zp.isEmpty { return constantTypes[zp] }
        if let a = q.attributes.first(where: { $0.name == "output_dtype" }), a.i != 0 {
            return ONNXDataType(rawValue: Int32(truncatingIfNeeded: a.i))
        }
        return .uint8
    }

    /// True when onnxruntime's x86 pass turns this int8 QuantizeLinear and the one
    /// DequantizeLinear after it into uint8.
    func becomesUInt8(_ q: ONNXNodeProto) -> Bool {
        guard q.outputs.count >= 1, q.inputs.count == 3, let zp = int8Scalar(q.inputs[2]) else { return false }
        let v = q.outputs[0]
        guard !graphOutputs.contains(v), let only = consumers[v], only.count == 1, case let dq = original[only[0]],
              isOp(dq, "DequantizeLinear"), dq.inputs.count == 3, int8Scalar(dq.inputs[2]) == zp,
              let out = dq.outputs.first else { return false }
        return edgeCount(out) == 1
    }

    /// The element type of the integer input of DequantizeLinear `dq` as onnxruntime's
    /// selectors see it on x86 (after its int8 -> uint8 rewrites).
    func quantizedType(ofDequantize dq: ONNXNodeProto) -> ONNXDataType? {
        let x = input(dq, 0)
        if let t = constants[x], let type = constantTypes[x] {
            guard type == .int8 else { return type }
            // A constant int8 tensor with a value outside [-64, 64] is stored as uint8.
            let zp = input(dq, 2)
            guard zp.isEmpty || constantTypes[zp] == .int8 else { return type }
            let outside = (0..<t.count).contains { t.ints[$0] < -64 || t.ints[$0] > 64 }
            return outside ? .uint8 : .int8
        }
        if let q = node(producing: x), isOp(q, "QuantizeLinear") {
            let type = declaredType(ofQuantize: q)
            return type == .int8 && becomesUInt8(q) ? .uint8 : type
        }
        return inputTypes[x]
    }

    func quantizedType(ofQuantize q: ONNXNodeProto) -> ONNXDataType? {
        let type = declaredType(ofQuantize: q)
        return type == .int8 && becomesUInt8(q) ? .uint8 : type
    }

    func floatConstant(_ v: String) -> Float? {
        guard !v.isEmpty else { return nil }
        guard let t = constants[v], t.dtype.isFloat, t.count == 1 else { return nil }
        return t.floats[0]
    }

    /// onnxruntime's test: quantizing with `q` already clips as Relu/Clip `clip` does.
    func clipIsRedundant(_ clip: ONNXNodeProto, before q: ONNXNodeProto) -> Bool {
        guard let scale = floatConstant(input(q, 1)), let type = quantizedType(ofQuantize: q) else { return false }
        let zpName = input(q, 2)
        var zp: Int64 = 0
        if !zpName.isEmpty {
            guard let t = constants[zpName], t.count == 1, !t.dtype.isFloat else { return false }
            zp = t.ints[0]
            // A zero point turned from int8 to uint8 moves by 128 with the type.
            if type == .uint8, constantTypes[zpName] == .int8 { zp += 128 }
        }
        let range: (Int64, Int64)
        switch type {
        case .uint8: range = (0, 255)
        case .int8: range = (-128, 127)
        case .uint16: range = (0, 65535)
        case .int16: range = (-32768, 32767)
        default: return false
        }
        if isOp(clip, "Relu") { return zp == range.0 }
        var lo = -Float.greatestFiniteMagnitude, hi = Float.greatestFiniteMagnitude
        if opset < 11 {
            for a in clip.attributes where a.type == .float {
                if a.name == "min" { lo = a.f } else if a.name == "max" { hi = a.f }
            }
        } else {
            let minName = input(clip, 1), maxName = input(clip, 2)
            if !minName.isEmpty { guard let v = floatConstant(minName) else { return false }; lo = v }
            if !maxName.isEmpty { guard let v = floatConstant(maxName) else { return false }; hi = v }
        }
        let qlo = Int64(exactly: (lo / scale).rounded(.toNearestOrEven)).map { $0 + zp }
        let qhi = Int64(exactly: (hi / scale).rounded(.toNearestOrEven)).map { $0 + zp }
        return (qlo.map { $0 <= range.0 } ?? (lo < 0)) && (qhi.map { $0 >= range.1 } ?? (hi > 0))
    }

    // MARK: Groups

    struct Group {
        var dq: [ONNXNodeProto]
        var q: [ONNXNodeProto]
        var clip: Int?
    }

    /// The DequantizeLinear producers of `n`'s inputs and the QuantizeLinear consumers of its
    /// output, when they form a group as onnxruntime's base check requires.
    func group(_ index: Int, dqCount: Int?, emptyQAllowed: Bool) -> Group? {
        let n = original[index]
        let actual = n.inputs.filter { !$0.isEmpty }
        var dq: [ONNXNodeProto] = []
        for v in actual {
            guard let p = node(producing: v), isOp(p, "DequantizeLinear") else { continue }
            // Each consumer gets its own DequantizeLinear in onnxruntime; one writing a graph
            // output cannot be fused away.
            guard !graphOutputs.contains(v) else { return nil }
            dq.append(p)
        }
        guard dq.count == (dqCount ?? actual.count) else { return nil }
        let outputs = n.outputs.filter { !$0.isEmpty }
        let edges = outputs.reduce(0) { $0 + (consumers[$1]?.count ?? 0) }
        // A Relu or Clip as the only consumer, itself with one consumer.
        var clip: Int?
        if edges == 1, outputs.count == 1, let c = consumers[outputs[0]]?.first, case let cn = original[c],
           isOp(cn, "Relu") || isOp(cn, "Clip"), let co = cn.outputs.first, !graphOutputs.contains(co),
           consumers[co]?.count == 1 {
            clip = c
        }
        let tail = clip.map { original[$0] } ?? n
        let q = tail.outputs.flatMap { consumers[$0] ?? [] }.map { original[$0] }.filter { isOp($0, "QuantizeLinear") }
        if let clip {
            guard q.count == 1, clipIsRedundant(original[clip], before: q[0]) else { return nil }
        }
        // With no QuantizeLinear (Gemm, MatMul) the float output may be a graph output.
        if q.isEmpty { return emptyQAllowed && clip == nil ? Group(dq: dq, q: [], clip: nil) : nil }
        guard outputs.count == q.count, clip != nil || edges == q.count, !outputs.contains(where: graphOutputs.contains) else { return nil }
        return Group(dq: dq, q: q, clip: clip)
    }

    func is8Bit(_ t: ONNXDataType?) -> Bool { t == .int8 || t == .uint8 }

    mutating func fuse(_ index: Int) {
        let n = original[index]
        guard n.domain.isEmpty || n.domain == "ai.onnx" else { return }
        switch n.opType {
        case "Conv":
            guard let g = group(index, dqCount: nil, emptyQAllowed: false), g.dq.count >= 2 else { return }
            let x = quantizedType(ofDequantize: g.dq[0]), w = quantizedType(ofDequantize: g.dq[1])
            guard is8Bit(x), is8Bit(w), x != .int8, x == quantizedType(ofQuantize: g.q[0]) else { return }
            if g.dq.count == 3 { guard quantizedType(ofDequantize: g.dq[2]) == .int32 else { return } }
            var inputs = quantizedInputs(g.dq[0]) + quantizedInputs(g.dq[1]) + quantizationParameters(g.q[0])
            if g.dq.count == 3 { inputs.append(input(g.dq[2], 0)) }
            replace(index, g, with: ONNXNodeProto(name: n.name, opType: "QLinearConv", inputs: inputs,
                                                  outputs: [g.q[0].outputs[0]], attributes: n.attributes))
        case "MatMul":
            guard let g = group(index, dqCount: 2, emptyQAllowed: true) else { return }
            let a = quantizedType(ofDequantize: g.dq[0]), b = quantizedType(ofDequantize: g.dq[1])
            guard is8Bit(a), is8Bit(b), a != .int8 else { return }
            if let q = g.q.first {
                guard a == quantizedType(ofQuantize: q) else { return }
                let inputs = quantizedInputs(g.dq[0]) + quantizedInputs(g.dq[1]) + quantizationParameters(q)
                replace(index, g, with: ONNXNodeProto(name: n.name, opType: "QLinearMatMul", inputs: inputs, outputs: [q.outputs[0]]))
            } else {
                integerMatMulToFloat(index, g)
            }
        case "Gemm":
            guard let g = group(index, dqCount: nil, emptyQAllowed: true), g.dq.count >= 2 else { return }
            let a = quantizedType(ofDequantize: g.dq[0]), b = quantizedType(ofDequantize: g.dq[1])
            guard is8Bit(a), is8Bit(b), a != .int8 || b == .int8 else { return }
            if let q = g.q.first { guard a == quantizedType(ofQuantize: q) else { return } }
            if g.dq.count == 3 {
                let beta = n.attributes.first { $0.name == "beta" }?.f ?? 1
                guard beta == 1, quantizedType(ofDequantize: g.dq[2]) == .int32 else { return }
            }
            var inputs = quantizedInputs(g.dq[0]) + quantizedInputs(g.dq[1])
            inputs.append(g.dq.count == 3 ? input(g.dq[2], 0) : "")
            if let q = g.q.first { inputs += quantizationParameters(q) }
            let attributes = n.attributes.filter { $0.name != "beta" }
            replace(index, g, with: ONNXNodeProto(name: n.name, opType: "QGemm", domain: "com.microsoft", inputs: inputs,
                                                  outputs: [g.q.first?.outputs[0] ?? n.outputs[0]], attributes: attributes))
        case "Add", "Mul":
            guard let g = group(index, dqCount: nil, emptyQAllowed: false), g.dq.count == 2 else { return }
            let t = quantizedType(ofDequantize: g.dq[0])
            guard is8Bit(t), quantizedType(ofDequantize: g.dq[1]) == t, quantizedType(ofQuantize: g.q[0]) == t else { return }
            let inputs = quantizedInputs(g.dq[0]) + quantizedInputs(g.dq[1]) + quantizationParameters(g.q[0])
            replace(index, g, with: ONNXNodeProto(name: n.name, opType: "QLinear" + n.opType, domain: "com.microsoft",
                                                  inputs: inputs, outputs: [g.q[0].outputs[0]]))
        case "Concat":
            guard let g = group(index, dqCount: nil, emptyQAllowed: false) else { return }
            let t = quantizedType(ofDequantize: g.dq[0])
            guard is8Bit(t), g.dq.allSatisfy({ quantizedType(ofDequantize: $0) == t }),
                  g.q.allSatisfy({ quantizedType(ofQuantize: $0) == t }) else { return }
            let inputs = quantizationParameters(g.q[0]) + g.dq.flatMap(quantizedInputs)
            replace(index, g, with: ONNXNodeProto(name: n.name, opType: "QLinearConcat", domain: "com.microsoft",
                                                  inputs: inputs, outputs: [g.q[0].outputs[0]], attributes: n.attributes))
        case "AveragePool", "GlobalAveragePool", "LeakyRelu", "Sigmoid", "Softmax":
            guard let g = group(index, dqCount: 1, emptyQAllowed: false) else { return }
            let t = quantizedType(ofDequantize: g.dq[0])
            guard is8Bit(t), quantizedType(ofQuantize: g.q[0]) == t else { return }
            var attributes = n.attributes
            if n.opType == "Softmax" { attributes.append(.int("opset", Int64(opset))) }
            if n.opType == "GlobalAveragePool" { attributes = [.int("channels_last", 0)] }
            let inputs = quantizedInputs(g.dq[0]) + quantizationParameters(g.q[0])
            replace(index, g, with: ONNXNodeProto(name: n.name, opType: "QLinear" + n.opType, domain: "com.microsoft",
                                                  inputs: inputs, outputs: [g.q[0].outputs[0]], attributes: attributes))
        default:
            return
        }
    }

    /// A DequantizeLinear's (x, scale, zero point), the zero point "" when absent.
    func quantizedInputs(_ dq: ONNXNodeProto) -> [String] { [input(dq, 0), input(dq, 1), input(dq, 2)] }

    /// A QuantizeLinear's (scale, zero point).
    func quantizationParameters(_ q: ONNXNodeProto) -> [String] { [input(q, 1), input(q, 2)] }

    /// onnxruntime's MatMulIntegerToFloat: the integer product times a_scale * b_scale.
    mutating func integerMatMulToFloat(_ index: Int, _ g: Group) {
        let n = original[index]
        let product = fresh(n.outputs[0] + "_integer"), real = fresh(n.outputs[0] + "_real"), scale = fresh(n.outputs[0] + "_scale")
        let a = g.dq[0], b = g.dq[1]
        let nodes = [
            ONNXNodeProto(name: n.name + "_integer", opType: "MatMulInteger",
                          inputs: [input(a, 0), input(b, 0), input(a, 2), input(b, 2)], outputs: [product]),
            ONNXNodeProto(name: n.name + "_real", opType: "Cast", inputs: [product], outputs: [real],
                          attributes: [.int("to", Int64(ONNXDataType.float.rawValue))]),
            ONNXNodeProto(name: n.name + "_scale", opType: "Mul", inputs: [input(a, 1), input(b, 1)], outputs: [scale]),
            ONNXNodeProto(name: n.name, opType: "Mul", inputs: [real, scale], outputs: [n.outputs[0]]),
        ]
        self.nodes[index] = nil
        added += nodes
    }

    mutating func fresh(_ base: String) -> String {
        var name = base, k = 1
        while taken.contains(name) { name = "\(base)_\(k)"; k += 1 }
        taken.insert(name)
        return name
    }

    /// Puts `fused` in place of the target and removes the group's QuantizeLinear and clip
    /// nodes (its DequantizeLinear nodes go when nothing else reads them).
    mutating func replace(_ index: Int, _ g: Group, with fused: ONNXNodeProto) {
        nodes[index] = fused
        if let c = g.clip { nodes[c] = nil }
        for q in g.q { if let i = q.outputs.first.flatMap({ producer[$0] }) { nodes[i] = nil } }
    }
}
