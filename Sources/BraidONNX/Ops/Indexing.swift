import BraidGraph
import BraidTensor

// Indexed reads and writes and axis-wise selections: GatherND, ScatterND, ScatterElements
// (and its deprecated alias Scatter), CumSum, TopK, OneHot, Trilu. Reader and writer side
// by side.

let indexingOps: OpTable = {
    var t: OpTable = [:]
    t["GatherND"] = [v(11) { n in
        n.emit(.gatherND(batchDims: n.opset >= 12 ? try n.int("batch_dims", default: 0) : 0), inputs: [n.input(0), n.input(1)])
    }]
    t["ScatterND"] = [v(11) { n in
        n.emit(.scatterND(reduction: try reduction(n)), inputs: [n.input(0), n.input(1), n.input(2)])
    }]
    let elements: @Sendable (NodeTranslation) throws -> Void = { n in
        n.emit(.scatterElements(axis: try n.int("axis", default: 0), reduction: try reduction(n)),
               inputs: [n.input(0), n.input(1), n.input(2)])
    }
    t["ScatterElements"] = [v(11, elements)]
    t["Scatter"] = [v(9, elements)]
    t["CumSum"] = [v(11) { n in
        n.emit(.cumSum(exclusive: try n.bool("exclusive", default: false), reverse: try n.bool("reverse", default: false)),
               inputs: [n.input(0), n.input(1)])
    }]
    t["CumProd"] = [v(26) { n in
        n.emit(.cumProd(exclusive: try n.bool("exclusive", default: false), reverse: try n.bool("reverse", default: false)),
               inputs: [n.input(0), n.input(1)])
    }]
    t["TopK"] = [v(1) { n in
        // Opset 1 gave k as an attribute; from 10 it is an input.
        let k = n.opset >= 10 ? n.input(1) : n.constant(ints: [try n.requiredInt("k")], "k")
        n.emit(.topK(axis: try n.int("axis", default: -1), largest: n.opset >= 11 ? try n.bool("largest", default: true) : true,
                     sorted: n.opset >= 11 ? try n.bool("sorted", default: true) : true),
               inputs: [n.input(0), k], outputs: [n.outputs[0], n.outputs.count > 1 ? n.outputs[1] : n.temporary("indices")])
    }]
    t["OneHot"] = [v(9) { n in
        n.emit(.oneHot(axis: try n.int("axis", default: -1)), inputs: [n.input(0), n.input(1), n.input(2)])
    }]
    t["GridSample"] = [v(16) { n in
        let mode = try gridModeSpellings.read(n, default: n.opset >= 20 ? "linear" : "bilinear")
        let padding = try gridPaddingSpellings.read(n, default: "zeros")
        n.emit(.gridSample(GridSampleParams(mode: mode, padding: padding, alignCorners: try n.bool("align_corners", default: false))),
               inputs: [n.input(0), n.input(1)])
    }]
    t["Compress"] = [v(9) { n in n.emit(.compress(axis: try n.int("axis")), inputs: [n.input(0), n.input(1)]) }]
    t["Unique"] = [v(11) { n in
        var outs = n.outputs
        while outs.count < 4 { outs.append("") }
        outs = outs.enumerated().map { $0.element.isEmpty ? n.temporary("unique_out\($0.offset)") : $0.element }
        n.emit(.unique(axis: try n.int("axis"), sorted: try n.bool("sorted", default: true)), inputs: [n.input(0)], outputs: outs)
    }]
    t["CenterCropPad"] = [v(18) { n in
        // Per axis: crop (d - t) / 2 from the start when the target t is smaller, pad
        // (t - d) / 2 before and the rest after when larger. The target must be known
        // before the run.
        let rank = n.knownShape(0)?.count
        var axes = try n.ints("axes") ?? []
        if axes.isEmpty {
            guard let rank else { throw n.error("without 'axes' the input's rank is needed at import") }
            axes = Array(0..<rank)
        }
        if let rank { axes = axes.map { $0 < 0 ? $0 + rank : $0 } }
        let axesConst = n.constant(ints: axes, "axes")
        let dims = n.step(.gather(axis: 0), [n.step(.shape(start: 0, end: nil), [n.input(0)], "shape"), axesConst], "dims")
        let target = n.step(.cast(to: .int64), [n.input(1)], "target")
        let zero = n.constant(ints: [0], "zero"), two = n.constant(ints: [2], "two")
        let over = n.step(.binary(.max), [n.step(.binary(.sub), [dims, target], "excess"), zero], "crop_total")
        let start = n.step(.binary(.div), [over, two], "crop_start")
        let end = n.step(.binary(.add), [start, n.step(.binary(.min), [dims, target], "kept")], "crop_end")
        let cropped = n.step(.slice, [n.input(0), start, end, axesConst], "cropped")
        let under = n.step(.binary(.max), [n.step(.binary(.sub), [target, dims], "short"), zero], "pad_total")
        let begin = n.step(.binary(.div), [under, two], "pad_begin")
        let pads = n.step(.concat(axis: 0), [begin, n.step(.binary(.sub), [under, begin], "pad_end")], "pads")
        n.emit(.pad(mode: .constant), inputs: [cropped, pads, "", axesConst])
    }]
    t["DFT"] = [v(17) { n in
        let inverse = try n.bool("inverse", default: false), onesided = try n.bool("onesided", default: false)
        if n.opset >= 20 {
            n.emit(.dft(inverse: inverse, onesided: onesided, axis: nil), inputs: [n.input(0), n.input(1), n.input(2)])
        } else {
            n.emit(.dft(inverse: inverse, onesided: onesided, axis: try n.int("axis", default: 1)), inputs: [n.input(0), n.input(1)])
        }
    }]
    t["NonMaxSuppression"] = [v(10) { n in
        n.emit(.nonMaxSuppression(centerPointBox: try n.int("center_point_box", default: 0) == 1),
               inputs: (0..<5).map { n.input($0) })
    }]
    t["Det"] = [v(11) { n in n.emit(.determinant, inputs: [n.input(0)]) }]
    t["MaxUnpool"] = [v(9) { n in
        guard let kernel = try n.ints("kernel_shape") else { throw n.error("missing required attribute 'kernel_shape'") }
        n.emit(.maxUnpool(kernel: kernel, strides: try n.ints("strides") ?? [], pads: try n.ints("pads") ?? []),
               inputs: [n.input(0), n.input(1), n.input(2)])
    }]
    t["Col2Im"] = [v(18) { n in
        n.emit(.col2im(strides: try n.ints("strides") ?? [], dilations: try n.ints("dilations") ?? [], pads: try n.ints("pads") ?? []),
               inputs: [n.input(0), n.input(1), n.input(2)])
    }]
    t["Trilu"] = [v(14) { n in
        n.emit(.triangle(upper: try n.bool("upper", default: true)), inputs: [n.input(0), n.input(1)])
    }]
    return t
}()

@Sendable private func reduction(_ n: NodeTranslation) throws -> ScatterCombine {
    guard n.opset >= 16 else { return .replace }
    return try reductionSpellings.read(n, default: "none")
}

/// ScatterND's and ScatterElements' reductions (max and min from opset 18).
private let reductionSpellings = AttributeSpellings<ScatterCombine>("reduction", [
    ("none", .replace), ("add", .add), ("mul", .mul),
], later: [("max", .max, since: 18), ("min", .min, since: 18)])

// MARK: - Writers (IR -> ONNX)

private func reductionAttribute(_ r: ScatterCombine, _ n: NodeExport) throws -> [ONNXAttributeProto] {
    r == .replace ? [] : [.string("reduction", try reductionSpellings.name(r, n, what: "scatter reduction"))]
}

/// Writes the indexing ops; false when `n` is not one of them.
func writeIndexingOp(_ n: NodeExport) throws -> Bool {
    switch n.node.op {
    case .gatherND(let b): n.emit("GatherND", attrs: b == 0 ? [] : [.int("batch_dims", Int64(b))])
    case .scatterND(let r): n.emit("ScatterND", attrs: try reductionAttribute(r, n))
    case .scatterElements(let axis, let r):
        n.emit("ScatterElements", attrs: [.int("axis", Int64(axis))] + (try reductionAttribute(r, n)))
    case .cumSum(let exclusive, let reverse):
        n.emit("CumSum", attrs: [.bool("exclusive", exclusive), .bool("reverse", reverse)])
    case .cumProd(let exclusive, let reverse):
        n.emit("CumProd", attrs: [.bool("exclusive", exclusive), .bool("reverse", reverse)])
    case .topK(let axis, let largest, let sorted):
        n.emit("TopK", attrs: [.int("axis", Int64(axis)), .bool("largest", largest), .bool("sorted", sorted)])
    case .oneHot(let axis): n.emit("OneHot", attrs: [.int("axis", Int64(axis))])
    case .triangle(let upper): n.emit("Trilu", attrs: [.bool("upper", upper)])
    case .compress(let axis): n.emit("Compress", attrs: axis.map { [.int("axis", Int64($0))] } ?? [])
    case .nonMaxSuppression(let center): n.emit("NonMaxSuppression", attrs: [.int("center_point_box", center ? 1 : 0)])
    case .determinant: n.emit("Det")
    case .maxUnpool(let kernel, let strides, let pads):
        n.emit("MaxUnpool", attrs: [.ints("kernel_shape", kernel), .ints("strides", strides), .ints("pads", pads)].filter { !$0.ints.isEmpty })
    case .col2im(let strides, let dilations, let pads):
        n.emit("Col2Im", attrs: [.ints("strides", strides), .ints("dilations", dilations), .ints("pads", pads)].filter { !$0.ints.isEmpty })
    case .dft(let inverse, let onesided, let axis):
        // The axis field is the opset 17-19 attribute; from 20 the axis is input 2.
        if let axis, n.opset < 20 {
            n.emit("DFT", attrs: [.bool("inverse", inverse), .bool("onesided", onesided), .int("axis", Int64(axis))])
        } else if axis == nil, n.opset >= 20 {
            n.emit("DFT", attrs: [.bool("inverse", inverse), .bool("onesided", onesided)])
        } else {
            return false
        }
    case .unique(let axis, let sorted):
        n.emit("Unique", attrs: (axis.map { [ONNXAttributeProto.int("axis", Int64($0))] } ?? []) + [.bool("sorted", sorted)])
    case .gridSample(let p):
        let mode = p.mode == .nearest ? "nearest" : (p.mode == .linear ? (n.opset >= 20 ? "linear" : "bilinear") : (n.opset >= 20 ? "cubic" : "bicubic"))
        let padding = try gridPaddingSpellings.name(p.padding, n, what: "GridSample padding")
        n.emit("GridSample", attrs: [.string("mode", mode), .string("padding_mode", padding), .bool("align_corners", p.alignCorners)])
    default: return false
    }
    return true
}

/// GridSample's modes: opset 20 renamed bilinear and bicubic; both spellings are read.
private let gridModeSpellings = AttributeSpellings<GridSampleParams.Mode>("mode", [
    ("bilinear", .linear), ("linear", .linear), ("nearest", .nearest), ("bicubic", .cubic), ("cubic", .cubic),
])

private let gridPaddingSpellings = AttributeSpellings<GridSampleParams.Padding>("padding_mode", [
    ("zeros", .zeros), ("border", .border), ("reflection", .reflection),
])
