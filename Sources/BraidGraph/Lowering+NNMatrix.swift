import BraidKernels
import BraidTensor

/// `y[M, N] = alpha * op(a) * op(b) + beta * c`, `c` broadcast (unidirectionally) to `[M, N]`.
func lowerGemm(_ node: Node, transA: Bool, transB: Bool, alpha: Float, beta: Float,
               _ inputs: [PlanValue?]) throws -> LoweredOp {
    let a = try inputs.required(0, node), b = try inputs.required(1, node)
    guard a.dtype == b.dtype else {
        throw GraphError(node: node.name, "\(node.sourceOp) inputs A and B differ in type: \(a.dtype) vs \(b.dtype)")
    }
    guard a.shape.count == 2, b.shape.count == 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs 2-D A and B, got \(a.shape) and \(b.shape)")
    }
    let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
    let kb = transB ? b.shape[1] : b.shape[0], n = transB ? b.shape[0] : b.shape[1]
    guard k == kb else {
        throw GraphError(node: node.name, "\(node.sourceOp) inner dims differ: op(A) is [\(m), \(k)], op(B) is [\(kb), \(n)] (A \(a.shape), B \(b.shape))")
    }
    // C's broadcast as (row stride, column stride) into its elements.
    var cStrides: (Int, Int)? = nil
    if inputs.count > 2, let c = inputs[2] {
        guard c.dtype == a.dtype else {
            throw GraphError(node: node.name, "\(node.sourceOp) input C must be \(a.dtype), got \(c.dtype)")
        }
        let cs = Array(repeating: 1, count: max(0, 2 - c.shape.count)) + c.shape
        guard cs.count == 2, cs[0] == 1 || cs[0] == m, cs[1] == 1 || cs[1] == n else {
            throw GraphError(node: node.name, "\(node.sourceOp) input C: expected a shape broadcastable to [\(m), \(n)], got \(c.shape)")
        }
        cStrides = (cs[0] == 1 ? 0 : cs[1], cs[1] == 1 ? 0 : 1)
    }
    let dtype = a.dtype
    let lda = a.shape[1], ldb = b.shape[1]
    if beta == 0 { cStrides = nil }
    return LoweredOp(outputs: [([m, n], dtype)]) { ins, outs in
        let cT = cStrides == nil ? nil : ins[2]
        if dtype.isFloat {
            let ap = ins[0]!.floats, bp = ins[1]!.floats, yp = outs[0].floats
            let cp = cT?.floats
            return {
                if let cp, let (rs, cs) = cStrides {
                    for i in 0..<m {
                        let row = yp + i * n, src = cp + i * rs
                        for j in 0..<n { row[j] = beta * src[j * cs] }
                    }
                }
                gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap, lda: lda,
                     b: bp, ldb: ldb, beta: cp == nil ? 0 : 1, c: yp, ldc: n)
            }
        }
        let ap = ins[0]!.ints, bp = ins[1]!.ints, yp = outs[0].ints
        let cp = cT?.ints
        let ia = Int64(alpha), ib = Int64(beta)
        return {
            gemmInt64(transA: transA, transB: transB, m: m, n: n, k: k, a: ap, lda: lda, b: bp, ldb: ldb, c: yp, ldc: n)
            for i in 0..<(m * n) { yp[i] = yp[i] &* ia }
            if let cp, let (rs, cs) = cStrides {
                for i in 0..<m {
                    for j in 0..<n { yp[i * n + j] &+= ib &* cp[i * rs + j * cs] }
                }
            }
        }
    }
}

/// How a NumPy matmul of `a` and `b` maps onto 2-D products: `count` products of
/// `[m, k] x [k, n]`, product `i` reading A at `aOffsets[i]` and B at `bOffsets[i]` and writing
/// `[m, n]` at `i * m * n` of the output. `fused` when A's batch is laid out like the output's
/// and B is shared, so one product with `m * count` rows does it all.
public struct MatMulLayout: Sendable {
    public var m: Int
    public var n: Int
    public var k: Int
    public var count: Int
    public var aOffsets: [Int]
    public var bOffsets: [Int]
    public var fused: Bool
    public var outputShape: [Int]
}

/// The layout of a matmul of `a` and `b` (1-D operands promoted and the promoted axis dropped
/// from the result, batch dims broadcast).
public func matMulLayout(_ node: Node, a: PlanValue, b: PlanValue) throws -> MatMulLayout {
    guard !a.shape.isEmpty, !b.shape.isEmpty else {
        throw GraphError(node: node.name, "\(node.sourceOp) does not take scalars, got shapes \(a.shape) and \(b.shape)")
    }
    let aShape = a.shape.count == 1 ? [1] + a.shape : a.shape
    let bShape = b.shape.count == 1 ? b.shape + [1] : b.shape
    let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1]
    let kb = bShape[bShape.count - 2], n = bShape[bShape.count - 1]
    guard k == kb else {
        throw GraphError(node: node.name, "\(node.sourceOp) inner dims differ: A \(a.shape) has K = \(k), B \(b.shape) has K = \(kb)")
    }
    let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
    let rank = max(aBatch.count, bBatch.count)
    let aPad = Array(repeating: 1, count: rank - aBatch.count) + aBatch
    let bPad = Array(repeating: 1, count: rank - bBatch.count) + bBatch
    var batch: [Int] = []
    for i in 0..<rank {
        guard aPad[i] == bPad[i] || aPad[i] == 1 || bPad[i] == 1 else {
            throw GraphError(node: node.name, "\(node.sourceOp) batch dims do not broadcast: A \(a.shape), B \(b.shape)")
        }
        batch.append(aPad[i] == 1 ? bPad[i] : aPad[i])
    }
    var outShape = batch
    if a.shape.count > 1 { outShape.append(m) }
    if b.shape.count > 1 { outShape.append(n) }
    let count = batch.product
    let aStrides = aPad.strides, bStrides = bPad.strides, outStrides = batch.strides
    var aOffsets = [Int](repeating: 0, count: count), bOffsets = [Int](repeating: 0, count: count)
    for idx in 0..<count {
        var rem = idx, ao = 0, bo = 0
        for d in 0..<rank {
            let i = rem / outStrides[d]
            rem %= outStrides[d]
            if aPad[d] != 1 { ao += i * aStrides[d] }
            if bPad[d] != 1 { bo += i * bStrides[d] }
        }
        aOffsets[idx] = ao * m * k
        bOffsets[idx] = bo * k * n
    }
    return MatMulLayout(m: m, n: n, k: k, count: count, aOffsets: aOffsets, bOffsets: bOffsets,
                        fused: aPad == batch && bPad.product == 1, outputShape: outShape)
}

/// NumPy matmul: a `[..., M, K]`, b `[..., K, N]` with 1-D operands promoted (and the promoted
/// axis dropped from the result) and batch dims broadcast.
func lowerMatMul(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let a = try inputs.required(0, node), b = try inputs.required(1, node)
    guard a.dtype == b.dtype else {
        throw GraphError(node: node.name, "\(node.sourceOp) inputs differ in type: \(a.dtype) vs \(b.dtype)")
    }
    let layout = try matMulLayout(node, a: a, b: b)
    let (m, n, k, count) = (layout.m, layout.n, layout.k, layout.count)
    let aOffsets = layout.aOffsets, bOffsets = layout.bOffsets, fused = layout.fused
    let outShape = layout.outputShape
    let dtype = a.dtype
    return LoweredOp(outputs: [(outShape, dtype)]) { ins, outs in
        if dtype.isFloat {
            let ap = ins[0]!.floats, bp = ins[1]!.floats, yp = outs[0].floats
            if fused {
                return {
                    gemm(transA: false, transB: false, m: m * count, n: n, k: k, alpha: 1, a: ap, lda: k,
                         b: bp, ldb: n, beta: 0, c: yp, ldc: n)
                }
            }
            return {
                for i in 0..<count {
                    gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: ap + aOffsets[i], lda: k,
                         b: bp + bOffsets[i], ldb: n, beta: 0, c: yp + i * m * n, ldc: n)
                }
            }
        }
        let ap = ins[0]!.ints, bp = ins[1]!.ints, yp = outs[0].ints
        return {
            for i in 0..<count {
                gemmInt64(transA: false, transB: false, m: m, n: n, k: k, a: ap + aOffsets[i], lda: k,
                          b: bp + bOffsets[i], ldb: n, c: yp + i * m * n, ldc: n)
            }
        }
    }
}

// MARK: - 3-D convolution

/// Convolution over three spatial axes through the direct kernel (the im2col and Winograd
/// paths are 1-D and 2-D).
func lowerConv3D(_ node: Node, _ p: ConvParams, x: PlanValue, w: PlanValue, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let n = x.shape[0], c = x.shape[1], m = w.shape[0], group = max(1, p.group)
    guard w.shape.count == 5, c % group == 0, m % group == 0, w.shape[1] == c / group else {
        throw GraphError(node: node.name, "\(node.sourceOp) weight \(w.shape) does not fit input \(x.shape) with group \(group)")
    }
    let kernel = Array(w.shape[2...])
    let axes = try resolveWindows(node, spatial: Array(x.shape[2...]), kernel: kernel, strides: p.strides,
                                  pads: p.pads, dilations: p.dilations, autoPad: p.autoPad)
    let bias = try nnOptionalInput(2, node, inputs, "B", shape: [m])
    let direct = DirectConv(batch: n, inChannels: c, outChannels: m, group: group, input: Array(x.shape[2...]),
                            output: axes.map(\.output), kernel: kernel, strides: axes.map(\.stride),
                            dilations: axes.map(\.dilation), padBegin: axes.map(\.padBegin), transposed: false)
    let shape = [n, m] + axes.map(\.output)
    // A fused epilogue (Passes.fuseConvEpilogues) runs after the product: residual, activation.
    let residual = p.fusion?.residual == true
    if residual {
        guard try nnFloatInput(3, node, inputs, "residual").shape == shape else {
            throw GraphError(node: node.name, "\(node.sourceOp): a fused residual must have the output's shape \(shape) for a 3-D convolution")
        }
    }
    return directConvOp(direct, shape, hasBias: bias != nil, residual: residual, activation: p.fusion?.activation)
}

func directConvOp(_ direct: DirectConv, _ shape: [Int], hasBias: Bool, residual: Bool = false,
                  activation: ConvActivation? = nil) -> LoweredOp {
    let count = shape.product
    return LoweredOp(outputs: [(shape, .float32)]) { ins, outs in
        let xp = UnsafePointer(ins[0]!.floats), wp = UnsafePointer(ins[1]!.floats)
        let bp = hasBias ? UnsafePointer(ins[2]!.floats) : nil
        let rp = residual ? UnsafePointer(ins[3]!.floats) : nil
        let yp = outs[0].floats
        return {
            direct.run(x: xp, w: wp, bias: bp, y: yp)
            if let rp { Elementwise.add(rp, into: yp, count: count) }
            activation?.apply(yp, cols: count)
        }
    }
}
