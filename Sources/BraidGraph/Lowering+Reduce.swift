import BraidKernels
import BraidTensor

/// Lowers reductions over axes and ArgMax / ArgMin.
///
/// Reduce axes come from the op's `axes` field or, when that is nil, from input 1 (which must
/// be known before the run). No axes reduce everything unless `noopWithEmptyAxes`, in which
/// case only the element-wise part is applied (ReduceSumSquare gives x², as ONNX's reference).
func lowerReduce(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let rank = x.shape.count
    switch node.op {
    case .reduce(let kind, let fieldAxes, let keepDims, let noop):
        var given = fieldAxes
        if given == nil, inputs.count > 1, inputs[1] != nil {
            given = try inputs.constantInts(1, node)!.map { Int($0) }
        }
        var axes: [Int]
        if let given, !given.isEmpty {
            axes = try given.map { try normalizedAxis($0, rank, node) }
            guard Set(axes).count == axes.count else {
                throw GraphError(node: node.name, "\(node.sourceOp) repeats an axis in \(given)")
            }
        } else {
            axes = noop ? [] : Array(0..<rank)
        }
        axes.sort()
        var outShape = [Int]()
        for (i, d) in x.shape.enumerated() {
            if !axes.contains(i) { outShape.append(d) } else if keepDims { outShape.append(1) }
        }
        let layout = ReduceLayout(shape: x.shape, axes: axes)
        let f = kind
        let dtype = x.dtype
        return LoweredOp(outputs: [(outShape, dtype)]) { ins, outs in
            if dtype.isFloat {
                let src = ins[0]!.floats, dst = outs[0].floats
                return { Elementwise.reduce(f, layout, src, dst) }
            }
            let src = ins[0]!.ints, dst = outs[0].ints
            return {
                Elementwise.reduce(f, layout, src, dst, dtype: dtype)
                Elementwise.wrap(dst, count: layout.outputCount, to: dtype)
            }
        }

    case .argExtreme(let max, let axisField, let keepDims, let selectLast):
        let axis = try normalizedAxis(axisField, Swift.max(rank, 1), node)
        let shape = rank == 0 ? [1] : x.shape
        let outer = shape[..<axis].reduce(1, *), size = shape[axis]
        let inner = shape[(axis + 1)...].reduce(1, *)
        guard size > 0 || outer * inner == 0 else {
            throw GraphError(node: node.name, "\(node.sourceOp) over an empty axis \(axis) of \(x.shape)")
        }
        var outShape = shape
        if keepDims { outShape[axis] = 1 } else { outShape.remove(at: axis) }
        if rank == 0 { outShape = [] }
        return LoweredOp(outputs: [(outShape, .int64)]) { ins, outs in
            let dst = outs[0].ints
            if x.dtype.isFloat {
                let src = ins[0]!.floats
                return {
                    Elementwise.argExtreme(max: max, selectLast: selectLast, outer: outer,
                                           axisSize: size, inner: inner, src, dst)
                }
            }
            let src = ins[0]!.ints
            return {
                Elementwise.argExtreme(max: max, selectLast: selectLast, outer: outer,
                                       axisSize: size, inner: inner, src, dst)
            }
        }

    default:
        throw GraphError(node: node.name, "\(node.sourceOp) is not a reduction")
    }
}

private func normalizedAxis(_ axis: Int, _ rank: Int, _ node: Node) throws -> Int {
    let a = axis < 0 ? axis + rank : axis
    guard a >= 0 && a < rank else {
        throw GraphError(node: node.name, "\(node.sourceOp) axis \(axis) is out of range for rank \(rank)")
    }
    return a
}
