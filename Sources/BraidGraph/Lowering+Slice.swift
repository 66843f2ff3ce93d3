import BraidKernels
import BraidTensor

// Lowering of the ops that cut, join and index tensors: Concat, Split, Slice, Gather,
// GatherElements.

func lowerConcat(_ node: Node, _ inputs: [PlanValue?], axis: Int) throws -> LoweredOp {
    let parts = inputs.compactMap { $0 }
    guard let first = parts.first else { throw GraphError(node: node.name, "Concat has no inputs") }
    let r = first.shape.count
    let a = try normalizedAxis(axis, rank: r, node)
    for p in parts where p.shape.count != r || p.dtype != first.dtype
        || p.shape.indices.contains(where: { $0 != a && p.shape[$0] != first.shape[$0] }) {
        throw GraphError(node: node.name, "Concat on axis \(a): \(p.shape) \(p.dtype) does not match \(first.shape) \(first.dtype)")
    }
    var shape = first.shape
    shape[a] = parts.map { $0.shape[a] }.reduce(0, +)
    let copy = ConcatCopy(outer: shape[..<a].reduce(1, *), inner: shape[(a + 1)...].reduce(1, *),
                          axisSizes: parts.map { $0.shape[a] }, elementSize: first.dtype.storageStride)
    return LoweredOp(outputs: [(shape, first.dtype)]) { ins, outs in
        let sources = ins.compactMap { $0.map { UnsafeRawPointer($0.buffer.raw) } }
        let dst = outs[0].buffer.raw
        return { copy.run(sources, dst) }
    }
}

func lowerSplit(_ node: Node, _ inputs: [PlanValue?], axis: Int, count: Int) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let a = try normalizedAxis(axis, rank: x.shape.count, node)
    let dim = x.shape[a]
    let sizes: [Int]
    if hasInput(1, inputs) {
        sizes = try requiredInts(1, node, inputs, "split")
        guard sizes.count == count, sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == dim else {
            throw GraphError(node: node.name, "Split sizes \(sizes) do not cover \(dim) in \(count) parts")
        }
    } else {
        guard count > 0 else { throw GraphError(node: node.name, "Split into 0 parts") }
        let chunk = (dim + count - 1) / count
        sizes = (0..<count).map { max(0, min(chunk, dim - $0 * chunk)) }
    }
    let st = x.shape.strides
    var copies: [StridedCopy] = [], shapes: [[Int]] = [], start = 0
    for s in sizes {
        var shape = x.shape
        shape[a] = s
        copies.append(StridedCopy(shape: shape, strides: st, offset: start * st[a], elementSize: x.dtype.storageStride))
        shapes.append(shape)
        start += s
    }
    return LoweredOp(outputs: shapes.map { ($0, x.dtype) }) { ins, outs in
        let src = ins[0]!.buffer.raw
        let dsts = outs.map(\.buffer.raw)
        return { for (c, d) in zip(copies, dsts) { c.run(src, d) } }
    }
}

/// One axis of a slice after ONNX's clamping: first index, element count and step.
struct SliceAxis: Equatable { var start: Int, count: Int, step: Int }

/// Resolves a Slice bound pair on an axis of extent `dim` as NumPy does: negatives count from
/// the end, then starts clamp to `[0, dim]` (`[0, dim-1]` stepping back) and ends to
/// `[0, dim]` (`[-1, dim-1]` stepping back).
func resolveSlice(start: Int, end: Int, step: Int, dim: Int) -> SliceAxis {
    var s = start < 0 ? start + dim : start
    var e = end < 0 ? end + dim : end
    if step > 0 {
        s = min(max(s, 0), dim); e = min(max(e, 0), dim)
        return SliceAxis(start: s, count: max(0, (e - s + step - 1) / step), step: step)
    }
    s = min(max(s, 0), dim - 1); e = min(max(e, -1), dim - 1)
    return SliceAxis(start: s, count: max(0, (s - e - step - 1) / -step), step: step)
}

func lowerSlice(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    let starts = try requiredInts(1, node, inputs, "starts")
    let ends = try requiredInts(2, node, inputs, "ends")
    let axes = hasInput(3, inputs) ? try requiredInts(3, node, inputs, "axes").map { try normalizedAxis($0, rank: r, node) }
        : Array(0..<starts.count)
    let steps = hasInput(4, inputs) ? try requiredInts(4, node, inputs, "steps") : Array(repeating: 1, count: starts.count)
    guard ends.count == starts.count, axes.count == starts.count, steps.count == starts.count,
          Set(axes).count == axes.count else {
        throw GraphError(node: node.name, "Slice starts \(starts), ends \(ends), axes \(axes), steps \(steps) disagree")
    }
    guard !steps.contains(0) else { throw GraphError(node: node.name, "Slice step 0") }
    let st = x.shape.strides
    var shape = x.shape, strides = st, offset = 0
    for (i, a) in axes.enumerated() {
        let s = resolveSlice(start: starts[i], end: ends[i], step: steps[i], dim: x.shape[a])
        shape[a] = s.count
        strides[a] = st[a] * s.step
        if s.count > 0 { offset += s.start * st[a] }
    }
    return stridedOp(shape, x.dtype, StridedCopy(shape: shape, strides: strides, offset: offset,
                                                 elementSize: x.dtype.storageStride))
}

private func checkIndices(_ node: Node, _ inputs: [PlanValue?], extent: Int) throws -> PlanValue {
    let idx = try inputs.required(1, node)
    guard !idx.dtype.isFloat else { throw GraphError(node: node.name, "\(node.sourceOp) indices must be integers") }
    if let t = idx.constant {
        for k in 0..<t.count where t.ints[k] < -Int64(extent) || t.ints[k] >= Int64(extent) {
            throw GraphError(node: node.name, "\(node.sourceOp) index \(t.ints[k]) out of range for extent \(extent)")
        }
    }
    return idx
}

func lowerGather(_ node: Node, _ inputs: [PlanValue?], axis: Int) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let a = try normalizedAxis(axis, rank: x.shape.count, node)
    let idx = try checkIndices(node, inputs, extent: x.shape[a])
    let shape = Array(x.shape[..<a]) + idx.shape + Array(x.shape[(a + 1)...])
    let copy = GatherCopy(outer: x.shape[..<a].reduce(1, *), axisSize: x.shape[a],
                          inner: x.shape[(a + 1)...].reduce(1, *), indexCount: idx.shape.product,
                          elementSize: x.dtype.storageStride)
    return LoweredOp(outputs: [(shape, x.dtype)]) { ins, outs in
        let src = ins[0]!.buffer.raw, indices = ins[1]!.ints, dst = outs[0].buffer.raw
        return { copy.run(src, indices, dst) }
    }
}

func lowerGatherElements(_ node: Node, _ inputs: [PlanValue?], axis: Int) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let a = try normalizedAxis(axis, rank: x.shape.count, node)
    let idx = try checkIndices(node, inputs, extent: x.shape[a])
    guard idx.shape.count == x.shape.count,
          idx.shape.indices.allSatisfy({ $0 == a || idx.shape[$0] <= x.shape[$0] }) else {
        throw GraphError(node: node.name, "GatherElements indices \(idx.shape) do not fit data \(x.shape)")
    }
    let copy = GatherElementsCopy(shape: x.shape, indexShape: idx.shape, axis: a, elementSize: x.dtype.storageStride)
    return LoweredOp(outputs: [(idx.shape, x.dtype)]) { ins, outs in
        let src = ins[0]!.buffer.raw, indices = ins[1]!.ints, dst = outs[0].buffer.raw
        return { copy.run(src, indices, dst) }
    }
}
