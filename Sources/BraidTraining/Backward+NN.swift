import BraidGraph
import BraidKernels
import BraidTensor

/// Backward rules of the neural-network family. Geometry and layouts come from the same
/// helpers the forward lowering uses, so padding, broadcasting and axes agree by construction.
func backwardNN(_ node: Node, _ inputs: [PlanValue?], _ outputs: [PlanValue], needs: [Bool]) throws -> LoweredBackward {
    switch node.op {
    case .conv(let p):
        guard p.fusion == nil else {
            throw GraphError(node: node.name, "\(node.sourceOp): a fused convolution has no backward; train the graph from before Passes.optimizeForExecution")
        }
        let x = try inputs.required(0, node), w = try inputs.required(1, node)
        let (geometry, _) = try convGeometry(node, p, x: x, w: w)
        return LoweredBackward { ins, _, gOuts, gIns in
            guard let dy = gOuts[0] else { return {} }
            let conv = Conv2DBackward(geometry)
            let xp = ins[0]!.floats, wp = ins[1]!.floats, dyp = dy.floats
            let dx = gIns[0]?.floats, dw = gIns[1]?.floats, db = gIns.count > 2 ? gIns[2]?.floats : nil
            return { conv.backward(x: xp, weight: wp, dy: dyp, dx: dx, dw: dw, db: db) }
        }
    case .gemm(let transA, let transB, let alpha, let beta):
        return try backwardGemm(node, transA: transA, transB: transB, alpha: alpha, beta: beta, inputs)
    case .matMul:
        return try backwardMatMul(node, inputs)
    case .batchNorm(let epsilon):
        let (n, c, spatial) = try nnLayout(node, inputs)
        return LoweredBackward { ins, _, gOuts, gIns in
            guard let dy = gOuts[0] else { return {} }
            let x = ins[0]!.floats, scale = ins[1]!.floats, mean = ins[3]!.floats, variance = ins[4]!.floats
            let dyp = dy.floats
            let g = (0..<5).map { gIns[$0]?.floats }
            return {
                batchNormBackward(batch: n, channels: c, spatial: spatial, x: x, scale: scale, mean: mean,
                                  variance: variance, epsilon: epsilon, dy: dyp, dx: g[0], dScale: g[1],
                                  dBias: g[2], dMean: g[3], dVar: g[4])
            }
        }
    case .batchNormTraining:
        let (n, c, spatial) = try nnLayout(node, inputs)
        if needs.count > 4 && (needs[3] || needs[4]) {
            throw GraphError(node: node.name, "\(node.sourceOp) in training mode gives no gradient to its running statistics; freeze '\(node.inputs[3])' and '\(node.inputs[4])'")
        }
        return LoweredBackward { ins, outs, gOuts, gIns in
            guard let dy = gOuts[0] else { return {} }
            let x = ins[0]!.floats, scale = ins[1]!.floats, mean = outs[1].floats, inv = outs[2].floats
            let dyp = dy.floats, dx = gIns[0]?.floats, ds = gIns[1]?.floats, db = gIns[2]?.floats
            return {
                batchNormTrainingBackward(batch: n, channels: c, spatial: spatial, x: x, scale: scale, mean: mean,
                                          invStd: inv, dy: dyp, dx: dx, dScale: ds, dBias: db)
            }
        }
    case .instanceNorm(let epsilon):
        let (n, c, spatial) = try nnLayout(node, inputs)
        return LoweredBackward { ins, _, gOuts, gIns in
            guard let dy = gOuts[0] else { return {} }
            let x = ins[0]!.floats, scale = ins[1]!.floats, dyp = dy.floats
            let dx = gIns[0]?.floats, ds = gIns[1]?.floats, db = gIns[2]?.floats
            return {
                instanceNormBackward(batch: n, channels: c, spatial: spatial, x: x, scale: scale, epsilon: epsilon,
                                     dy: dyp, dx: dx, dScale: ds, dBias: db)
            }
        }
    case .layerNorm(let axis, let epsilon):
        return try backwardLayerNorm(node, axis: axis, epsilon: epsilon, inputs)
    case .pool(let p):
        let x = try inputs.required(0, node)
        let reduction: PoolReduction
        switch p.kind {
        case .max: reduction = .max
        case .average: reduction = .average(countIncludePad: p.countIncludePad)
        case .lp: throw GraphError(node: node.name, "\(node.sourceOp) (Lp pooling) has no backward rule")
        }
        guard x.dtype.isFloat else { throw GraphError(node: node.name, "\(node.sourceOp) on \(x.dtype) has no gradient") }
        let (geometry, _) = try poolGeometry(node, p, x: x)
        return LoweredBackward { ins, _, gOuts, gIns in
            guard let dy = gOuts[0], let dx = gIns[0] else { return {} }
            let xp = ins[0]!.floats, dyp = dy.floats, dxp = dx.floats
            return { poolBackward(geometry, reduction, x: xp, dy: dyp, dx: dxp) }
        }
    case .globalPool(let kind):
        let x = try inputs.required(0, node)
        let reduction: PoolReduction
        switch kind {
        case .max: reduction = .max
        case .average: reduction = .average(countIncludePad: false)
        case .lp: throw GraphError(node: node.name, "\(node.sourceOp) (Lp pooling) has no backward rule")
        }
        let planes = x.shape.prefix(2).reduce(1, *), size = x.shape.dropFirst(2).reduce(1, *)
        return LoweredBackward { ins, _, gOuts, gIns in
            guard let dy = gOuts[0], let dx = gIns[0] else { return {} }
            let xp = ins[0]!.floats, dyp = dy.floats, dxp = dx.floats
            return { globalPoolBackward(reduction, planes: planes, size: size, x: xp, dy: dyp, dx: dxp) }
        }
    case .softmax(let kind, let axis, let coerce2D):
        let mode = kind
        if mode == .hardmax { throw GraphError(node: node.name, "\(node.sourceOp) (hardmax) has no gradient") }
        let x = try inputs.required(0, node)
        let ax = axis < 0 ? axis + x.shape.count : axis
        let (outer, len, inner) = softmaxLayout(x.shape, axis: ax, coerce2D: coerce2D)
        return LoweredBackward { _, outs, gOuts, gIns in
            guard let dy = gOuts[0], let dx = gIns[0] else { return {} }
            let yp = outs[0].floats, dyp = dy.floats, dxp = dx.floats
            return { softmaxBackward(mode, outer: outer, axis: len, inner: inner, y: yp, dy: dyp, dx: dxp) }
        }
    case .dropout:
        let count = try inputs.required(0, node).shape.product
        return LoweredBackward { _, _, gOuts, gIns in
            guard let dy = gOuts[0], let dx = gIns[0] else { return {} }
            let dyp = dy.floats, dxp = dx.floats
            return { for i in 0..<count { dxp[i] += dyp[i] } }
        }
    case .dropoutTraining(let ratio, _):
        let count = try inputs.required(0, node).shape.product
        return LoweredBackward { _, outs, gOuts, gIns in
            guard let dy = gOuts[0], let dx = gIns[0] else { return {} }
            let mask = outs[1].floats, dyp = dy.floats, dxp = dx.floats
            return { dropoutTrainingBackward(count: count, ratio: ratio, mask: mask, dy: dyp, dx: dxp) }
        }
    default:
        throw GraphError(node: node.name, "\(node.sourceOp) has no backward rule")
    }
}

/// `(N, C, S)` of input 0 viewed as `[N, C, S]`.
private func nnLayout(_ node: Node, _ inputs: [PlanValue?]) throws -> (Int, Int, Int) {
    let x = try inputs.required(0, node)
    guard x.shape.count >= 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, ...], got \(x.shape)")
    }
    return (x.shape[0], x.shape[1], x.shape.dropFirst(2).reduce(1, *))
}

/// `Y = alpha * op(A) * op(B) + beta * C`: dA and dB by `gemmBackward`, dC as `beta * dY`
/// summed over C's broadcast axes.
private func backwardGemm(_ node: Node, transA: Bool, transB: Bool, alpha: Float, beta: Float,
                          _ inputs: [PlanValue?]) throws -> LoweredBackward {
    let a = try inputs.required(0, node), b = try inputs.required(1, node)
    guard a.dtype.isFloat else { throw GraphError(node: node.name, "\(node.sourceOp) on \(a.dtype) has no gradient") }
    let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
    let n = transB ? b.shape[0] : b.shape[1]
    let lda = a.shape[1], ldb = b.shape[1]
    var cStrides = (0, 0)
    if inputs.count > 2, let c = inputs[2] {
        let cs = Array(repeating: 1, count: max(0, 2 - c.shape.count)) + c.shape
        cStrides = (cs[0] == 1 ? 0 : cs[1], cs[1] == 1 ? 0 : 1)
    }
    return LoweredBackward { ins, _, gOuts, gIns in
        guard let dy = gOuts[0] else { return {} }
        let ap = ins[0]!.floats, bp = ins[1]!.floats, dyp = dy.floats
        let da = gIns[0]?.floats, db = gIns[1]?.floats
        let dc = gIns.count > 2 && beta != 0 ? gIns[2]?.floats : nil
        let (rs, cs) = cStrides
        return {
            gemmBackward(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap, lda: lda,
                         b: bp, ldb: ldb, dy: dyp, da: da, db: db)
            if let dc {
                for i in 0..<m {
                    let row = dyp + i * n, dst = dc + i * rs
                    for j in 0..<n { dst[j * cs] += beta * row[j] }
                }
            }
        }
    }
}

/// NumPy matmul: per 2-D product `dA_i += dY_i · B_iᵀ` and `dB_i += A_iᵀ · dY_i`, broadcast
/// operands summing over the products that share them.
private func backwardMatMul(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredBackward {
    let a = try inputs.required(0, node), b = try inputs.required(1, node)
    guard a.dtype.isFloat else { throw GraphError(node: node.name, "\(node.sourceOp) on \(a.dtype) has no gradient") }
    let layout = try matMulLayout(node, a: a, b: b)
    let (m, n, k, count) = (layout.m, layout.n, layout.k, layout.count)
    return LoweredBackward { ins, _, gOuts, gIns in
        guard let dy = gOuts[0] else { return {} }
        let ap = ins[0]!.floats, bp = ins[1]!.floats, dyp = dy.floats
        let da = gIns[0]?.floats, db = gIns[1]?.floats
        if layout.fused {
            return {
                gemmBackward(transA: false, transB: false, m: m * count, n: n, k: k, alpha: 1, a: ap, lda: k,
                             b: bp, ldb: n, dy: dyp, da: da, db: db)
            }
        }
        let aOffsets = layout.aOffsets, bOffsets = layout.bOffsets
        return {
            for i in 0..<count {
                gemmBackward(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: ap + aOffsets[i], lda: k,
                             b: bp + bOffsets[i], ldb: n, dy: dyp + i * m * n, da: da.map { $0 + aOffsets[i] },
                             db: db.map { $0 + bOffsets[i] })
            }
        }
    }
}

/// Layer normalisation over axes `axis...`; a broadcast scale or bias gets its gradient summed
/// back over the axes it was broadcast along.
private func backwardLayerNorm(_ node: Node, axis: Int, epsilon: Float, _ inputs: [PlanValue?]) throws -> LoweredBackward {
    let x = try inputs.required(0, node), scale = try inputs.required(1, node)
    let ax = axis < 0 ? axis + x.shape.count : axis
    let normShape = Array(x.shape[ax...])
    let outer = x.shape[..<ax].reduce(1, *), inner = normShape.product
    let scaleMap = try nnBroadcastIndex(scale.shape, to: normShape, node, "scale")
    let biasMap = try (inputs.count > 2 ? inputs[2] : nil).map { try nnBroadcastIndex($0.shape, to: normShape, node, "B") } ?? nil
    return LoweredBackward { ins, _, gOuts, gIns in
        guard let dy = gOuts[0] else { return {} }
        let scratch = Tensor(zeros: [3 * inner + 2 * outer])
        let s = scratch.floats, dScaleFull = s + inner, dBiasFull = s + 2 * inner, stats = s + 3 * inner
        let xp = ins[0]!.floats, sp = ins[1]!.floats, dyp = dy.floats
        let dx = gIns[0]?.floats, ds = gIns[1]?.floats, db = gIns.count > 2 ? gIns[2]?.floats : nil
        return {
            withExtendedLifetime(scratch) {}
            var scaleP = UnsafePointer(sp)
            if let scaleMap {
                for j in 0..<inner { s[j] = sp[scaleMap[j]] }
                scaleP = UnsafePointer(s)
            }
            let dsTarget = ds == nil ? nil : (scaleMap == nil ? ds : dScaleFull)
            let dbTarget = db == nil ? nil : (biasMap == nil ? db : dBiasFull)
            if scaleMap != nil { dScaleFull.update(repeating: 0, count: inner) }
            if biasMap != nil { dBiasFull.update(repeating: 0, count: inner) }
            layerNormBackward(outer: outer, inner: inner, x: xp, scale: scaleP, epsilon: epsilon, dy: dyp, dx: dx,
                              dScale: dsTarget, dBias: dbTarget, stats: stats)
            if let ds, let scaleMap { for j in 0..<inner { ds[scaleMap[j]] += dScaleFull[j] } }
            if let db, let biasMap { for j in 0..<inner { db[biasMap[j]] += dBiasFull[j] } }
        }
    }
}
