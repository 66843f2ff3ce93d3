import BraidGraph
import BraidKernels
import BraidTensor

/// Backward rules of the indexing family: a GatherND adds each slice's gradient back where
/// it was read; a ScatterND without reduction passes the gradient through to the data except
/// at the written places and gathers it from those places for the updates; CumSum runs the
/// opposite running sum; a triangle mask keeps the same triangle of the gradient; GridSample
/// scatters into the data with its interpolation weights and differentiates them for the
/// grid (linear mode; nearest gives zero, cubic none). Indices, k, depth and axis operands get
/// no gradient; TopK and OneHot have no rule.
func backwardIndexing(_ node: Node, _ inputs: [PlanValue?], _ outputs: [PlanValue], needs: [Bool]) throws -> LoweredBackward {
    let x = try inputs.required(0, node)
    switch node.op {
    case .gatherND(let b) where x.dtype.isFloat:
        let idx = try inputs.required(1, node)
        let slices = IndexedSlices(dataShape: x.shape, indicesShape: idx.shape, batchDims: b)
        return LoweredBackward { ins, _, gOuts, gIns in
            guard let g = gOuts[0], let gx = gIns[0] else { return {} }
            let pg = UnsafePointer(g.floats), pi = UnsafePointer(ins[1]!.ints), px = gx.floats
            return { slices.gatherBackward(pg, pi, px) }
        }
    case .scatterND(.replace) where x.dtype.isFloat:
        let idx = try inputs.required(1, node)
        let slices = IndexedSlices(dataShape: x.shape, indicesShape: idx.shape)
        return LoweredBackward { ins, _, gOuts, gIns in
            guard let g = gOuts[0] else { return {} }
            let pg = UnsafePointer(g.floats), pi = UnsafePointer(ins[1]!.ints)
            let mask = gIns[0] != nil ? Tensor(zeros: x.shape) : nil
            let gx = gIns[0]?.floats, gu = gIns.count > 2 ? gIns[2]?.floats : nil
            return {
                if let gx, let mask { slices.scatterDataBackward(pg, pi, mask.floats, gx) }
                if let gu { slices.scatterUpdatesBackward(pg, pi, gu) }
            }
        }
    case .cumSum(let exclusive, let reverse) where x.dtype.isFloat:
        guard let axis = try inputs.constantInts(1, node)?.first else {
            throw GraphError(node: node.name, "\(node.sourceOp) needs its axis before the run")
        }
        let r = x.shape.count, a = Int(axis) < 0 ? Int(axis) + r : Int(axis)
        let outer = x.shape[..<a].reduce(1, *), n = x.shape[a], inner = x.shape[(a + 1)...].reduce(1, *)
        return LoweredBackward { _, _, gOuts, gIns in
            guard let g = gOuts[0], let gx = gIns[0] else { return {} }
            let pg = UnsafePointer(g.floats), px = gx.floats
            return { Indexing.cumSumBackward(pg, px, outer: outer, n: n, inner: inner, exclusive: exclusive, reverse: reverse) }
        }
    case .triangle(let upper) where x.dtype.isFloat:
        let k = try inputs.constantInts(1, node)?.first.map { Int($0) } ?? 0
        let rows = x.shape[x.shape.count - 2], cols = x.shape[x.shape.count - 1]
        let matrices = x.shape.dropLast(2).reduce(1, *), count = x.shape.product
        return LoweredBackward { _, _, gOuts, gIns in
            guard let g = gOuts[0], let gx = gIns[0] else { return {} }
            let masked = Tensor(zeros: x.shape)
            let pg = UnsafePointer(g.floats), px = gx.floats
            return {
                Indexing.triangle(pg, masked.floats, matrices: matrices, rows: rows, cols: cols, k: k, upper: upper)
                Elementwise.add(UnsafePointer(masked.floats), into: px, count: count)
            }
        }
    case .gridSample(let p) where x.dtype.isFloat:
        let grid = try inputs.required(1, node)
        if p.mode == .cubic && needs.count > 1 && needs[1] {
            throw GraphError(node: node.name, "\(node.sourceOp): cubic sampling has no gradient for its grid")
        }
        let mode = p.mode
        let padding = p.padding
        let sampler = GridSampler(mode: mode, padding: padding, alignCorners: p.alignCorners, inputShape: x.shape,
                                  points: grid.shape.dropFirst().dropLast().reduce(1, *))
        return LoweredBackward { ins, _, gOuts, gIns in
            guard let g = gOuts[0] else { return {} }
            let px = UnsafePointer(ins[0]!.floats), pg = UnsafePointer(ins[1]!.floats), pgy = UnsafePointer(g.floats)
            let gx = gIns[0]?.floats, ggrid = gIns.count > 1 ? gIns[1]?.floats : nil
            return { sampler.backward(px, pg, pgy, gx: gx, ggrid: ggrid) }
        }
    default:
        throw GraphError(node: node.name, "\(node.sourceOp) has no backward rule for these operands")
    }
}
