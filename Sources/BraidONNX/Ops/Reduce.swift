import BraidGraph
import BraidTensor

// Reductions and arg-extremes -> IR. The `axes` attribute of older opsets becomes a constant
// input; the IR's own `axes` field is left nil so that there is one form.

let reduceOps: OpTable = {
    var t: OpTable = [:]
    let kinds: [(String, ReduceKind, Int)] = [
        ("ReduceSum", .sum, 13), ("ReduceMean", .mean, 18), ("ReduceMax", .max, 18),
        ("ReduceMin", .min, 18), ("ReduceProd", .prod, 18), ("ReduceL1", .l1, 18),
        ("ReduceL2", .l2, 18), ("ReduceLogSum", .logSum, 18), ("ReduceLogSumExp", .logSumExp, 18),
        ("ReduceSumSquare", .sumSquare, 18),
    ]
    for (name, kind, axesAsInput) in kinds {
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
