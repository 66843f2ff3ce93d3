import BraidGraph
import BraidTensor

// Reductions and arg-extremes -> IR. The `axes` attribute of older opsets becomes a constant
// input; the IR's own `axes` field is left nil so that there is one form.

/// Each reduction's ONNX name and the opset from which its axes are an input; the reader
/// and the writer both use it.
private let reductions: [(String, ReduceFunction, Int)] = [
    ("ReduceSum", .sum, 13), ("ReduceMean", .mean, 18), ("ReduceMax", .max, 18),
    ("ReduceMin", .min, 18), ("ReduceProd", .prod, 18), ("ReduceL1", .l1, 18),
    ("ReduceL2", .l2, 18), ("ReduceLogSum", .logSum, 18), ("ReduceLogSumExp", .logSumExp, 18),
    ("ReduceSumSquare", .sumSquare, 18),
]

let reduceOps: OpTable = {
    var t: OpTable = [:]
    for (name, kind, axesAsInput) in reductions {
        t[name] = [
            v(1) { n in
                let axes = try n.ints("axes").map { n.constant(ints: $0, "axes") } ?? ""
                n.emit(.reduce(kind, axes: nil, keepDims: try n.bool("keepdims", default: true),
                               noopWithEmptyAxes: false),
                       inputs: [n.input(0), axes])
            },
            v(axesAsInput) { n in
                n.emit(.reduce(kind, axes: nil, keepDims: try n.bool("keepdims", default: true),
                               noopWithEmptyAxes: try n.bool("noop_with_empty_axes", default: false)),
                       inputs: [n.input(0), n.input(1)])
            },
        ]
    }
    for (name, isMax) in [("ArgMax", true), ("ArgMin", false)] {
        t[name] = [v(1) { n in
            n.emit(.argExtreme(max: isMax, axis: try n.int("axis", default: 0),
                               keepDims: try n.bool("keepdims", default: true),
                               selectLastIndex: n.opset >= 12 ? try n.bool("select_last_index", default: false) : false))
        }]
    }
    return t
}()

// MARK: - Writers (IR -> ONNX)

/// Writes reductions and arg-extremes; false when `n` is not one of them.
func writeReduceOp(_ n: NodeExport) throws -> Bool {
    switch n.node.op {
    case .reduce(let kind, let axes, let keepDims, let noop): try writeReduce(n, kind, axes: axes, keepDims: keepDims, noop: noop)
    case .argExtreme(let isMax, let axis, let keepDims, let selectLast):
        n.emit(isMax ? "ArgMax" : "ArgMin", [n.input(0)],
               attrs: [.int("axis", axis), .bool("keepdims", keepDims), .bool("select_last_index", selectLast)])
    default: return false
    }
    return true
}

/// Axes go in as an input from ReduceSum 13 and the other reductions 18, as an attribute
/// before; an attribute needs axes fixed before the run.
private func writeReduce(_ n: NodeExport, _ kind: ReduceFunction, axes field: [Int]?, keepDims: Bool, noop: Bool) throws {
    let name = reductions.first { $0.1 == kind }!.0
    let x = n.input(0)
    if kind == .sum || n.opset >= 18 {
        let axes = field.map { n.constant(ints: $0, "axes") } ?? n.input(1)
        var attrs: [ONNXAttributeProto] = [.bool("keepdims", keepDims)]
        if noop { attrs.append(.int("noop_with_empty_axes", 1)) }
        n.emit(name, [x, axes], attrs: attrs)
        return
    }
    var axes = field
    if axes == nil, !n.input(1).isEmpty {
        guard let t = n.constantValue(n.input(1)) else {
            throw n.error("\(name) with axes computed at run time needs opset 18 (axes as an input)")
        }
        axes = (0..<t.count).map { Int(t.int(at: $0)) }
    }
    if noop && (axes ?? []).isEmpty {
        n.emit("Identity", [x])
        return
    }
    var attrs: [ONNXAttributeProto] = [.bool("keepdims", keepDims)]
    if let axes, !axes.isEmpty { attrs.append(.ints("axes", axes)) }
    n.emit(name, [x], attrs: attrs)
}
