import BraidKernels
import BraidTensor

/// `[x, scale, bias, mean, var]`, x `[N, C, ...]`, the rest `[C]`. When the four parameters
/// are plan-time constants they are folded into a per-channel scale and shift once here.
/// Extra outputs (ONNX's running mean and variance) echo the given mean and variance.
func lowerBatchNorm(_ node: Node, epsilon: Float, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    guard x.shape.count >= 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, ...], got \(x.shape)")
    }
    let n = x.shape[0], c = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *)
    var params: [PlanValue] = []
    for (i, role) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
        let v = try nnFloatInput(i, node, inputs, role)
        try nnExpectShape(v, [c], node, role)
        params.append(v)
    }
    var folded: ([Float], [Float])? = nil
    if params.allSatisfy({ $0.constant != nil }) {
        var s = [Float](repeating: 0, count: c), t = [Float](repeating: 0, count: c)
        let p = params.map { $0.constant!.floats }
        batchNormCoefficients(channels: c, scale: p[0], bias: p[1], mean: p[2], variance: p[3], epsilon: epsilon,
                              outScale: &s, outShift: &t)
        folded = (s, t)
    }
    let extra = max(0, node.outputs.count - 1)
    let outputs = [(x.shape, DType.float32)] + Array(repeating: ([c], DType.float32), count: extra)
    return LoweredOp(outputs: outputs) { ins, outs in
        let holder = NNScratch(count: 2 * c)
        let scale = holder.pointer, shift = holder.pointer + c
        if let folded {
            scale.update(from: folded.0, count: c)
            shift.update(from: folded.1, count: c)
        }
        let p = (1...4).map { UnsafePointer(ins[$0]!.floats) }
        let xp = ins[0]!.floats, yp = outs[0].floats
        let echoes = (0..<min(extra, 2)).map { (outs[1 + $0].floats, p[2 + $0]) }
        let refold = folded == nil
        return {
            withExtendedLifetime(holder) {}
            if refold {
                batchNormCoefficients(channels: c, scale: p[0], bias: p[1], mean: p[2], variance: p[3],
                                      epsilon: epsilon, outScale: scale, outShift: shift)
            }
            channelAffine(batch: n, channels: c, spatial: spatial, x: xp, scale: scale, shift: shift, y: yp)
            for (dst, src) in echoes { dst.update(from: src, count: c) }
        }
    }
}

/// Owns a scratch allocation made in `make` for as long as the run closure lives.
final class NNScratch: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(count: Int) { pointer = .allocate(capacity: max(1, count)) }
    deinit { pointer.deallocate() }
}

/// `[x, scale, bias]`, x `[N, C, ...]`, scale and bias `[C]`.
func lowerInstanceNorm(_ node: Node, epsilon: Float, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    guard x.shape.count >= 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, ...], got \(x.shape)")
    }
    let n = x.shape[0], c = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *)
    try nnExpectShape(try nnFloatInput(1, node, inputs, "scale"), [c], node, "scale")
    try nnExpectShape(try nnFloatInput(2, node, inputs, "B"), [c], node, "B")
    return LoweredOp(outputs: [(x.shape, .float32)]) { ins, outs in
        let xp = ins[0]!.floats, sp = ins[1]!.floats, bp = ins[2]!.floats, yp = outs[0].floats
        return { instanceNorm(batch: n, channels: c, spatial: spatial, x: xp, scale: sp, bias: bp, epsilon: epsilon, y: yp) }
    }
}

/// `[x, scale, bias?]` normalised over axes `axis...`; scale and bias broadcast to those axes.
/// Optional outputs `[mean, invStdDev]` have shape `x.shape[..<axis] + [1, ...]`.
func lowerLayerNorm(_ node: Node, axis: Int, epsilon: Float, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    let rank = x.shape.count
    let ax = axis < 0 ? axis + rank : axis
    guard ax >= 0 && ax < max(rank, 1) else {
        throw GraphError(node: node.name, "\(node.sourceOp) axis \(axis) out of range for input \(x.shape)")
    }
    let normShape = Array(x.shape[ax...])
    let outer = x.shape[..<ax].reduce(1, *), inner = normShape.product
    let scale = try nnFloatInput(1, node, inputs, "scale")
    let bias = inputs.count > 2 ? inputs[2] : nil
    if let bias, bias.dtype != .float32 {
        throw GraphError(node: node.name, "\(node.sourceOp) input B must be float32, got \(bias.dtype)")
    }
    let scaleMap = try nnBroadcastIndex(scale.shape, to: normShape, node, "scale")
    let biasMap = try bias.map { try nnBroadcastIndex($0.shape, to: normShape, node, "B") } ?? nil
    let statShape = Array(x.shape[..<ax]) + Array(repeating: 1, count: rank - ax)
    let extra = min(2, max(0, node.outputs.count - 1))
    let outputs = [(x.shape, DType.float32)] + Array(repeating: (statShape, DType.float32), count: extra)
    let hasBias = bias != nil
    return LoweredOp(outputs: outputs) { ins, outs in
        let holder = NNScratch(count: 2 * inner)
        let scratch = holder.pointer
        let xp = ins[0]!.floats, yp = outs[0].floats
        let sp = ins[1]!.floats, bp = hasBias ? ins[2]!.floats : nil
        let meanP = extra > 0 ? outs[1].floats : nil, invP = extra > 1 ? outs[2].floats : nil
        return {
            withExtendedLifetime(holder) {}
            var s = UnsafePointer(sp), b = bp.map { UnsafePointer($0) }
            if let scaleMap {
                for j in 0..<inner { scratch[j] = sp[scaleMap[j]] }
                s = UnsafePointer(scratch)
            }
            if let biasMap, let bp {
                for j in 0..<inner { scratch[inner + j] = bp[biasMap[j]] }
                b = UnsafePointer(scratch + inner)
            }
            layerNorm(outer: outer, inner: inner, x: xp, scale: s, bias: b, epsilon: epsilon, y: yp,
                      mean: meanP, invStdDev: invP)
        }
    }
}

/// For a tensor of `shape` broadcast (NumPy rules, unidirectionally) to `target`, the source
/// index of each target element; nil when no broadcast is needed.
public func nnBroadcastIndex(_ shape: [Int], to target: [Int], _ node: Node, _ role: String) throws -> [Int]? {
    if shape == target || (shape.product == target.product && shape.filter { $0 != 1 } == target.filter { $0 != 1 }) {
        return nil
    }
    guard shape.count <= target.count else {
        throw GraphError(node: node.name, "\(node.sourceOp) input \(role): shape \(shape) does not broadcast to \(target)")
    }
    let padded = Array(repeating: 1, count: target.count - shape.count) + shape
    for (s, t) in zip(padded, target) where s != t && s != 1 {
        throw GraphError(node: node.name, "\(node.sourceOp) input \(role): shape \(shape) does not broadcast to \(target)")
    }
    let srcStrides = padded.strides, dstStrides = target.strides
    return (0..<target.product).map { idx in
        var rem = idx, o = 0
        for d in 0..<target.count {
            let i = rem / dstStrides[d]
            rem %= dstStrides[d]
            if padded[d] != 1 { o += i * srcStrides[d] }
        }
        return o
    }
}

/// Local response normalisation over the channels of x `[N, C, ...]`.
func lowerLRN(_ node: Node, size: Int, alpha: Float, beta: Float, bias: Float, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    guard x.shape.count >= 2, size >= 1 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, ...] and size >= 1, got \(x.shape), size \(size)")
    }
    let n = x.shape[0], c = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *)
    return LoweredOp(outputs: [(x.shape, .float32)]) { ins, outs in
        let xp = ins[0]!.floats, yp = outs[0].floats
        return { lrn(batch: n, channels: c, spatial: spatial, size: size, alpha: alpha, beta: beta, bias: bias, x: xp, y: yp) }
    }
}

/// Softmax's view of a tensor of `shape` as `[outer, axis, inner]` for a non-negative `axis`.
public func softmaxLayout(_ shape: [Int], axis ax: Int, coerce2D: Bool) -> (outer: Int, axis: Int, inner: Int) {
    let rank = shape.count
    let outer = shape[..<min(ax, rank)].reduce(1, *)
    let len = coerce2D ? shape[min(ax, rank)...].reduce(1, *) : (rank == 0 ? 1 : shape[ax])
    let inner = coerce2D || rank == 0 ? 1 : shape[(ax + 1)...].reduce(1, *)
    return (outer, len, inner)
}

func lowerSoftmax(_ node: Node, _ kind: SoftmaxMode, axis: Int, coerce2D: Bool, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "input")
    let rank = x.shape.count
    let ax = axis < 0 ? axis + rank : axis
    guard (ax >= 0 && ax < rank) || (rank == 0 && ax == 0) else {
        throw GraphError(node: node.name, "\(node.sourceOp) axis \(axis) out of range for input \(x.shape)")
    }
    let (outer, len, inner) = softmaxLayout(x.shape, axis: ax, coerce2D: coerce2D)
    let mode = kind
    return LoweredOp(outputs: [(x.shape, .float32)]) { ins, outs in
        let xp = ins[0]!.floats, yp = outs[0].floats
        return { softmax(mode, outer: outer, axis: len, inner: inner, x: xp, y: yp) }
    }
}

/// Identity at inference: `[x, ratio?, trainingMode?]` -> `[y, mask?]`, mask all true.
func lowerDropout(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let withMask = node.outputs.count > 1
    var outputs = [(x.shape, x.dtype)]
    if withMask { outputs.append((x.shape, .bool)) }
    let bytes = x.shape.product * x.dtype.storageStride, count = x.shape.product
    return LoweredOp(outputs: outputs) { ins, outs in
        let src = ins[0]!.buffer.raw, dst = outs[0].buffer.raw
        let mask = withMask ? outs[1].ints : nil
        return {
            dst.copyMemory(from: src, byteCount: bytes)
            mask?.update(repeating: 1, count: count)
        }
    }
}

/// Training-mode batch normalisation: `[x, scale, bias, runningMean, runningVar]`, x
/// `[N, C, ...]`, the rest `[C]` -> `[y, batchMean [C], batchInvStd [C]]` (all three always
/// produced: the backward reads the statistics). Each run updates the running statistics in
/// place in the tensors bound to inputs 3 and 4.
func lowerBatchNormTraining(_ node: Node, epsilon: Float, momentum: Float, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    guard x.shape.count >= 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, ...], got \(x.shape)")
    }
    let n = x.shape[0], c = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *)
    for (i, role) in [(1, "scale"), (2, "B"), (3, "running mean"), (4, "running var")] {
        try nnExpectShape(try nnFloatInput(i, node, inputs, role), [c], node, role)
    }
    return LoweredOp(outputs: [(x.shape, .float32), ([c], .float32), ([c], .float32)]) { ins, outs in
        let xp = ins[0]!.floats, sp = ins[1]!.floats, bp = ins[2]!.floats
        let rm = ins[3]!.floats, rv = ins[4]!.floats
        let yp = outs[0].floats, mp = outs[1].floats, ip = outs[2].floats
        return {
            batchNormTraining(batch: n, channels: c, spatial: spatial, x: xp, scale: sp, bias: bp, epsilon: epsilon,
                              momentum: momentum, runningMean: rm, runningVar: rv, y: yp, mean: mp, invStd: ip)
        }
    }
}

/// Training-mode dropout: `[x]` -> `[y, mask]` (mask float 0/1, always produced: the backward
/// reads it). The plan owns one random stream seeded with `seed`, advanced on every run.
func lowerDropoutTraining(_ node: Node, ratio: Float, seed: UInt64, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    guard ratio >= 0 && ratio <= 1 else {
        throw GraphError(node: node.name, "\(node.sourceOp) ratio must be in [0, 1], got \(ratio)")
    }
    let count = x.shape.product
    return LoweredOp(outputs: [(x.shape, .float32), (x.shape, .float32)]) { ins, outs in
        let stream = DropoutStream(seed: seed)
        let xp = ins[0]!.floats, yp = outs[0].floats, mp = outs[1].floats
        return { dropoutTraining(count: count, ratio: ratio, stream: stream, x: xp, y: yp, mask: mp) }
    }
}
