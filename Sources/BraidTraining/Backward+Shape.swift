import BraidGraph
import BraidKernels
import BraidTensor

/// Backward rules of the shape and data-movement family. Each forward reads its input
/// through a copy plan (a strided view, an index map, a gather or interpolation weights);
/// its backward runs the same plan's adjoint, adding each output element's gradient onto
/// the input element(s) it was read from. Plan-time operands (shapes, axes, bounds, pads,
/// indices' extents, scales) are resolved as the forward lowering resolves them; operands
/// other than the data get no gradient.
func backwardShape(_ node: Node, _ inputs: [PlanValue?], _ outputs: [PlanValue], needs: [Bool]) throws -> LoweredBackward {
    let x = try inputs.required(0, node)
    guard x.dtype.isFloat else {
        throw GraphError(node: node.name, "\(node.sourceOp) has no gradient on \(x.dtype) values")
    }
    let r = x.shape.count
    switch node.op {
    case .reshape, .flatten, .squeeze, .unsqueeze, .identity:
        let n = x.shape.product
        return dataGradient { g, gx in { Elementwise.add(g, into: gx, count: n) } }
    case .transpose(let perm):
        let p = (perm ?? Array((0..<r).reversed())).map { $0 < 0 ? $0 + r : $0 }
        return stridedGradient(.transpose(shape: x.shape, perm: p, elementSize: 4))
    case .depthToSpace(let b, let crd):
        let (n, c, h, w) = (x.shape[0], x.shape[1] / (b * b), x.shape[2], x.shape[3])
        let view = crd ? [n, c, b, b, h, w] : [n, b, b, c, h, w]
        let perm = crd ? [0, 1, 4, 2, 5, 3] : [0, 3, 4, 1, 5, 2]
        return stridedGradient(.transpose(shape: view, perm: perm, elementSize: 4))
    case .spaceToDepth(let b):
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2] / b, x.shape[3] / b)
        return stridedGradient(.transpose(shape: [n, c, h, b, w, b], perm: [0, 3, 5, 1, 2, 4], elementSize: 4))
    case .slice:
        return stridedGradient(try slicePlan(node, inputs, x.shape))
    case .expand:
        let reduce = BroadcastGradient(inputShape: x.shape, outputShape: outputs[0].shape)!
        return dataGradient { g, gx in { reduce.accumulate(g, into: gx) } }
    case .tile:
        let repeats = try constantInts(1, node, inputs)
        let tile = TileGradient(shape: x.shape, repeats: repeats)
        return dataGradient { g, gx in { tile.accumulate(g, into: gx) } }
    case .concat(let axis):
        return concatGradient(inputs, outputs[0], axis: axis < 0 ? axis + r : axis)
    case .split(let axis, _):
        return splitGradient(x.shape, outputs, axis: axis < 0 ? axis + r : axis)
    case .gather(let axis):
        let a = axis < 0 ? axis + r : axis
        let idx = try inputs.required(1, node)
        let copy = GatherCopy(outer: x.shape[..<a].reduce(1, *), axisSize: x.shape[a],
                              inner: x.shape[(a + 1)...].reduce(1, *), indexCount: idx.shape.product,
                              elementSize: 4)
        return indexedGradient(copy)
    case .gatherElements(let axis):
        let idx = try inputs.required(1, node)
        let copy = GatherElementsCopy(shape: x.shape, indexShape: idx.shape, axis: axis < 0 ? axis + r : axis,
                                      elementSize: 4)
        return indexedGradient(copy)
    case .pad(let mode):
        let pad = try padCopy(node, inputs, mode: mode)
        return dataGradient { g, gx in { pad.accumulateAdjoint(g, into: gx) } }
    case .resize(let params):
        return try resizeGradient(node, inputs, params)
    default:
        throw GraphError(node: node.name, "\(node.sourceOp) has no backward rule")
    }
}

/// A rule that only touches the data input 0 and output 0.
private func dataGradient(_ body: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> () -> Void) -> LoweredBackward {
    LoweredBackward { _, _, gOuts, gIns in
        guard let g = gOuts[0], let gx = gIns[0] else { return {} }
        return body(g.floats, gx.floats)
    }
}

private func stridedGradient(_ copy: StridedCopy) -> LoweredBackward {
    dataGradient { g, gx in { copy.accumulateAdjoint(g, into: gx) } }
}

private func constantInts(_ i: Int, _ node: Node, _ inputs: [PlanValue?]) throws -> [Int] {
    guard let v = try inputs.constantInts(i, node) else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input \(i)")
    }
    return v.map { Int(clamping: $0) }
}

private func present(_ i: Int, _ inputs: [PlanValue?]) -> Bool { i < inputs.count && inputs[i] != nil }

private func concatGradient(_ inputs: [PlanValue?], _ out: PlanValue, axis a: Int) -> LoweredBackward {
    let parts = inputs.indices.filter { inputs[$0] != nil }
    let shape = out.shape
    let copy = ConcatCopy(outer: shape[..<a].reduce(1, *), inner: shape[(a + 1)...].reduce(1, *),
                          axisSizes: parts.map { inputs[$0]!.shape[a] }, elementSize: 4)
    return LoweredBackward { _, _, gOuts, gIns in
        guard let g = gOuts[0] else { return {} }
        let grads = parts.map { gIns[$0]?.floats }
        if grads.allSatisfy({ $0 == nil }) { return {} }
        let pg = g.floats
        return { copy.accumulateAdjoint(pg, into: grads) }
    }
}

private func splitGradient(_ shape: [Int], _ outputs: [PlanValue], axis a: Int) -> LoweredBackward {
    let st = shape.strides
    var copies: [StridedCopy] = [], start = 0
    for o in outputs {
        copies.append(StridedCopy(shape: o.shape, strides: st, offset: start * st[a], elementSize: 4))
        start += o.shape[a]
    }
    return LoweredBackward { _, _, gOuts, gIns in
        guard let gx = gIns[0] else { return {} }
        let px = gx.floats
        let steps: [() -> Void] = copies.indices.compactMap { k in
            guard let g = gOuts[k] else { return nil }
            let copy = copies[k], pg = g.floats
            return { copy.accumulateAdjoint(pg, into: px) }
        }
        return sequence(steps)
    }
}

/// The forward Slice's view of x: NumPy's clamping of `[starts, ends)` with steps
/// (Lowering+Slice's `resolveSlice`).
private func slicePlan(_ node: Node, _ inputs: [PlanValue?], _ xShape: [Int]) throws -> StridedCopy {
    let r = xShape.count
    let starts = try constantInts(1, node, inputs), ends = try constantInts(2, node, inputs)
    let axes = present(3, inputs) ? try constantInts(3, node, inputs).map { $0 < 0 ? $0 + r : $0 }
        : Array(0..<starts.count)
    let steps = present(4, inputs) ? try constantInts(4, node, inputs) : Array(repeating: 1, count: starts.count)
    let st = xShape.strides
    var shape = xShape, strides = st, offset = 0
    for (i, a) in axes.enumerated() {
        let dim = xShape[a], step = steps[i]
        var s = starts[i] < 0 ? starts[i] + dim : starts[i]
        var e = ends[i] < 0 ? ends[i] + dim : ends[i]
        let count: Int
        if step > 0 {
            s = min(max(s, 0), dim); e = min(max(e, 0), dim)
            count = max(0, (e - s + step - 1) / step)
        } else {
            s = min(max(s, 0), dim - 1); e = min(max(e, -1), dim - 1)
            count = max(0, (s - e - step - 1) / -step)
        }
        shape[a] = count
        strides[a] = st[a] * step
        if count > 0 { offset += s * st[a] }
    }
    return StridedCopy(shape: shape, strides: strides, offset: offset, elementSize: 4)
}

/// Resize's backward: the adjoint of the forward's own kernel (`resizeKernel`), its index
/// map (nearest) or its interpolation weights (linear, cubic, antialiased or not).
private func resizeGradient(_ node: Node, _ inputs: [PlanValue?], _ p: ResizeParams) throws -> LoweredBackward {
    switch try resizeKernel(node, inputs, p).kernel {
    case .indexMap(let copy, _):
        return dataGradient { g, gx in { copy.accumulateAdjoint(g, into: gx) } }
    case .interpolation(let plan):
        return dataGradient { g, gx in
            let adjoint = ResizeGradient(plan)
            return { adjoint.accumulate(g, into: gx) }
        }
    }
}

/// Gather and GatherElements: their copies scatter-add the output gradient back through
/// the indices (input 1) into the data's gradient.
private protocol IndexedAdjoint: Sendable {
    func accumulateAdjoint(_ g: UnsafePointer<Float>, _ indices: UnsafePointer<Int64>, into gx: UnsafeMutablePointer<Float>)
}

extension GatherCopy: IndexedAdjoint {}
extension GatherElementsCopy: IndexedAdjoint {}

private func indexedGradient(_ copy: some IndexedAdjoint) -> LoweredBackward {
    LoweredBackward { ins, _, gOuts, gIns in
        guard let g = gOuts[0], let gx = gIns[0] else { return {} }
        let pg = g.floats, pi = ins[1]!.ints, px = gx.floats
        return { copy.accumulateAdjoint(pg, pi, into: px) }
    }
}
