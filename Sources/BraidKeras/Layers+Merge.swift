import BraidGraph
import BraidTensor
import Foundation

/// Layers that combine several tensors.
let mergeLayers: [String: LayerTranslator] = [
    "Add": { ctx, ins in try variadic(ctx, ins, .sum) },
    "Average": { ctx, ins in try variadic(ctx, ins, .mean) },
    "Maximum": { ctx, ins in try variadic(ctx, ins, .max) },
    "Minimum": { ctx, ins in try variadic(ctx, ins, .min) },
    "Subtract": { ctx, ins in
        guard ins.count == 2 else { throw ctx.err("Subtract takes 2 inputs, got \(ins.count)") }
        let xs = ctx.b.sameLayout(ins)
        return [KTensor(name: ctx.add(.binary(.sub), [xs[0].name, xs[1].name]), shape: broadcast(xs),
                        channelsFirst: xs[0].channelsFirst)]
    },
    "Multiply": { ctx, ins in
        guard ins.count >= 2 else { throw ctx.err("Multiply takes at least 2 inputs") }
        let xs = ctx.b.sameLayout(ins)
        var y = xs[0].name
        for (i, x) in xs.dropFirst().enumerated() {
            y = ctx.add(.binary(.mul), [y, x.name], suffix: i == xs.count - 2 ? nil : "mul\(i)")
        }
        return [KTensor(name: y, shape: broadcast(xs), channelsFirst: xs[0].channelsFirst)]
    },
    "Concatenate": { ctx, ins in
        guard ins.count >= 1 else { throw ctx.err("Concatenate needs inputs") }
        let xs = ctx.b.sameLayout(ins)
        let r = xs[0].rank
        var axis = ctx.config.int("axis") ?? -1
        if axis < 0 { axis += r }
        guard axis > 0 && axis < r else { throw ctx.err("concat axis \(axis) out of range") }
        guard xs.allSatisfy({ $0.rank == r }) else {
            throw ctx.err("Concatenate inputs have ranks \(xs.map(\.rank)); they must all be \(r)")
        }
        var shape = xs[0].shape
        shape[axis] = xs.reduce(0 as Int?) { acc, x in acc.flatMap { a in x.shape[axis].map { a + $0 } } }
        let y = ctx.add(.concat(axis: xs[0].irAxis(axis)), xs.map(\.name))
        return [KTensor(name: y, shape: shape, channelsFirst: xs[0].channelsFirst)]
    },
    "Dot": dot,
    // keras.applications' InceptionResNetV2 residual: `inputs[0] + inputs[1] * scale`.
    "CustomScaleLayer": { ctx, ins in
        guard ins.count == 2 else { throw ctx.err("CustomScaleLayer takes 2 inputs, got \(ins.count)") }
        guard let scale = ctx.config.float("scale") else { throw ctx.err("CustomScaleLayer without a number 'scale'") }
        let xs = ctx.b.sameLayout(ins)
        let scaled = ctx.add(.binary(.mul), [xs[1].name, ctx.b.scalar(scale, name: "\(ctx.name)/scale")], suffix: "scaled")
        return [KTensor(name: ctx.add(.binary(.add), [xs[0].name, scaled]), shape: broadcast(xs),
                        channelsFirst: xs[0].channelsFirst)]
    },
    "UnitNormalization": { ctx, ins in
        let x = ctx.b.channelsLast(try ctx.one(ins))
        let axis = try kerasAxis(ctx, rank: x.rank)
        return [KTensor(name: l2Normalize(ctx, x.name, axis: axis, tag: "l2"), shape: x.shape)]
    },
]

private func broadcast(_ xs: [KTensor]) -> [Int?] {
    let r = xs.map(\.rank).max() ?? 0
    return (0..<r).map { i in
        if i == 0 { return nil }
        var known: Int? = 1
        var unknown = false
        for x in xs {
            let j = i - (r - x.rank)
            guard j >= 0 else { continue }
            if let v = x.shape[j] { if v != 1 { known = v } } else { unknown = true }
        }
        return known == 1 && unknown ? nil : known
    }
}

private func variadic(_ ctx: LayerContext, _ ins: [KTensor], _ kind: VariadicOp) throws -> [KTensor] {
    guard ins.count >= 2 else { throw ctx.err("\(ctx.cls) takes at least 2 inputs, got \(ins.count)") }
    let xs = ctx.b.sameLayout(ins)
    return [KTensor(name: ctx.add(.variadic(kind), xs.map(\.name)), shape: broadcast(xs), channelsFirst: xs[0].channelsFirst)]
}

/// Keras's `l2_normalize`: `x / sqrt(max(sum(x^2), 1e-12))` along `axis`.
private func l2Normalize(_ ctx: LayerContext, _ x: String, axis: Int, tag: String) -> String {
    let sq = ctx.add(.binary(.mul), [x, x], suffix: "\(tag)_sq")
    let sum = ctx.add(.reduce(.sum, axes: [axis], keepDims: true, noopWithEmptyAxes: false), [sq], suffix: "\(tag)_sum")
    let clamped = ctx.add(.binary(.max), [sum, ctx.b.scalar(1e-12, name: "\(ctx.name)/eps")], suffix: "\(tag)_clamp")
    let norm = ctx.add(.unary(.sqrt), [clamped], suffix: "\(tag)_norm")
    return ctx.add(.binary(.div), [x, norm], suffix: "\(tag)_normalized")
}

/// Dot of two rank-2 tensors (`[N, F] . [N, F] -> [N, 1]`) or two rank-3 tensors along
/// the given axes (a batched matrix product).
private func dot(_ ctx: LayerContext, _ ins: [KTensor]) throws -> [KTensor] {
    guard ins.count == 2 else { throw ctx.err("Dot takes 2 inputs, got \(ins.count)") }
    let a0 = ctx.b.channelsLast(ins[0]), b0 = ctx.b.channelsLast(ins[1])
    guard a0.rank == b0.rank, a0.rank == 2 || a0.rank == 3 else {
        throw ctx.err("Dot is supported for two rank-2 or two rank-3 inputs")
    }
    let r = a0.rank
    var axes: [Int]
    if let list = ctx.config.array("axes") {
        axes = list.compactMap { ($0 as? NSNumber)?.intValue }
    } else {
        let n = ctx.config.int("axes") ?? -1
        axes = [n, n]
    }
    guard axes.count == 2 else { throw ctx.err("bad 'axes'") }
    axes = axes.map { $0 < 0 ? $0 + r : $0 }
    guard axes.allSatisfy({ $0 >= 1 && $0 < r }) else { throw ctx.err("bad 'axes' \(axes)") }
    var a = a0.name, b = b0.name
    if ctx.config.bool("normalize") == true {
        a = l2Normalize(ctx, a, axis: axes[0], tag: "a")
        b = l2Normalize(ctx, b, axis: axes[1], tag: "b")
    }
    if r == 2 {
        let prod = ctx.add(.binary(.mul), [a, b], suffix: "mul")
        let y = ctx.add(.reduce(.sum, axes: [1], keepDims: true, noopWithEmptyAxes: false), [prod])
        return [KTensor(name: y, shape: [nil, 1])]
    }
    // [N, I, K] x [N, K, J]: contract a's axes[0] with b's axes[1].
    if axes[0] == 1 { a = ctx.add(.transpose(perm: [0, 2, 1]), [a], suffix: "a_t") }
    if axes[1] == 2 { b = ctx.add(.transpose(perm: [0, 2, 1]), [b], suffix: "b_t") }
    let i = a0.shape[axes[0] == 1 ? 2 : 1], j = b0.shape[axes[1] == 2 ? 1 : 2]
    return [KTensor(name: ctx.add(.matMul, [a, b]), shape: [nil, i, j])]
}

// MARK: Writers

/// Element-wise binary ops, sums, concatenation. Two computed tensors become a merge layer
/// (the second brought to the first's layout); a scalar constant operand becomes Rescaling
/// (or ReLU for `max(x, 0)`); a per-channel constant becomes a BatchNormalization whose
/// statistics make it exactly `x * scale + offset`. Two patterns the importer produces map
/// back whole: `sum(a * b)` over the features of rank-2 tensors is Dot, and Keras's
/// `l2_normalize` chain is UnitNormalization.
let mergeWriters: [String: LayerWriter] = [
    "binary": writeBinary,
    "variadic": { b, node in
        guard case .variadic(let kind) = node.op else { return }
        let xs = try node.inputs.map { try b.tensor($0) }
        if xs.count == 1 { b.alias(node.outputs[0], xs[0]); return }
        let cls = ["sum": "Add", "mean": "Average", "max": "Maximum", "min": "Minimum"]["\(kind)"]!
        let same = try sameLayout(b, xs)
        b.emit(node, cls, [:], inputs: same, listInput: true, perm: same[0].perm)
    },
    "concat": { b, node in
        guard case .concat(let axis) = node.op else { return }
        let xs = try sameLayout(b, try node.inputs.map { try b.tensor($0) })
        let k = xs[0].kerasAxis(axis)
        guard k != 0 else { throw Unmappable(reason: "it concatenates along the batch axis") }
        b.emit(node, "Concatenate", ["axis": k], inputs: xs, listInput: true, perm: xs[0].perm)
    },
]

/// Brings tensors of one rank to the first one's layout.
private func sameLayout(_ b: ExportBuilder, _ xs: [XTensor]) throws -> [XTensor] {
    guard xs.allSatisfy({ $0.rank == xs[0].rank }) else { throw Unmappable(reason: "its operands differ in rank") }
    return try xs.map { try b.layout($0, xs[0].perm) }
}

private func writeBinary(_ b: ExportBuilder, _ node: Node) throws {
    guard case .binary(let op) = node.op else { return }
    let (l, r) = (node.inputs[0], node.inputs[1])
    if b.constant(l) == nil, b.constant(r) == nil {
        if op == .mul, try writeProductPattern(b, node) { return }
        guard let cls = kerasElementwiseClasses.first(where: { $0.function == op && $0.layer })?.name else {
            throw Unmappable(reason: "\(op) of two tensors has no Keras layer")
        }
        let xs = try sameLayout(b, [try b.tensor(l), try b.tensor(r)])
        b.emit(node, cls, [:], inputs: xs, listInput: true, perm: xs[0].perm)
        return
    }
    if op == .greaterOrEqual, try writeThresholdReLU(b, node) { return }
    let constantLeft = b.constant(l) != nil
    let x = try b.tensor(constantLeft ? r : l)
    let c = b.constant(constantLeft ? l : r)!
    guard b.shape(node.outputs[0]) == b.shape(constantLeft ? r : l) else {
        throw Unmappable(reason: "its constant operand broadcasts the tensor to a larger shape")
    }
    if let v = uniform(c) {
        switch (op, constantLeft) {
        case (.add, _): b.emit(node, "Rescaling", ["scale": 1.0, "offset": jsonFloat(v)], inputs: [x], perm: x.perm)
        case (.sub, false): b.emit(node, "Rescaling", ["scale": 1.0, "offset": jsonFloat(-v)], inputs: [x], perm: x.perm)
        case (.sub, true): b.emit(node, "Rescaling", ["scale": -1.0, "offset": jsonFloat(v)], inputs: [x], perm: x.perm)
        case (.mul, _): b.emit(node, "Rescaling", ["scale": jsonFloat(v), "offset": 0.0], inputs: [x], perm: x.perm)
        case (.div, false): b.emit(node, "Rescaling", ["scale": jsonFloat(1 / v), "offset": 0.0], inputs: [x], perm: x.perm)
        case (.max, _) where v == 0: b.emit(node, "ReLU", ["negative_slope": 0.0, "threshold": 0.0], inputs: [x], perm: x.perm)
        default: throw Unmappable(reason: "\(op) with a constant has no Keras layer")
        }
        return
    }
    guard op == .add || op == .mul || (op == .sub && !constantLeft) else {
        throw Unmappable(reason: "\(op) with a non-scalar constant has no Keras layer")
    }
    // Per-channel constant along one IR axis: a BatchNormalization with mean 0 and
    // variance 1 - epsilon is exactly x * gamma + beta.
    let irShape = b.shape(node.outputs[0])
    let aligned = Array(repeating: 1, count: irShape.count - c.rank) + c.shape
    let varying = aligned.indices.filter { aligned[$0] != 1 }
    guard varying.count == 1, let axis = varying.first, axis > 0, aligned[axis] == irShape[axis] else {
        throw Unmappable(reason: "its constant operand varies along more than one axis")
    }
    let n = aligned[axis]
    let values = c.floatArray
    let eps: Float = 1e-3
    let gamma = op == .mul ? values : [Float](repeating: 1, count: n)
    let beta = op == .add ? values : op == .sub ? values.map { -$0 } : [Float](repeating: 0, count: n)
    b.emit(node, "BatchNormalization", ["axis": x.kerasAxis(axis), "epsilon": jsonFloat(eps), "momentum": 0.99,
                                        "center": true, "scale": true],
           weights: [("gamma", Tensor(shape: [n], floats: gamma)), ("beta", Tensor(shape: [n], floats: beta)),
                     ("moving_mean", Tensor(zeros: [n])), ("moving_variance", Tensor(shape: [n], floats: [Float](repeating: 1 - eps, count: n)))],
           inputs: [x], perm: x.perm)
}

/// The single value of a constant whose elements are all equal.
private func uniform(_ t: Tensor) -> Float? {
    guard t.count > 0 else { return nil }
    let v = t.floats[0]
    for i in 1..<t.count where t.floats[i] != v { return nil }
    return v
}

/// `mul(a, b) -> reduce sum over axis 1 (keepdims)` on rank-2 tensors is `Dot(axes=1)`;
/// `mul(x, x) -> sum -> max(eps) -> sqrt -> div(x, .)` is `UnitNormalization`.
private func writeProductPattern(_ b: ExportBuilder, _ node: Node) throws -> Bool {
    let out = node.outputs[0]
    guard let sum = b.soleConsumer(out), case .reduce(.sum, let axes?, true, _) = sum.op, axes.count == 1 else { return false }
    let r = b.shape(out).count
    let axis = axes[0] < 0 ? axes[0] + r : axes[0]
    let (l, rr) = (node.inputs[0], node.inputs[1])
    if l == rr, let mx = b.soleConsumer(sum.outputs[0]), case .binary(.max) = mx.op,
       let sq = b.soleConsumer(mx.outputs[0]), case .unary(.sqrt) = sq.op,
       let div = b.soleConsumer(sq.outputs[0]), case .binary(.div) = div.op,
       div.inputs == [l, sq.outputs[0]] {
        let x = try b.tensor(l)
        let t = b.emit(node, "UnitNormalization", ["axis": [x.kerasAxis(axis)]], inputs: [x], perm: x.perm, output: div.outputs[0])
        for n in [sum, mx, sq, div] { b.claim(n, as: t) }
        return true
    }
    guard r == 2, axis == 1, l != rr else { return false }
    let xs = [try b.tensor(l), try b.tensor(rr)]
    let t = b.emit(node, "Dot", ["axes": [1, 1], "normalize": false], inputs: xs, listInput: true, perm: [0, 1],
                   output: sum.outputs[0])
    b.claim(sum, as: t)
    return true
}

/// The importer's ReLU with a threshold: `select(x >= t, x, (x - t) * slope)`, maybe then
/// `min(., max_value)`.
private func writeThresholdReLU(_ b: ExportBuilder, _ node: Node) throws -> Bool {
    let (x, th) = (node.inputs[0], node.inputs[1])
    guard let t = b.constant(th), t.count == 1, let sel = b.soleConsumer(node.outputs[0]), case .select = sel.op,
          sel.inputs.count == 3, sel.inputs[0] == node.outputs[0], sel.inputs[1] == x,
          let mul = b.graph.nodes.first(where: { $0.outputs.first == sel.inputs[2] }), case .binary(.mul) = mul.op,
          let sub = b.graph.nodes.first(where: { $0.outputs.first == mul.inputs[0] }), case .binary(.sub) = sub.op,
          sub.inputs == [x, th], let k = b.constant(mul.inputs[1]), k.count == 1 else { return false }
    var config: [String: Any] = ["threshold": jsonFloat(t.floats[0]), "negative_slope": jsonFloat(k.floats[0]), "max_value": NSNull()]
    var last = sel
    var claimed = [sub, mul, sel]
    if let mn = b.soleConsumer(sel.outputs[0]), case .binary(.min) = mn.op, mn.inputs[0] == sel.outputs[0],
       let c = b.constant(mn.inputs[1]), c.count == 1 {
        config["max_value"] = jsonFloat(c.floats[0])
        last = mn
        claimed.append(mn)
    }
    let xt = try b.tensor(x)
    let out = b.emit(node, "ReLU", config, inputs: [xt], perm: xt.perm, output: last.outputs[0])
    for n in claimed { b.claim(n, as: out) }
    return true
}
