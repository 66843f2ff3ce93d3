import BraidKernels
import BraidTensor

// Ops whose output shape depends on element values: Compress (on a condition known before
// the run) and Unique (on data known before the run, so its outputs are plan-time values).

func lowerCompress(_ node: Node, _ inputs: [PlanValue?], axis: Int?) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    guard let cond = try inputs.constantInts(1, node) else {
        throw GraphError(node: node.name, "Compress needs its condition")
    }
    let outer: Int, extent: Int, inner: Int
    var shape: [Int]
    if let axis {
        let a = try normalizedAxis(axis, rank: x.shape.count, node)
        outer = x.shape[..<a].reduce(1, *); extent = x.shape[a]; inner = x.shape[(a + 1)...].reduce(1, *)
        shape = x.shape
    } else {
        outer = 1; extent = x.shape.product; inner = 1
        shape = [extent]
    }
    let picked = (0..<min(cond.count, extent)).filter { cond[$0] != 0 }
    if let axis { shape[axis < 0 ? axis + x.shape.count : axis] = picked.count } else { shape = [picked.count] }
    let indices = Tensor(shape: [picked.count], ints: picked.map(Int64.init))
    let copy = GatherCopy(outer: outer, axisSize: extent, inner: inner, indexCount: picked.count,
                          elementSize: x.dtype.storageStride)
    return LoweredOp(outputs: [(shape, x.dtype)]) { ins, outs in
        let src = ins[0]!.buffer.raw, dst = outs[0].buffer.raw
        // The closure keeps the index tensor alive.
        return { copy.run(src, indices.ints, dst) }
    }
}

func lowerUnique(_ node: Node, _ inputs: [PlanValue?], axis: Int?, sorted: Bool) throws -> LoweredOp {
    let xv = try inputs.required(0, node)
    guard let x = xv.constant else {
        throw GraphError(node: node.name, "Unique input 0 ('\(node.inputs[0])') must be known before the run (a constant or fed value)")
    }
    // Slices along the axis (single elements when flattened), compared element by element.
    let outer: Int, extent: Int, inner: Int
    if let axis {
        let a = try normalizedAxis(axis, rank: x.shape.count, node)
        outer = x.shape[..<a].reduce(1, *); extent = x.shape[a]; inner = x.shape[(a + 1)...].reduce(1, *)
    } else {
        outer = 1; extent = x.count; inner = 1
    }
    func element(_ slice: Int, _ k: Int) -> (Double, Int64) {
        let at = (k / inner) * extent * inner + slice * inner + k % inner
        return x.dtype.isFloat ? (Double(x.floats[at]), 0) : (0, x.ints[at])
    }
    let width = outer * inner
    func less(_ a: Int, _ b: Int) -> Bool {
        for k in 0..<width {
            let p = element(a, k), q = element(b, k)
            if p != q { return p.0 < q.0 || (p.0 == q.0 && p.1 < q.1) }
        }
        return false
    }
    func same(_ a: Int, _ b: Int) -> Bool { (0..<width).allSatisfy { element(a, $0) == element(b, $0) } }
    var firsts: [Int] = []
    var inverse = [Int](repeating: 0, count: extent)
    for s in 0..<extent {
        if let u = firsts.firstIndex(where: { same($0, s) }) { inverse[s] = u } else { inverse[s] = firsts.count; firsts.append(s) }
    }
    var order = Array(firsts.indices)
    if sorted { order.sort { less(firsts[$0], firsts[$1]) } }
    var rank = [Int](repeating: 0, count: order.count)
    for (r, u) in order.enumerated() { rank[u] = r }
    let k = order.count
    var shape: [Int]
    if let axis { shape = x.shape; shape[axis < 0 ? axis + x.shape.count : axis] = k } else { shape = [k] }
    let values = Tensor(zeros: shape, dtype: x.dtype)
    for (r, u) in order.enumerated() {
        for e in 0..<width {
            let src = (e / inner) * extent * inner + firsts[u] * inner + e % inner
            let dst = (e / inner) * k * inner + r * inner + e % inner
            if x.dtype.isFloat { values.floats[dst] = x.floats[src] } else { values.ints[dst] = x.ints[src] }
        }
    }
    var counts = [Int64](repeating: 0, count: k)
    for s in 0..<extent { counts[rank[inverse[s]]] += 1 }
    let results = [values, Tensor(shape: [k], ints: order.map { Int64(firsts[$0]) }),
                   Tensor(shape: [extent], ints: inverse.map { Int64(rank[$0]) }), Tensor(shape: [k], ints: counts)]
    return LoweredOp(outputs: results.map { ($0.shape, $0.dtype) }) { _, outs in
        return {
            for (t, o) in zip(results, outs) {
                copyContiguous(t.buffer.raw, o.buffer.raw, byteCount: t.count * t.dtype.storageStride)
            }
        }
    }
}

func lowerRecurrent(_ node: Node, _ inputs: [PlanValue?], _ p: RecurrentParams) throws -> LoweredOp {
    let x = try inputs.required(0, node), w = try inputs.required(1, node), r = try inputs.required(2, node)
    let dirs = p.reverse.count, h = p.hiddenSize
    let cell = p.cell
    guard x.shape.count == 3, x.dtype.isFloat else { throw GraphError(node: node.name, "\(node.sourceOp) input must be float [S, B, I], got \(x.shape)") }
    let (seq, batch, input) = (x.shape[0], x.shape[1], x.shape[2])
    let layer = RecurrentLayer(cell: cell, activations: p.activations, reverse: p.reverse,
                               seq: seq, batch: batch, input: input, hidden: h, clip: p.clip)
    let gh = layer.gates * h
    guard w.shape == [dirs, gh, input], r.shape == [dirs, gh, h] else {
        throw GraphError(node: node.name, "\(node.sourceOp) weights \(w.shape), \(r.shape) do not fit \(dirs) directions of \(gh) gate rows over input \(input)")
    }
    var outputs: [([Int], DType)] = [([seq, dirs, batch, h], .float32), ([dirs, batch, h], .float32)]
    if case .lstm = p.cell { outputs.append(([dirs, batch, h], .float32)) }
    func present(_ i: Int) -> Bool { i < inputs.count && inputs[i] != nil }
    return LoweredOp(outputs: outputs) { ins, outs in
        let scratch = Tensor(zeros: [layer.scratchCount])
        let px = UnsafePointer(ins[0]!.floats), pw = UnsafePointer(ins[1]!.floats), pr = UnsafePointer(ins[2]!.floats)
        let pb = present(3) ? UnsafePointer(ins[3]!.floats) : nil
        let pl = present(4) ? UnsafePointer(ins[4]!.ints) : nil
        let ph = present(5) ? UnsafePointer(ins[5]!.floats) : nil
        let pc = present(6) ? UnsafePointer(ins[6]!.floats) : nil
        let pp = present(7) ? UnsafePointer(ins[7]!.floats) : nil
        let y = outs[0].floats, yh = outs[1].floats, yc = outs.count > 2 ? outs[2].floats : nil
        return {
            layer.run(x: px, w: pw, r: pr, bias: pb, lengths: pl, h0: ph, c0: pc, peephole: pp, y: y, yh: yh, yc: yc,
                      scratch: scratch.floats)
        }
    }
}

func lowerDFT(_ node: Node, _ inputs: [PlanValue?], inverse: Bool, onesided: Bool, axis field: Int?) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    guard r >= 2, x.dtype.isFloat, let c = x.shape.last, c == 1 || c == 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) input must be float [..., 1 or 2], got \(x.shape)")
    }
    var axis = field ?? -2
    if field == nil, hasInput(2, inputs) { axis = try requiredInts(2, node, inputs, "axis")[0] }
    if axis < 0 { axis += r }
    guard axis >= 0 && axis < r - 1 else { throw GraphError(node: node.name, "\(node.sourceOp) axis \(axis) is not a signal axis of \(x.shape)") }
    let n = x.shape[axis]
    var length = inverse && onesided ? 2 * (n - 1) : n
    if hasInput(1, inputs) { length = try requiredInts(1, node, inputs, "dft_length")[0] }
    guard length > 0 else { throw GraphError(node: node.name, "\(node.sourceOp) length \(length)") }
    let dft = DirectDFT(outer: x.shape[..<axis].reduce(1, *), n: n, inner: x.shape[(axis + 1)..<(r - 1)].reduce(1, *),
                        components: c, length: length, inverse: inverse, onesided: onesided)
    var shape = x.shape
    shape[axis] = dft.outputLength
    shape[r - 1] = dft.outputComponents
    return LoweredOp(outputs: [(shape, .float32)]) { ins, outs in
        let xp = UnsafePointer(ins[0]!.floats), yp = outs[0].floats
        return { dft.run(xp, yp) }
    }
}

func lowerCol2Im(_ node: Node, _ inputs: [PlanValue?], strides: [Int], dilations: [Int], pads: [Int]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let image = try requiredInts(1, node, inputs, "image_shape"), block = try requiredInts(2, node, inputs, "block_shape")
    let r = image.count
    let s = strides.isEmpty ? Array(repeating: 1, count: r) : strides
    let d = dilations.isEmpty ? Array(repeating: 1, count: r) : dilations
    let p = pads.isEmpty ? Array(repeating: 0, count: 2 * r) : pads
    guard x.dtype.isFloat, x.shape.count == 3, block.count == r, s.count == r, d.count == r, p.count == 2 * r,
          block.product > 0, x.shape[1] % block.product == 0 else {
        throw GraphError(node: node.name, "\(node.sourceOp) input \(x.shape) does not fit image \(image) and block \(block)")
    }
    var positions: [Int] = []
    for i in 0..<r {
        let span: Int = image[i] + p[i] + p[r + i] - d[i] * (block[i] - 1) - 1
        positions.append(span / s[i] + 1)
    }
    guard positions.product == x.shape[2] else {
        throw GraphError(node: node.name, "\(node.sourceOp) input has \(x.shape[2]) blocks, the geometry gives \(positions.product)")
    }
    let c = x.shape[1] / block.product
    let kernel = Col2Im(batch: x.shape[0], channels: c, image: image, block: block, strides: s, dilations: d,
                        padBegin: Array(p[..<r]), positions: positions)
    return LoweredOp(outputs: [([x.shape[0], c] + image, .float32)]) { ins, outs in
        let xp = UnsafePointer(ins[0]!.floats), yp = outs[0].floats
        return { kernel.run(xp, yp) }
    }
}

func lowerNonMaxSuppression(_ node: Node, _ inputs: [PlanValue?], centerPointBox: Bool) throws -> LoweredOp {
    func known(_ i: Int) throws -> Tensor? {
        guard hasInput(i, inputs) else { return nil }
        guard let t = inputs[i]!.constant else {
            throw GraphError(node: node.name, "\(node.sourceOp) input \(i) ('\(node.inputs[i])') must be known before the run: its values decide the output's size")
        }
        return t
    }
    guard let boxes = try known(0), let scores = try known(1), boxes.dtype.isFloat, scores.dtype.isFloat,
          boxes.shape.count == 3, boxes.shape[2] == 4, scores.shape.count == 3,
          scores.shape[0] == boxes.shape[0], scores.shape[2] == boxes.shape[1] else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs boxes [B, N, 4] and scores [B, C, N]")
    }
    let maxPerClass = try known(2).flatMap { $0.count > 0 ? max(0, Int($0.int(at: 0))) : nil } ?? 0
    let iou = try known(3).flatMap { $0.count > 0 ? $0.floats[0] : nil } ?? 0
    let scoreThreshold = try known(4).flatMap { $0.count > 0 ? $0.floats[0] : nil }
    let (batches, classes, count) = (scores.shape[0], scores.shape[1], scores.shape[2])
    // The box's [xMin, xMax, yMin, yMax].
    func extent(_ b: Int, _ i: Int) -> (Float, Float, Float, Float) {
        let p = boxes.floats + (b * count + i) * 4
        if centerPointBox { return (p[0] - p[2] / 2, p[0] + p[2] / 2, p[1] - p[3] / 2, p[1] + p[3] / 2) }
        return (min(p[1], p[3]), max(p[1], p[3]), min(p[0], p[2]), max(p[0], p[2]))
    }
    func suppresses(_ b: Int, _ i: Int, _ j: Int) -> Bool {
        let a = extent(b, i), c = extent(b, j)
        let w = min(a.1, c.1) - max(a.0, c.0), h = min(a.3, c.3) - max(a.2, c.2)
        guard w > 0, h > 0 else { return false }
        let inter = w * h, areaA = (a.1 - a.0) * (a.3 - a.2), areaC = (c.1 - c.0) * (c.3 - c.2)
        let union = areaA + areaC - inter
        guard areaA > 0, areaC > 0, union > 0 else { return false }
        return inter / union > iou
    }
    var selected: [Int64] = []
    for b in 0..<batches {
        for c in 0..<classes {
            let s = scores.floats + (b * classes + c) * count
            // Highest score first, the lower index first among equal scores.
            let order = (0..<count).filter { scoreThreshold == nil || s[$0] > scoreThreshold! }
                .sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
            var kept: [Int] = []
            for i in order where kept.count < maxPerClass {
                if kept.allSatisfy({ !suppresses(b, i, $0) }) {
                    kept.append(i)
                    selected += [Int64(b), Int64(c), Int64(i)]
                }
            }
        }
    }
    let result = Tensor(shape: [selected.count / 3, 3], ints: selected)
    return LoweredOp(outputs: [(result.shape, .int64)]) { _, outs in
        let out = outs[0]
        return { copyContiguous(result.buffer.raw, out.buffer.raw, byteCount: result.count * 8) }
    }
}

func lowerLinearAttention(_ node: Node, _ inputs: [PlanValue?], qHeads: Int, kvHeads: Int, scale: Float?) throws -> LoweredOp {
    let q = try inputs.required(0, node), k = try inputs.required(1, node), v = try inputs.required(2, node)
    guard q.shape.count == 3, k.shape.count == 3, v.shape.count == 3, qHeads > 0, kvHeads > 0, qHeads % kvHeads == 0,
          q.shape[2] % qHeads == 0, k.shape[2] % kvHeads == 0, v.shape[2] % kvHeads == 0 else {
        throw GraphError(node: node.name, "\(node.sourceOp) shapes \(q.shape), \(k.shape), \(v.shape) do not fit \(qHeads)/\(kvHeads) heads")
    }
    let (b, t) = (q.shape[0], q.shape[1])
    let dk = q.shape[2] / qHeads, dv = v.shape[2] / kvHeads
    func width(_ i: Int) -> Int { hasInput(i, inputs) ? inputs[i]!.shape.last! : 0 }
    let decayWidth = width(4) == 0 ? 0 : (width(4) == kvHeads ? 1 : dk)
    let kernel = LinearAttentionKernel(batch: b, steps: t, qHeads: qHeads, kvHeads: kvHeads, dk: dk, dv: dv,
                                       scale: scale ?? 1 / Float(dk).squareRoot(), decayWidth: decayWidth, betaWidth: width(5))
    return LoweredOp(outputs: [([b, t, qHeads * dv], .float32), ([b, kvHeads, dk, dv], .float32)]) { ins, outs in
        let scratch = Tensor(zeros: [dv])
        let pq = UnsafePointer(ins[0]!.floats), pk = UnsafePointer(ins[1]!.floats), pv = UnsafePointer(ins[2]!.floats)
        let past = hasInput(3, inputs) ? UnsafePointer(ins[3]!.floats) : nil
        let decay = hasInput(4, inputs) ? UnsafePointer(ins[4]!.floats) : nil
        let beta = hasInput(5, inputs) ? UnsafePointer(ins[5]!.floats) : nil
        let y = outs[0].floats, state = outs[1].floats
        return { kernel.run(q: pq, k: pk, v: pv, past: past, decay: decay, beta: beta, out: y, state: state, scratch: scratch.floats) }
    }
}

func lowerDeterminant(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    guard x.dtype.isFloat, r >= 2, x.shape[r - 1] == x.shape[r - 2] else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs float square matrices [..., M, M], got \(x.shape)")
    }
    let m = x.shape[r - 1], shape = Array(x.shape.dropLast(2)), count = shape.product
    return LoweredOp(outputs: [(shape, .float32)]) { ins, outs in
        let scratch = UnsafeMutableBufferPointer<Double>.allocate(capacity: max(1, m * m))
        let owner = DeallocateOnDeinit(scratch)
        let xp = UnsafePointer(ins[0]!.floats), yp = outs[0].floats
        return { LinearAlgebra.determinants(xp, yp, count: count, m: m, scratch: owner.buffer.baseAddress!) }
    }
}

/// Frees a plan's scratch buffer with the closure that holds it.
private final class DeallocateOnDeinit<T>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<T>
    init(_ b: UnsafeMutableBufferPointer<T>) { buffer = b }
    deinit { buffer.deallocate() }
}

func lowerMaxUnpool(_ node: Node, _ inputs: [PlanValue?], kernel: [Int], strides: [Int], pads: [Int]) throws -> LoweredOp {
    let x = try inputs.required(0, node), idx = try inputs.required(1, node)
    let r = x.shape.count - 2
    guard r >= 1, kernel.count == r, x.dtype.isFloat, !idx.dtype.isFloat, idx.shape == x.shape else {
        throw GraphError(node: node.name, "\(node.sourceOp) values \(x.shape) and indices \(idx.shape) do not fit kernel \(kernel)")
    }
    let s = strides.isEmpty ? Array(repeating: 1, count: r) : strides
    let p = pads.isEmpty ? Array(repeating: 0, count: 2 * r) : pads
    var natural = Array(x.shape.prefix(2))
    for d in 0..<r { natural.append((x.shape[2 + d] - 1) * s[d] - p[d] - p[r + d] + kernel[d]) }
    let shape = hasInput(2, inputs) ? try requiredInts(2, node, inputs, "output_shape") : natural
    guard shape.count == r + 2, shape.allSatisfy({ $0 >= 0 }), natural.allSatisfy({ $0 >= 0 }) else {
        throw GraphError(node: node.name, "\(node.sourceOp) output shape \(shape)")
    }
    let count = x.shape.product, naturalStrides = natural.strides, outStrides = shape.strides
    return LoweredOp(outputs: [(shape, .float32)]) { ins, outs in
        let xp = UnsafePointer(ins[0]!.floats), ip = UnsafePointer(ins[1]!.ints), yp = outs[0].floats
        return {
            LinearAlgebra.unpool(xp, ip, count: count, yp, shape: natural, strides: naturalStrides,
                                 outShape: shape, outStrides: outStrides)
        }
    }
}
