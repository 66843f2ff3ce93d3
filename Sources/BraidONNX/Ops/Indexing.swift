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
        let mode: GridSampleParams.Mode
        switch try n.string("mode", default: n.opset >= 20 ? "linear" : "bilinear") {
        case "bilinear", "linear": mode = .linear
        case "nearest": mode = .nearest
        case "bicubic", "cubic": mode = .cubic
        case let s: throw n.error("attribute 'mode' = '\(s)' is not known")
        }
        let padding: GridSampleParams.Padding
        switch try n.string("padding_mode", default: "zeros") {
        case "zeros": padding = .zeros
        case "border": padding = .border
        case "reflection": padding = .reflection
        case let s: throw n.error("attribute 'padding_mode' = '\(s)' is not known")
        }
        n.emit(.gridSample(GridSampleParams(mode: mode, padding: padding, alignCorners: try n.bool("align_corners", default: false))),
               inputs: [n.input(0), n.input(1)])
    }]
    t["Trilu"] = [v(14) { n in
        n.emit(.triangle(upper: try n.bool("upper", default: true)), inputs: [n.input(0), n.input(1)])
    }]
    return t
}()

@Sendable private func reduction(_ n: NodeTranslation) throws -> ScatterReduction {
    guard n.opset >= 16 else { return .none }
    switch try n.string("reduction", default: "none") {
    case "none": return .none
    case "add": return .add
    case "mul": return .mul
    case "max" where n.opset >= 18: return .max
    case "min" where n.opset >= 18: return .min
    case let s: throw n.error("attribute 'reduction' = '\(s)' is not known at opset \(n.opset)")
    }
}

// MARK: - Writers (IR -> ONNX)

private func reductionAttribute(_ r: ScatterReduction) -> [ONNXAttributeProto] {
    switch r {
    case .none: return []
    case .add: return [.string("reduction", "add")]
    case .mul: return [.string("reduction", "mul")]
    case .max: return [.string("reduction", "max")]
    case .min: return [.string("reduction", "min")]
    }
}

/// Writes the indexing ops; false when `n` is not one of them.
func writeIndexingOp(_ n: NodeExport) throws -> Bool {
    switch n.node.op {
    case .gatherND(let b): n.emit("GatherND", attrs: b == 0 ? [] : [.int("batch_dims", Int64(b))])
    case .scatterND(let r): n.emit("ScatterND", attrs: reductionAttribute(r))
    case .scatterElements(let axis, let r):
        n.emit("ScatterElements", attrs: [.int("axis", Int64(axis))] + reductionAttribute(r))
    case .cumSum(let exclusive, let reverse):
        n.emit("CumSum", attrs: [.bool("exclusive", exclusive), .bool("reverse", reverse)])
    case .cumProd(let exclusive, let reverse):
        n.emit("CumProd", attrs: [.bool("exclusive", exclusive), .bool("reverse", reverse)])
    case .topK(let axis, let largest, let sorted):
        n.emit("TopK", attrs: [.int("axis", Int64(axis)), .bool("largest", largest), .bool("sorted", sorted)])
    case .oneHot(let axis): n.emit("OneHot", attrs: [.int("axis", Int64(axis))])
    case .triangle(let upper): n.emit("Trilu", attrs: [.bool("upper", upper)])
    case .gridSample(let p):
        let mode = p.mode == .nearest ? "nearest" : (p.mode == .linear ? (n.opset >= 20 ? "linear" : "bilinear") : (n.opset >= 20 ? "cubic" : "bicubic"))
        let padding = p.padding == .zeros ? "zeros" : (p.padding == .border ? "border" : "reflection")
        n.emit("GridSample", attrs: [.string("mode", mode), .string("padding_mode", padding), .bool("align_corners", p.alignCorners)])
    default: return false
    }
    return true
}
