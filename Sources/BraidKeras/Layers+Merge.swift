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
        var shape = xs[0].shape
        shape[axis] = xs.reduce(0 as Int?) { acc, x in acc.flatMap { a in x.shape[axis].map { a + $0 } } }
        let y = ctx.add(.concat(axis: xs[0].irAxis(axis)), xs.map(\.name))
        return [KTensor(name: y, shape: shape, channelsFirst: xs[0].channelsFirst)]
    },
    "Dot": dot,
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
