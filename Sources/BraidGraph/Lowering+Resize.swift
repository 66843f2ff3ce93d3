import BraidKernels
import BraidTensor

// Lowering of Pad and Resize: ops that fill an output from per-axis index or weight tables
// computed once per plan.

/// The plan-time float elements of optional input `i`; nil when absent or empty.
private func constantFloats(_ i: Int, _ node: Node, _ inputs: [PlanValue?]) throws -> [Double]? {
    guard hasInput(i, inputs) else { return nil }
    guard let t = inputs[i]!.constant else {
        throw GraphError(node: node.name, "\(node.sourceOp) input \(i) ('\(node.inputs[i])') must be known before the run")
    }
    if t.count == 0 { return nil }
    return t.dtype.isFloat ? t.floatArray.map(Double.init) : t.intArray.map(Double.init)
}

/// Pad's operands read once for the forward and the backward: `pads` (input 1, begins then
/// ends) over `axes` (input 3, default all), checked against the data's shape.
public func padCopy(_ node: Node, _ inputs: [PlanValue?], mode: PadFill) throws -> PadCopy {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    let pads = try requiredInts(1, node, inputs, "pads")
    let axes = hasInput(3, inputs) ? try requiredInts(3, node, inputs, "axes").map { try normalizedAxis($0, rank: r, node) }
        : Array(0..<r)
    guard pads.count == 2 * axes.count else {
        throw GraphError(node: node.name, "Pad has \(pads.count) pads for \(axes.count) axes")
    }
    var begins = [Int](repeating: 0, count: r), ends = begins
    for (i, a) in axes.enumerated() { begins[a] = pads[i]; ends[a] = pads[axes.count + i] }
    let fill = mode
    for a in 0..<r {
        guard x.shape[a] + begins[a] + ends[a] >= 0 else {
            throw GraphError(node: node.name, "Pad crops axis \(a) of \(x.shape) below zero")
        }
        if fill != .constant && x.shape[a] == 0 && (begins[a] > 0 || ends[a] > 0) {
            throw GraphError(node: node.name, "Pad \(mode) of empty axis \(a)")
        }
    }
    return PadCopy(shape: x.shape, begins: begins, ends: ends, fill: fill, elementSize: x.dtype.storageStride)
}

func lowerPad(_ node: Node, _ inputs: [PlanValue?], mode: PadFill) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let copy = try padCopy(node, inputs, mode: mode)
    let isFloat = x.dtype.isFloat
    return LoweredOp(outputs: [(copy.outShape, x.dtype)]) { ins, outs in
        let src = ins[0]!.buffer.raw, dst = outs[0].buffer.raw
        let value = ins.count > 2 ? ins[2] : nil
        return {
            var bits: UInt64 = 0
            if let v = value, v.count > 0 {
                if isFloat {
                    bits = UInt64((v.dtype.isFloat ? v.floats[0] : Float(v.ints[0])).bitPattern)
                } else {
                    bits = v.dtype.isFloat ? fillBits(Double(v.floats[0]), float: false) : UInt64(bitPattern: v.ints[0])
                }
            }
            copy.run(src, dst, fillBits: bits)
        }
    }
}

private func isClose(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-9 * max(abs(a), abs(b)) }

/// How a Resize node moves data, decided once from its operands: an index map (nearest)
/// or per-axis interpolation weights (linear, cubic). The forward lowering runs it and the
/// backward rule runs its adjoint, so both read the geometry from here.
public enum ResizeKernel {
    case indexMap(AxisMapCopy, fillBits: UInt64)
    case interpolation(ResizeInterpolation)
}

/// The output shape and kernel of a Resize node for the input facts.
public func resizeKernel(_ node: Node, _ inputs: [PlanValue?], _ p: ResizeParams) throws
    -> (outShape: [Int], kernel: ResizeKernel) {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    let axes = try (p.axes ?? Array(0..<r)).map { try normalizedAxis($0, rank: r, node) }
    guard Set(axes).count == axes.count else { throw GraphError(node: node.name, "Resize axes \(axes) repeat") }
    var scales = [Double](repeating: 1, count: r), outShape = x.shape

    if hasInput(3, inputs), let sizes = try inputs.constantInts(3, node), !sizes.isEmpty {
        guard sizes.count == axes.count else {
            throw GraphError(node: node.name, "Resize has \(sizes.count) sizes for \(axes.count) axes")
        }
        for (i, a) in axes.enumerated() {
            outShape[a] = Int(sizes[i])
            scales[a] = Double(sizes[i]) / Double(x.shape[a])
        }
        if p.aspect != .stretch {
            let picked = axes.map { scales[$0] }
            let s = p.aspect == .notLarger ? picked.min()! : picked.max()!
            for a in axes { scales[a] = s; outShape[a] = Int(s * Double(x.shape[a]) + 0.5) }
        }
    } else if let given = try constantFloats(2, node, inputs) {
        guard given.count == axes.count else {
            throw GraphError(node: node.name, "Resize has \(given.count) scales for \(axes.count) axes")
        }
        for (i, a) in axes.enumerated() {
            guard given[i] > 0 else { throw GraphError(node: node.name, "Resize scale \(given[i]) is not positive") }
            scales[a] = given[i]
            outShape[a] = Int(given[i] * Double(x.shape[a]))
        }
    } else {
        throw GraphError(node: node.name, "Resize needs scales or sizes")
    }

    var roi = [(Double, Double)](repeating: (0, 1), count: r)
    let roiGiven = try constantFloats(1, node, inputs)
    if p.coordinate == .tfCropAndResize {
        guard let values = roiGiven, values.count == 2 * axes.count else {
            throw GraphError(node: node.name, "Resize tf_crop_and_resize needs roi with \(2 * axes.count) values")
        }
        for (i, a) in axes.enumerated() { roi[a] = (values[i], values[axes.count + i]) }
    }

    let coordinates = p.coordinate
    let resized = axes.sorted().filter { a in
        !(isClose(scales[a], 1) && outShape[a] == x.shape[a] && roi[a].0 == 0 && isClose(roi[a].1, 1))
    }
    for a in resized where x.shape[a] == 0 && outShape[a] > 0 {
        throw GraphError(node: node.name, "Resize of empty axis \(a) to \(outShape[a])")
    }
    let geometry = resized.map { a in
        ResizeAxis(inSize: x.shape[a], outSize: outShape[a], scale: scales[a], roiStart: roi[a].0, roiEnd: roi[a].1)
    }

    switch p.mode {
    case .nearest:
        guard !p.antialias else { throw GraphError(node: node.name, "Resize antialias needs linear or cubic mode") }
        let rounding = p.nearest
        var maps = x.shape.map { Array(0..<$0) }
        for (a, g) in zip(resized, geometry) { maps[a] = g.nearestIndices(coordinates, rounding) }
        let copy = r == 0 ? AxisMapCopy(inShape: [1], maps: [[0]], elementSize: x.dtype.storageStride)
            : AxisMapCopy(inShape: x.shape, maps: maps, elementSize: x.dtype.storageStride)
        let bits = fillBits(Double(p.extrapolationValue), float: x.dtype.isFloat)
        return (outShape, .indexMap(copy, fillBits: bits))
    case .linear, .cubic:
        let sampling: ResizeSampling = p.mode == .linear ? .linear : .cubic(a: Double(p.cubicCoefficient))
        let tables = zip(resized, geometry).map { a, g in
            (axis: a, outSize: g.outSize,
             taps: ResizeTaps(axis: g, coordinates: coordinates, sampling: sampling,
                              antialias: p.antialias, excludeOutside: p.excludeOutside))
        }
        let plan = ResizeInterpolation(inShape: x.shape, axes: tables, extrapolation: p.extrapolationValue,
                                       isFloat: x.dtype.isFloat)
        return (outShape, .interpolation(plan))
    }
}

func lowerResize(_ node: Node, _ inputs: [PlanValue?], _ p: ResizeParams) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let (outShape, kernel) = try resizeKernel(node, inputs, p)
    return LoweredOp(outputs: [(outShape, x.dtype)]) { ins, outs in
        let src = ins[0]!.buffer.raw, dst = outs[0].buffer.raw
        switch kernel {
        case .indexMap(let copy, let bits): return { copy.run(src, dst, fillBits: bits) }
        case .interpolation(let plan): return { plan.run(UnsafeRawPointer(src), dst) }
        }
    }
}
