import BraidGraph
import BraidKernels
import BraidTensor

/// Backward rules of the element-wise family: unary, binary (add, sub, mul, div, pow, max,
/// min), variadic sum/mean/max/min, select, clip, prelu and float-to-float cast.
///
/// A broadcast operand's gradient is computed in the output's shape and summed back to the
/// operand's shape by `BroadcastGradient`; an operand of the output's shape is added into
/// directly. Ties: binary max/min split the gradient evenly (PyTorch's rule), variadic max/min
/// send it to the first input holding the extreme. Clip passes the gradient where
/// `min < x < max` strictly; its bounds, select's condition and integer operands get none.
func backwardMath(_ node: Node, _ inputs: [PlanValue?], _ outputs: [PlanValue], needs: [Bool]) throws -> LoweredBackward {
    let out = outputs[0]
    guard out.dtype.isFloat else {
        throw GraphError(node: node.name, "\(node.sourceOp) has no gradient on \(out.dtype) values")
    }
    switch node.op {
    case .unary(let op):
        let f = op
        guard f.isDifferentiable else {
            throw GraphError(node: node.name, "\(node.sourceOp) has no gradient")
        }
        let n = out.shape.product
        return LoweredBackward { ins, outs, gOuts, gIns in
            guard let g = gOuts[0], let gx = gIns[0] else { return {} }
            let x = ins[0]!.floats, y = outs[0].floats, pg = g.floats, px = gx.floats
            return { Elementwise.unaryBackward(f, x, y, pg, px, count: n) }
        }
    case .binary(let op):
        return try binaryBackward(node, op, inputs, out, needs: needs)
    case .variadic(let op):
        return try variadicBackward(node, op, inputs, out)
    case .select:
        return try selectBackward(node, inputs, out)
    case .clip:
        let n = out.shape.product
        return LoweredBackward { ins, outs, gOuts, gIns in
            guard let g = gOuts[0], let gx = gIns[0] else { return {} }
            let x = ins[0]!.floats, pg = g.floats, px = gx.floats
            let lo = ins.count > 1 ? ins[1]?.floats : nil, hi = ins.count > 2 ? ins[2]?.floats : nil
            return {
                Elementwise.clipBackward(x, pg, px, count: n, lo: lo?[0] ?? -.infinity, hi: hi?[0] ?? .infinity)
            }
        }
    case .prelu:
        return try preluBackward(node, inputs, out)
    case .cast, .castLike:
        let x = try inputs.required(0, node)
        guard x.dtype.isFloat else {
            throw GraphError(node: node.name, "\(node.sourceOp) from \(x.dtype) has no gradient")
        }
        let n = out.shape.product
        return LoweredBackward { _, _, gOuts, gIns in
            guard let g = gOuts[0], let gx = gIns[0] else { return {} }
            let pg = g.floats, px = gx.floats
            return { Elementwise.add(pg, into: px, count: n) }
        }
    default:
        throw GraphError(node: node.name, "\(node.sourceOp) is not an element-wise op")
    }
}

/// The gradient path of one broadcast operand: `write(dst, accumulate)` produces the local
/// gradient in output order; it goes straight into `gx` when the operand is not broadcast,
/// else into `scratch` and is then summed to the operand's shape.
private struct OperandGradient {
    let reduce: BroadcastGradient
    let scratch: Tensor?

    init(_ shape: [Int], _ outShape: [Int]) {
        reduce = BroadcastGradient(inputShape: shape, outputShape: outShape)!
        scratch = reduce.isIdentity ? nil : Tensor(zeros: outShape)
    }

    /// The closure body: `local(dst, accumulate)` then the reduction when needed.
    func step(_ gx: Tensor, _ local: @escaping (UnsafeMutablePointer<Float>, Bool) -> Void) -> () -> Void {
        let px = gx.floats
        guard let scratch else { return { local(px, true) } }
        let reduce = self.reduce
        return {
            let ps = scratch.floats
            local(ps, false)
            reduce.accumulate(ps, into: px)
        }
    }
}

/// The backward of a two-operand broadcast op: each operand `k` that wants a gradient gets
/// `kernel(k, a, b, y, dy, dst, accumulate)`, reduced back to its shape when it was broadcast.
private func pairGradient(
    _ shapes: [[Int]], _ outShape: [Int],
    _ kernel: @escaping (Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                         UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Bool) -> Void
) -> LoweredBackward {
    LoweredBackward { ins, outs, gOuts, gIns in
        guard let g = gOuts[0] else { return {} }
        let pa = ins[0]!.floats, pb = ins[1]!.floats, y = outs[0].floats, pg = g.floats
        var steps: [() -> Void] = []
        for k in 0..<2 {
            guard let gx = gIns[k] else { continue }
            let path = OperandGradient(shapes[k], outShape)
            steps.append(path.step(gx) { dst, acc in kernel(k, pa, pb, y, pg, dst, acc) })
        }
        return sequence(steps)
    }
}

/// Runs the steps in order as one closure.
func sequence(_ steps: [() -> Void]) -> () -> Void {
    if steps.count == 1 { return steps[0] }
    return { for s in steps { s() } }
}

private func binaryBackward(_ node: Node, _ op: BinaryFunction, _ inputs: [PlanValue?], _ out: PlanValue,
                            needs: [Bool]) throws -> LoweredBackward {
    let a = try inputs.required(0, node), b = try inputs.required(1, node)
    let f = op
    guard f.isDifferentiable else { throw GraphError(node: node.name, "\(node.sourceOp) has no gradient") }
    guard a.dtype.isFloat, b.dtype.isFloat else {
        throw GraphError(node: node.name, "\(node.sourceOp) with \(a.dtype) and \(b.dtype) operands has no gradient")
    }
    let layout = BroadcastLayout(inputs: [a.shape, b.shape])!
    let shapes = [a.shape, b.shape]
    return pairGradient(shapes, out.shape) { k, pa, pb, y, pg, dst, acc in
        Elementwise.binaryBackward(f, operand: k, layout, pa, pb, y, pg, dst, accumulate: acc)
    }
}

private func variadicBackward(_ node: Node, _ op: VariadicOp, _ inputs: [PlanValue?], _ out: PlanValue) throws -> LoweredBackward {
    let present = inputs.indices.filter { inputs[$0] != nil }
    let shapes = present.map { inputs[$0]!.shape }
    let n = out.shape.product
    switch op {
    case .sum, .mean:
        let s: Float = op == .mean ? 1 / Float(present.count) : 1
        return LoweredBackward { _, _, gOuts, gIns in
            guard let g = gOuts[0] else { return {} }
            let pg = g.floats
            var steps: [() -> Void] = []
            for (j, i) in present.enumerated() {
                guard let gx = gIns[i] else { continue }
                if s == 1 {
                    let reduce = BroadcastGradient(inputShape: shapes[j], outputShape: out.shape)!, px = gx.floats
                    steps.append { reduce.accumulate(pg, into: px) }
                } else {
                    let path = OperandGradient(shapes[j], out.shape)
                    steps.append(path.step(gx) { dst, acc in
                        Elementwise.scaledGradient(pg, by: s, dst, count: n, accumulate: acc)
                    })
                }
            }
            return sequence(steps)
        }
    case .max, .min:
        let copies = shapes.map { BroadcastLayout(inputs: [$0], output: out.shape)! }
        return LoweredBackward { ins, outs, gOuts, gIns in
            guard let g = gOuts[0] else { return {} }
            let pg = g.floats, y = outs[0].floats
            let candidate = Tensor(zeros: out.shape)
            let owner = TensorBuffer(byteCount: n * 4)
            let pc = candidate.floats, po = owner.raw.assumingMemoryBound(to: Int32.self)
            let srcs = present.map { UnsafePointer(ins[$0]!.floats) }
            var steps: [() -> Void] = [{
                // The closure owns the scratch that `pc` and `po` point into.
                withExtendedLifetime((candidate, owner)) {}
                po.update(repeating: -1, count: n)
                for k in 0..<srcs.count {
                    Elementwise.broadcastCopy(copies[k], srcs[k], pc)
                    Elementwise.claimExtreme(pc, y, po, input: Int32(k), count: n)
                }
            }]
            for (j, i) in present.enumerated() {
                guard let gx = gIns[i] else { continue }
                // Routing reuses the candidate buffer: the claims are done by then.
                let reduce = BroadcastGradient(inputShape: shapes[j], outputShape: out.shape)!, px = gx.floats
                steps.append {
                    Elementwise.routeExtreme(pg, po, input: Int32(j), pc, count: n)
                    reduce.accumulate(pc, into: px)
                }
            }
            return sequence(steps)
        }
    }
}

private func selectBackward(_ node: Node, _ inputs: [PlanValue?], _ out: PlanValue) throws -> LoweredBackward {
    let c = try inputs.required(0, node)
    let shapes = [try inputs.required(1, node).shape, try inputs.required(2, node).shape]
    let layout = BroadcastLayout(inputs: [c.shape, out.shape], output: out.shape)!
    return LoweredBackward { ins, _, gOuts, gIns in
        guard let g = gOuts[0] else { return {} }
        let cond = ins[0]!.ints, pg = g.floats
        var steps: [() -> Void] = []
        for k in 0..<2 {
            guard let gx = gIns[k + 1] else { continue }
            let path = OperandGradient(shapes[k], out.shape)
            steps.append(path.step(gx) { dst, acc in
                Elementwise.selectBackward(layout, cond, pg, dst, whenTrue: k == 0, accumulate: acc)
            })
        }
        return sequence(steps)
    }
}

private func preluBackward(_ node: Node, _ inputs: [PlanValue?], _ out: PlanValue) throws -> LoweredBackward {
    let x = try inputs.required(0, node), s = try inputs.required(1, node)
    var slopeShape = s.shape
    // The forward's reading of a per-channel `[C]` slope for `[N, C, ...]` (Lowering+Math).
    if BroadcastLayout(inputs: [x.shape, slopeShape], output: x.shape) == nil,
       s.shape.count == 1, x.shape.count > 2, x.shape[1] == s.shape[0] {
        slopeShape = [s.shape[0]] + [Int](repeating: 1, count: x.shape.count - 2)
    }
    let layout = BroadcastLayout(inputs: [x.shape, slopeShape], output: x.shape)!
    let shapes = [x.shape, slopeShape]
    return pairGradient(shapes, out.shape) { k, px, ps, y, pg, dst, acc in
        Elementwise.preluBackward(operand: k, layout, px, ps, y, pg, dst, accumulate: acc)
    }
}

