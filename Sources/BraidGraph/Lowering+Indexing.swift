import BraidKernels
import BraidTensor

/// Lowers indexed reads and writes (GatherND, ScatterND, ScatterElements) and the
/// axis-wise ops CumSum, TopK, OneHot and triangle masks. Operands that decide an output
/// shape (TopK's k, OneHot's depth) and CumSum's axis must be plan-time constants.
func lowerIndexing(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    switch node.op {
    case .gatherND(let b): return try lowerGatherND(node, inputs, batchDims: b)
    case .scatterND(let r): return try lowerScatterND(node, inputs, reduction: r)
    case .scatterElements(let axis, let r): return try lowerScatterElements(node, inputs, axis: axis, reduction: r)
    case .cumSum(let exclusive, let reverse): return try lowerCumSum(node, inputs, exclusive: exclusive, reverse: reverse)
    case .cumProd(let exclusive, let reverse):
        return try lowerCumSum(node, inputs, exclusive: exclusive, reverse: reverse, product: true)
    case .topK(let axis, let largest, _): return try lowerTopK(node, inputs, axis: axis, largest: largest)
    case .oneHot(let axis): return try lowerOneHot(node, inputs, axis: axis)
    case .triangle(let upper): return try lowerTriangle(node, inputs, upper: upper)
    case .gridSample(let p): return try lowerGridSample(node, inputs, p)
    case .compress(let axis): return try lowerCompress(node, inputs, axis: axis)
    case .unique(let axis, let sorted): return try lowerUnique(node, inputs, axis: axis, sorted: sorted)
    case .recurrent(let p): return try lowerRecurrent(node, inputs, p)
    case .dft(let inverse, let onesided, let axis): return try lowerDFT(node, inputs, inverse: inverse, onesided: onesided, axis: axis)
    case .nonMaxSuppression(let center): return try lowerNonMaxSuppression(node, inputs, centerPointBox: center)
    case .determinant: return try lowerDeterminant(node, inputs)
    case .maxUnpool(let kernel, let strides, let pads): return try lowerMaxUnpool(node, inputs, kernel: kernel, strides: strides, pads: pads)
    case .linearAttention(let qh, let kvh, let scale): return try lowerLinearAttention(node, inputs, qHeads: qh, kvHeads: kvh, scale: scale)
    case .col2im(let strides, let dilations, let pads):
        return try lowerCol2Im(node, inputs, strides: strides, dilations: dilations, pads: pads)
    default: throw GraphError(node: node.name, "\(node.sourceOp) is not an indexing op")
    }
}

private func integerIndices(_ node: Node, _ v: PlanValue) throws {
    guard !v.dtype.isFloat else { throw GraphError(node: node.name, "\(node.sourceOp) indices must be integers, got \(v.dtype)") }
}

private func lowerGatherND(_ node: Node, _ inputs: [PlanValue?], batchDims b: Int) throws -> LoweredOp {
    let x = try inputs.required(0, node), idx = try inputs.required(1, node)
    try integerIndices(node, idx)
    guard let depth = idx.shape.last, idx.shape.count >= 1, b >= 0, b < idx.shape.count,
          b + depth <= x.shape.count, Array(x.shape[..<b]) == Array(idx.shape[..<b]) else {
        throw GraphError(node: node.name, "GatherND indices \(idx.shape) (batch_dims \(b)) do not fit data \(x.shape)")
    }
    let shape = Array(idx.shape.dropLast()) + Array(x.shape[(b + depth)...])
    let slices = IndexedSlices(dataShape: x.shape, indicesShape: idx.shape, batchDims: b)
    return LoweredOp(outputs: [(shape, x.dtype)]) { ins, outs in
        let ip = UnsafePointer(ins[1]!.ints)
        if x.dtype.isFloat {
            let src = UnsafePointer(ins[0]!.floats), dst = outs[0].floats
            return { slices.gather(src, ip, dst) }
        }
        let src = UnsafePointer(ins[0]!.ints), dst = outs[0].ints
        return { slices.gather(src, ip, dst) }
    }
}

private func lowerScatterND(_ node: Node, _ inputs: [PlanValue?], reduction: ScatterCombine) throws -> LoweredOp {
    let x = try inputs.required(0, node), idx = try inputs.required(1, node), u = try inputs.required(2, node)
    try integerIndices(node, idx)
    guard let depth = idx.shape.last, depth <= x.shape.count, u.dtype == x.dtype,
          u.shape == Array(idx.shape.dropLast()) + Array(x.shape[depth...]) else {
        throw GraphError(node: node.name, "ScatterND data \(x.shape) \(x.dtype), indices \(idx.shape), updates \(u.shape) \(u.dtype) do not fit")
    }
    return scatterOp(x, IndexedSlices(dataShape: x.shape, indicesShape: idx.shape), reduction)
}

private func lowerScatterElements(_ node: Node, _ inputs: [PlanValue?], axis: Int, reduction: ScatterCombine) throws -> LoweredOp {
    let x = try inputs.required(0, node), idx = try inputs.required(1, node), u = try inputs.required(2, node)
    try integerIndices(node, idx)
    let a = try normalizedAxis(axis, rank: x.shape.count, node)
    guard idx.shape == u.shape, u.dtype == x.dtype, idx.shape.count == x.shape.count,
          idx.shape.indices.allSatisfy({ $0 == a || idx.shape[$0] <= x.shape[$0] }) else {
        throw GraphError(node: node.name, "ScatterElements data \(x.shape), indices \(idx.shape), updates \(u.shape) do not fit")
    }
    return scatterOp(x, ElementScatter(shape: x.shape, indexShape: idx.shape, axis: a), reduction)
}

/// ScatterND's slices and ScatterElements' elements, run the same way.
private protocol ScatterKernel: Sendable {
    func scatter<T: Numeric & Comparable>(_ updates: UnsafePointer<T>, _ indices: UnsafePointer<Int64>,
                                          into out: UnsafeMutablePointer<T>, _ c: ScatterCombine)
}

extension IndexedSlices: ScatterKernel {}

extension ElementScatter: ScatterKernel {
    func scatter<T: Numeric & Comparable>(_ updates: UnsafePointer<T>, _ indices: UnsafePointer<Int64>,
                                          into out: UnsafeMutablePointer<T>, _ c: ScatterCombine) {
        run(updates, indices, into: out, c)
    }
}

/// `[data, indices, updates]` -> a copy of the data with the updates combined in by `kernel`.
private func scatterOp(_ x: PlanValue, _ kernel: some ScatterKernel, _ c: ScatterCombine) -> LoweredOp {
    let n = x.shape.product
    return LoweredOp(outputs: [(x.shape, x.dtype)]) { ins, outs in
        let ip = UnsafePointer(ins[1]!.ints)
        if x.dtype.isFloat {
            let src = UnsafePointer(ins[0]!.floats), up = UnsafePointer(ins[2]!.floats), dst = outs[0].floats
            return { dst.update(from: src, count: n); kernel.scatter(up, ip, into: dst, c) }
        }
        let src = UnsafePointer(ins[0]!.ints), up = UnsafePointer(ins[2]!.ints), dst = outs[0].ints
        return { dst.update(from: src, count: n); kernel.scatter(up, ip, into: dst, c) }
    }
}

/// `shape` seen as `[outer, shape[axis], inner]`.
private func around(_ shape: [Int], _ a: Int) -> (outer: Int, n: Int, inner: Int) {
    (shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
}

private func scalarInt(_ i: Int, _ node: Node, _ inputs: [PlanValue?], _ what: String) throws -> Int {
    let v = try requiredInts(i, node, inputs, what)
    guard v.count == 1 else { throw GraphError(node: node.name, "\(node.sourceOp) \(what) must be a scalar, got \(v.count) values") }
    return v[0]
}

private func lowerCumSum(_ node: Node, _ inputs: [PlanValue?], exclusive: Bool, reverse: Bool,
                         product: Bool = false) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let a = try normalizedAxis(try scalarInt(1, node, inputs, "axis"), rank: x.shape.count, node)
    let (outer, n, inner) = around(x.shape, a)
    let dtype = x.dtype
    return LoweredOp(outputs: [(x.shape, dtype)]) { ins, outs in
        if dtype.isFloat {
            let src = UnsafePointer(ins[0]!.floats), dst = outs[0].floats
            return { Indexing.cumSum(src, dst, outer: outer, n: n, inner: inner, exclusive: exclusive, reverse: reverse, product: product) }
        }
        let src = UnsafePointer(ins[0]!.ints), dst = outs[0].ints
        return {
            Indexing.cumSum(src, dst, outer: outer, n: n, inner: inner, exclusive: exclusive, reverse: reverse, product: product)
            Elementwise.wrap(dst, count: outer * n * inner, to: dtype)
        }
    }
}

private func lowerTopK(_ node: Node, _ inputs: [PlanValue?], axis: Int, largest: Bool) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let a = try normalizedAxis(axis, rank: x.shape.count, node)
    let k = try scalarInt(1, node, inputs, "k")
    let (outer, n, inner) = around(x.shape, a)
    guard k >= 0 && k <= n else { throw GraphError(node: node.name, "TopK k = \(k) outside 0...\(n)") }
    var shape = x.shape
    shape[a] = k
    return LoweredOp(outputs: [(shape, x.dtype), (shape, .int64)]) { ins, outs in
        let scratch = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(n, 1))
        let keep = ScratchOwner(scratch)
        let ip = outs[1].ints
        if x.dtype.isFloat {
            let src = UnsafePointer(ins[0]!.floats), dst = outs[0].floats
            return {
                Indexing.topK(src, values: dst, indices: ip, scratch: keep.buffer, outer: outer, n: n, inner: inner,
                              k: k, largest: largest, isNaN: { $0.isNaN })
            }
        }
        let src = UnsafePointer(ins[0]!.ints), dst = outs[0].ints
        return {
            Indexing.topK(src, values: dst, indices: ip, scratch: keep.buffer, outer: outer, n: n, inner: inner,
                          k: k, largest: largest, isNaN: { _ in false })
        }
    }
}

/// Owns a scratch buffer made once per plan, freed with the plan's closure.
private final class ScratchOwner: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<Int>
    init(_ b: UnsafeMutableBufferPointer<Int>) { buffer = b }
    deinit { buffer.deallocate() }
}

private func lowerOneHot(_ node: Node, _ inputs: [PlanValue?], axis: Int) throws -> LoweredOp {
    let idx = try inputs.required(0, node), values = try inputs.required(2, node)
    let depthValue = try inputs.required(1, node)
    guard let dt = depthValue.constant, dt.count == 1 else {
        throw GraphError(node: node.name, "OneHot depth must be a scalar known before the run")
    }
    let depth = dt.dtype.isFloat ? Int(dt.floats[0]) : Int(dt.ints[0])
    guard depth > 0, values.shape.product == 2 else {
        throw GraphError(node: node.name, "OneHot depth \(depth) or values \(values.shape) invalid")
    }
    let r = idx.shape.count + 1
    let a = try normalizedAxis(axis, rank: r, node)
    let shape = Array(idx.shape[..<a]) + [depth] + Array(idx.shape[a...])
    let outer = idx.shape[..<a].reduce(1, *), inner = idx.shape[a...].reduce(1, *)
    let count = idx.shape.product
    return LoweredOp(outputs: [(shape, values.dtype)]) { ins, outs in
        let converted = Tensor(zeros: [count], dtype: .int64)
        let ip = idx.dtype.isFloat ? UnsafePointer(converted.ints) : UnsafePointer(ins[0]!.ints)
        let fsrc = idx.dtype.isFloat ? ins[0]!.floats : nil
        let vt = ins[2]!
        if values.dtype.isFloat {
            let dst = outs[0].floats
            return {
                if let fsrc { for i in 0..<count { converted.ints[i] = Int64(fsrc[i]) } }
                Indexing.oneHot(ip, dst, outer: outer, depth: depth, inner: inner, off: vt.floats[0], on: vt.floats[1])
            }
        }
        let dst = outs[0].ints
        return {
            if let fsrc { for i in 0..<count { converted.ints[i] = Int64(fsrc[i]) } }
            Indexing.oneHot(ip, dst, outer: outer, depth: depth, inner: inner, off: vt.ints[0], on: vt.ints[1])
        }
    }
}

private func lowerTriangle(_ node: Node, _ inputs: [PlanValue?], upper: Bool) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    guard x.shape.count >= 2 else { throw GraphError(node: node.name, "Trilu needs rank >= 2, got \(x.shape)") }
    let k = hasInput(1, inputs) ? try scalarInt(1, node, inputs, "k") : 0
    let rows = x.shape[x.shape.count - 2], cols = x.shape[x.shape.count - 1]
    let matrices = x.shape.dropLast(2).reduce(1, *)
    return LoweredOp(outputs: [(x.shape, x.dtype)]) { ins, outs in
        if x.dtype.isFloat {
            let src = UnsafePointer(ins[0]!.floats), dst = outs[0].floats
            return { Indexing.triangle(src, dst, matrices: matrices, rows: rows, cols: cols, k: k, upper: upper) }
        }
        let src = UnsafePointer(ins[0]!.ints), dst = outs[0].ints
        return { Indexing.triangle(src, dst, matrices: matrices, rows: rows, cols: cols, k: k, upper: upper) }
    }
}

private func lowerGridSample(_ node: Node, _ inputs: [PlanValue?], _ p: GridSampleParams) throws -> LoweredOp {
    let x = try inputs.required(0, node), grid = try inputs.required(1, node)
    let s = x.shape.count - 2
    guard s >= 1, x.dtype.isFloat, grid.dtype.isFloat, grid.shape.count == s + 2, grid.shape[0] == x.shape[0],
          grid.shape.last == s else {
        throw GraphError(node: node.name, "GridSample data \(x.shape) and grid \(grid.shape) do not fit")
    }
    let out = Array(grid.shape.dropFirst().dropLast())
    let mode = p.mode
    let padding = p.padding
    let sampler = GridSampler(mode: mode, padding: padding, alignCorners: p.alignCorners, inputShape: x.shape,
                              points: out.reduce(1, *))
    return LoweredOp(outputs: [([x.shape[0], x.shape[1]] + out, .float32)]) { ins, outs in
        let xp = UnsafePointer(ins[0]!.floats), gp = UnsafePointer(ins[1]!.floats), yp = outs[0].floats
        return { sampler.run(xp, gp, yp) }
    }
}
