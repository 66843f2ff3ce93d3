import BraidGraph
import BraidKernels
import BraidTensor

/// Backward rules of the reductions: sum, mean, sumSquare, l1, l2, logSum, logSumExp, prod,
/// and max/min (the gradient goes to the elements equal to the result, split evenly between
/// ties, as PyTorch's `amax`/`amin`). The axes are resolved exactly as the forward does.
func backwardReduce(_ node: Node, _ inputs: [PlanValue?], _ outputs: [PlanValue], needs: [Bool]) throws -> LoweredBackward {
    guard case .reduce(let kind, let fieldAxes, _, let noop) = node.op else {
        throw GraphError(node: node.name, "\(node.sourceOp) is not a reduction")
    }
    let x = try inputs.required(0, node)
    guard x.dtype.isFloat else {
        throw GraphError(node: node.name, "\(node.sourceOp) has no gradient on \(x.dtype) values")
    }
    let rank = x.shape.count
    var given = fieldAxes
    if given == nil, inputs.count > 1, inputs[1] != nil {
        given = try inputs.constantInts(1, node)!.map { Int($0) }
    }
    var axes: [Int]
    if let given, !given.isEmpty {
        axes = given.map { $0 < 0 ? $0 + rank : $0 }
    } else {
        axes = noop ? [] : Array(0..<rank)
    }
    axes.sort()
    let layout = ReduceLayout(shape: x.shape, axes: axes)
    let f = kind
    return LoweredBackward { ins, outs, gOuts, gIns in
        guard let g = gOuts[0], let gx = gIns[0] else { return {} }
        let px = ins[0]!.floats, y = outs[0].floats, pg = g.floats, pgx = gx.floats
        return { Elementwise.reduceBackward(f, layout, px, y, pg, pgx) }
    }
}
