import BraidGraph
import BraidTensor

// Shape and data-movement ONNX ops -> IR. Operands that early opsets carried as attributes
// (Reshape's shape, Slice's bounds, Pad's widths, Split's sizes, Unsqueeze's axes, Upsample's
// scales) become constant initializers so the IR always sees them as inputs.

let shapeOps: OpTable = {
    var t: OpTable = [:]
    t["Reshape"] = [
        v(1) { n in
            guard let shape = try n.ints("shape") else { throw n.error("missing required attribute 'shape'") }
            n.emit(.reshape(allowZero: false), inputs: [n.input(0), n.constant(ints: shape, "shape")])
        },
        v(5) { n in n.emit(.reshape(allowZero: false)) },
        v(14) { n in n.emit(.reshape(allowZero: try n.bool("allowzero", default: false))) },
    ]
    t["Flatten"] = [v(1) { n in n.emit(.flatten(axis: try n.int("axis", default: 1))) }]
    t["Transpose"] = [v(1) { n in n.emit(.transpose(perm: try n.ints("perm"))) }]
    t["Concat"] = [
        v(1) { n in n.emit(.concat(axis: try n.int("axis", default: 1))) },
        v(4) { n in n.emit(.concat(axis: try n.requiredInt("axis"))) },
    ]
    t["Split"] = [
        v(1) { n in
            // Opset 1 took the sizes from a second input or the `split` attribute.
            let sizes = n.input(1).isEmpty ? try n.ints("split").map { n.constant(ints: $0, "split") } ?? "" : n.input(1)
            n.emit(.split(axis: try n.int("axis", default: 0), count: n.outputs.count), inputs: [n.input(0), sizes])
        },
        v(2) { n in
            let sizes = try n.ints("split").map { n.constant(ints: $0, "split") } ?? ""
            n.emit(.split(axis: try n.int("axis", default: 0), count: n.outputs.count), inputs: [n.input(0), sizes])
        },
        v(13) { n in
            n.emit(.split(axis: try n.int("axis", default: 0), count: n.outputs.count),
                   inputs: [n.input(0), n.input(1)])
        },
        v(18) { n in
            let count = n.outputs.count
            if n.input(1).isEmpty {
                guard let parts = try n.int("num_outputs"), parts == count else {
                    throw n.error("attribute 'num_outputs' must be given and equal the \(count) outputs when 'split' is absent")
                }
            }
            n.emit(.split(axis: try n.int("axis", default: 0), count: count), inputs: [n.input(0), n.input(1)])
        },
    ]
    t["Slice"] = [
        v(1) { n in
            guard let starts = try n.ints("starts"), let ends = try n.ints("ends"), starts.count == ends.count else {
                throw n.error("attributes 'starts' and 'ends' are required and must have equal length")
            }
            let axes = try n.ints("axes").map { n.constant(ints: $0, "axes") } ?? ""
            n.emit(.slice, inputs: [n.input(0), n.constant(ints: starts, "starts"),
                                    n.constant(ints: ends, "ends"), axes])
        },
        v(10) { n in n.emit(.slice) },
    ]
    t["Gather"] = [v(1) { n in n.emit(.gather(axis: try n.int("axis", default: 0))) }]
    t["GatherElements"] = [v(11) { n in n.emit(.gatherElements(axis: try n.int("axis", default: 0))) }]
    t["Shape"] = [
        v(1) { n in n.emit(.shape(start: 0, end: nil)) },
        v(15) { n in n.emit(.shape(start: try n.int("start", default: 0), end: try n.int("end"))) },
    ]
    t["Size"] = [v(1) { $0.emit(.size) }]
    t["ConstantOfShape"] = [v(9) { n in
        let value = try n.tensor("value") ?? Tensor(shape: [1], floats: [0])
        guard value.count == 1 else { throw n.error("attribute 'value' must hold one element, has \(value.count)") }
        n.emit(.constantOfShape(value: value))
    }]
    t["Unsqueeze"] = [
        v(1) { n in
            guard let axes = try n.ints("axes") else { throw n.error("missing required attribute 'axes'") }
            n.emit(.unsqueeze, inputs: [n.input(0), n.constant(ints: axes, "axes")])
        },
        v(13) { n in n.emit(.unsqueeze) },
    ]
    t["Squeeze"] = [
        v(1) { n in
            let axes = try n.ints("axes").map { n.constant(ints: $0, "axes") } ?? ""
            n.emit(.squeeze, inputs: [n.input(0), axes])
        },
        v(13) { n in n.emit(.squeeze, inputs: [n.input(0), n.input(1)]) },
    ]
    t["Expand"] = [v(8) { $0.emit(.expand) }]
    t["Tile"] = [v(6) { $0.emit(.tile) }]
    t["Pad"] = [
        v(1) { n in
            // Opset 1 called the widths `paddings`, opset 2 `pads`.
            guard let pads = try n.ints(n.opset < 2 ? "paddings" : "pads") else {
                throw n.error("missing required attribute '\(n.opset < 2 ? "paddings" : "pads")'")
            }
            let value = n.constant(floats: [try n.float("value", default: 0)], shape: [], "value")
            n.emit(.pad(mode: try padMode(n)), inputs: [n.input(0), n.constant(ints: pads, "pads"), value])
        },
        v(11) { n in
            n.emit(.pad(mode: try padMode(n)), inputs: (0..<(n.opset >= 18 ? 4 : 3)).map(n.input))
        },
    ]
    t["Resize"] = [
        v(10) { n in
            n.emit(.resize(ResizeParams(mode: try resizeMode(n, allowCubic: false), coordinate: .asymmetric,
                                        nearest: .floor)),
                   inputs: [n.input(0), "", n.input(1), ""])
        },
        v(11, translateResize), v(13, translateResize), v(18, translateResize), v(19, translateResize),
    ]
    t["Upsample"] = [
        v(1) { n in
            // Opset 1 gave scales for the two trailing axes of a 4-D input.
            let h = try n.float("height_scale", default: 1), w = try n.float("width_scale", default: 1)
            n.emit(.resize(ResizeParams(mode: try resizeMode(n, allowCubic: false, bilinear: true),
                                        coordinate: .asymmetric, nearest: .floor)),
                   inputs: [n.input(0), "", n.constant(floats: [1, 1, h, w], "scales"), ""])
        },
        v(7) { n in
            guard let scales = try n.floats("scales") else { throw n.error("missing required attribute 'scales'") }
            n.emit(.resize(ResizeParams(mode: try resizeMode(n, allowCubic: false), coordinate: .asymmetric,
                                        nearest: .floor)),
                   inputs: [n.input(0), "", n.constant(floats: scales, "scales"), ""])
        },
        v(9) { n in
            n.emit(.resize(ResizeParams(mode: try resizeMode(n, allowCubic: false), coordinate: .asymmetric,
                                        nearest: .floor)),
                   inputs: [n.input(0), "", n.input(1), ""])
        },
    ]
    t["Range"] = [v(11) { $0.emit(.range) }]
    t["DepthToSpace"] = [
        v(1) { n in n.emit(.depthToSpace(blockSize: try blockSize(n), columnRowDepth: false)) },
        v(11) { n in
            switch try n.string("mode", default: "DCR") {
            case "DCR": n.emit(.depthToSpace(blockSize: try blockSize(n), columnRowDepth: false))
            case "CRD": n.emit(.depthToSpace(blockSize: try blockSize(n), columnRowDepth: true))
            case let s: throw n.error("attribute 'mode' = '\(s)', expected 'DCR' or 'CRD'")
            }
        },
    ]
    t["SpaceToDepth"] = [v(1) { n in
        if let mode = try n.string("mode"), mode != "DCR" {
            throw n.error("attribute 'mode' = '\(mode)' is not supported (only 'DCR')")
        }
        n.emit(.spaceToDepth(blockSize: try blockSize(n)))
    }]
    t["Identity"] = [v(1) { $0.emit(.identity, inputs: [$0.input(0)]) }]
    t["Constant"] = [v(1) { n in n.emit(.constant(try constantValue(n)), inputs: []) }]
    return t
}()

private func blockSize(_ n: NodeTranslation) throws -> Int {
    let b = try n.requiredInt("blocksize")
    guard b >= 1 else { throw n.error("attribute 'blocksize' = \(b), expected >= 1") }
    return b
}

private func padMode(_ n: NodeTranslation) throws -> PadFill {
    switch try n.string("mode", default: "constant") {
    case "constant": return .constant
    case "reflect": return .reflect
    case "edge": return .edge
    case "wrap" where n.opset >= 19: return .wrap
    case let s: throw n.error("attribute 'mode' = '\(s)' is not a pad mode of opset \(n.opset)")
    }
}

private func resizeMode(_ n: NodeTranslation, allowCubic: Bool, bilinear: Bool = false) throws -> ResizeParams.Mode {
    switch try n.string("mode", default: "nearest") {
    case "nearest": return .nearest
    case "linear": return .linear
    case "bilinear" where bilinear: return .linear
    case "cubic" where allowCubic: return .cubic
    case let s: throw n.error("attribute 'mode' = '\(s)' is not supported at opset \(n.opset)")
    }
}

private let coordinateSpellings = AttributeSpellings<ResizeCoordinates>("coordinate_transformation_mode", [
    ("half_pixel", .halfPixel), ("pytorch_half_pixel", .pytorchHalfPixel), ("align_corners", .alignCorners),
    ("asymmetric", .asymmetric), ("tf_crop_and_resize", .tfCropAndResize),
], later: [("half_pixel_symmetric", .halfPixelSymmetric, since: 19)])

private let nearestSpellings = AttributeSpellings<ResizeRounding>("nearest_mode", [
    ("round_prefer_floor", .roundPreferFloor), ("round_prefer_ceil", .roundPreferCeil), ("floor", .floor), ("ceil", .ceil),
])

private let aspectSpellings = AttributeSpellings<ResizeParams.AspectPolicy>("keep_aspect_ratio_policy", [
    ("stretch", .stretch), ("not_larger", .notLarger), ("not_smaller", .notSmaller),
])

/// Resize 11 and later: `[x, roi, scales, sizes]`; attributes added by later versions are
/// read only from those versions on.
@Sendable private func translateResize(_ n: NodeTranslation) throws {
    let coordinate = try coordinateSpellings.read(n, default: "half_pixel")
    let nearest = try nearestSpellings.read(n, default: "round_prefer_floor")
    var aspect = ResizeParams.AspectPolicy.stretch
    var axes: [Int]?
    var antialias = false
    if n.opset >= 18 {
        antialias = try n.bool("antialias", default: false)
        axes = try n.ints("axes")
        aspect = try aspectSpellings.read(n, default: "stretch")
    }
    n.emit(.resize(ResizeParams(
        mode: try resizeMode(n, allowCubic: true), coordinate: coordinate, nearest: nearest,
        cubicCoefficient: try n.float("cubic_coeff_a", default: -0.75),
        excludeOutside: try n.bool("exclude_outside", default: false),
        extrapolationValue: try n.float("extrapolation_value", default: 0),
        antialias: antialias, axes: axes, aspect: aspect)),
        inputs: (0..<4).map(n.input))
}

/// The tensor a Constant node holds, from whichever value attribute is set.
private func constantValue(_ n: NodeTranslation) throws -> Tensor {
    if let t = try n.tensor("value") { return t }
    if let f = try n.float("value_float") { return Tensor(shape: [], floats: [f]) }
    if let fs = try n.floats("value_floats") { return Tensor(shape: [fs.count], floats: fs) }
    if let i = try n.int("value_int") { return Tensor(shape: [], ints: [Int64(i)]) }
    if let xs = try n.ints("value_ints") { return Tensor(shape: [xs.count], ints: xs.map(Int64.init)) }
    for key in ["value_string", "value_strings"] where n.has(key) {
        throw n.error("string constants ('\(key)') are not supported")
    }
    if n.has("sparse_value") { throw n.error("sparse constants ('sparse_value') are not supported") }
    throw n.error("no value attribute (value, value_float(s) or value_int(s))")
}

// MARK: - Writers (IR -> ONNX)

/// Writes the shape and data-movement ops; false when `n` is not one of them.
func writeShapeOp(_ n: NodeExport) throws -> Bool {
    switch n.node.op {
    case .reshape(let allowZero):
        if allowZero && n.opset >= 14 {
            n.emit("Reshape", attrs: [.int("allowzero", 1)])
        } else if allowZero, !(n.constantValue(n.input(1)).map { t in (0..<t.count).allSatisfy { t.int(at: $0) != 0 } } ?? false) {
            throw n.error("Reshape with allowzero (a 0 in the target shape meaning size 0) needs opset 14")
        } else {
            n.emit("Reshape")
        }
    case .flatten(let axis): n.emit("Flatten", attrs: [.int("axis", axis)])
    case .transpose(let perm): n.emit("Transpose", attrs: perm.map { [.ints("perm", $0)] } ?? [])
    case .concat(let axis): n.emit("Concat", attrs: [.int("axis", axis)])
    case .split(let axis, let count):
        var attrs: [ONNXAttributeProto] = [.int("axis", axis)]
        if n.input(1).isEmpty && n.opset >= 18 { attrs.append(.int("num_outputs", count)) }
        n.emit("Split", [n.input(0), n.input(1)], attrs: attrs)
    case .slice: n.emit("Slice")
    case .gather(let axis): n.emit("Gather", attrs: [.int("axis", axis)])
    case .gatherElements(let axis): n.emit("GatherElements", attrs: [.int("axis", axis)])
    case .shape(let start, let end): writeShape(n, start: start, end: end)
    case .size: n.emit("Size")
    case .constantOfShape(let value):
        n.emit("ConstantOfShape", attrs: [.tensor("value", ONNXTensorProto(value.reshaped([1]), name: "value"))])
    case .unsqueeze: n.emit("Unsqueeze")
    case .squeeze: n.emit("Squeeze")
    case .expand: n.emit("Expand")
    case .tile: n.emit("Tile")
    case .pad(let mode): try writePad(n, mode)
    case .resize(let p): try writeResize(n, p)
    case .range: n.emit("Range")
    case .depthToSpace(let blockSize, let crd):
        n.emit("DepthToSpace", attrs: [.int("blocksize", blockSize), .string("mode", crd ? "CRD" : "DCR")])
    case .spaceToDepth(let blockSize): n.emit("SpaceToDepth", attrs: [.int("blocksize", blockSize)])
    case .identity: n.emit("Identity", [n.input(0)])
    case .constant(let t): n.writeConstant(t)
    default: return false
    }
    return true
}

/// Shape 15 takes `start`/`end`; before it, a slice of the whole shape.
private func writeShape(_ n: NodeExport, start: Int, end: Int?) {
    if start == 0 && end == nil { n.emit("Shape", [n.input(0)]); return }
    if n.opset >= 15 {
        n.emit("Shape", [n.input(0)], attrs: [.int("start", start)] + (end.map { [.int("end", $0)] } ?? []))
        return
    }
    let whole = n.emitTemporary("Shape", [n.input(0)], "shape")
    n.emit("Slice", [whole, n.constant(ints: [start], "start"), n.constant(ints: [end ?? Int(Int64.max)], "end"),
                     n.constant(ints: [0], "axis")])
}

private func writePad(_ n: NodeExport, _ mode: PadFill) throws {
    let name: String
    switch mode {
    case .constant: name = "constant"
    case .reflect: name = "reflect"
    case .edge: name = "edge"
    case .wrap:
        try n.require(opset: 19, "pad mode 'wrap'")
        name = "wrap"
    }
    if !n.input(3).isEmpty { try n.require(opset: 18, "Pad with an 'axes' input") }
    var inputs = (0..<4).map(n.input)
    if padsWithZeroForMaxPooling(n, mode) {
        // Zero padding read only by max pooling (Keras's ZeroPadding2D then MaxPooling2D, as in
        // ResNetV2) is written with the fill -0.0, which compares equal to 0 everywhere. With
        // +0.0, onnxruntime's basic optimisations (its Pad fusion, which tests the fill's bytes
        // for zero) fold the Pad into the MaxPool's pads, which MaxPool fills with -inf: a
        // window of negative values then yields their maximum instead of 0.
        inputs[2] = n.constant(scalar: -0.0, "fill")
    }
    n.emit("Pad", inputs, attrs: [.string("mode", name)])
}

/// True for constant padding with a zero (or absent) float32 fill whose every reader is a
/// max pooling.
private func padsWithZeroForMaxPooling(_ n: NodeExport, _ mode: PadFill) -> Bool {
    guard case .constant = mode, n.dtype(n.input(0)) == .float32 else { return false }
    let fill = n.input(2)
    if !fill.isEmpty {
        guard let t = n.constantValue(fill), t.dtype == .float32, t.floatArray.allSatisfy({ $0 == 0 }) else { return false }
    }
    let readers = n.readers(of: n.node.outputs[0])
    return !readers.isEmpty && readers.allSatisfy { op in
        if case .pool(let p) = op { return p.kind == .max }
        return false
    }
}

private func writeResize(_ n: NodeExport, _ p: ResizeParams) throws {
    let mode = p.mode == .nearest ? "nearest" : p.mode == .linear ? "linear" : "cubic"
    let coordinate = try coordinateSpellings.name(p.coordinate, n, what: "Resize coordinate mode")
    let nearest = try nearestSpellings.name(p.nearest, n, what: "Resize nearest mode")
    var attrs: [ONNXAttributeProto] = [
        .string("mode", mode), .string("coordinate_transformation_mode", coordinate),
        .string("nearest_mode", nearest), .float("cubic_coeff_a", p.cubicCoefficient),
        .bool("exclude_outside", p.excludeOutside), .float("extrapolation_value", p.extrapolationValue),
    ]
    if p.antialias {
        try n.require(opset: 18, "Resize with antialiasing")
        attrs.append(.int("antialias", 1))
    }
    var inputs = (0..<4).map(n.input)
    if let axes = p.axes {
        if n.opset >= 18 {
            attrs.append(.ints("axes", axes))
        } else {
            try resizeOperandsForAllAxes(n, axes: axes, &inputs)
        }
    }
    if p.aspect != .stretch {
        try n.require(opset: 18, "Resize with a keep-aspect-ratio policy")
        attrs.append(.string("keep_aspect_ratio_policy", try aspectSpellings.name(p.aspect, n, what: "Resize keep-aspect-ratio policy")))
    }
    n.emit("Resize", inputs, attrs: attrs)
}

/// Before Resize 18 scales and sizes cover every axis: the given ones are spread over the
/// full rank, with scale 1 and the input's own size on the other axes.
private func resizeOperandsForAllAxes(_ n: NodeExport, axes: [Int], _ inputs: inout [String]) throws {
    guard let rank = n.shape(inputs[0])?.count else {
        throw n.error("Resize over chosen axes needs opset 18, or the input's rank known at export")
    }
    let positions = axes.map { $0 < 0 ? $0 + rank : $0 }
    if !inputs[2].isEmpty {
        guard let scales = n.constantValue(inputs[2]), scales.dtype.isFloat, scales.count == axes.count else {
            throw n.error("Resize over chosen axes with scales computed at run time needs opset 18")
        }
        var full = [Float](repeating: 1, count: rank)
        for (k, a) in positions.enumerated() { full[a] = scales.floats[k] }
        inputs[2] = n.constant(Tensor(shape: [rank], floats: full), "scales")
    }
    if !inputs[3].isEmpty {
        let shape = n.emitTemporary("Shape", [inputs[0]], "input_shape")
        let parts = (0..<rank).map { d -> String in
            let (source, index) = positions.firstIndex(of: d).map { (inputs[3], $0) } ?? (shape, d)
            return n.emitTemporary("Slice", [source, n.constant(ints: [index], "start"), n.constant(ints: [index + 1], "end")],
                                   "size\(d)")
        }
        inputs[3] = n.emitTemporary("Concat", parts, "sizes", [.int("axis", 0)])
    }
}
