import BraidKernels
import BraidTensor

/// The geometry a pooling node runs with for input `x` `[N, C, spatial...]` (1 to 3 spatial
/// axes, automatic pads and ceil mode resolved), and its output shape.
public func poolGeometry(_ node: Node, _ p: PoolParams, x: PlanValue) throws -> (PoolGeometry, [Int]) {
    let r = x.shape.count - 2
    guard r >= 1 && r <= 3 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, spatial...] with 1 to 3 spatial dims, got shape \(x.shape)")
    }
    let axes = try resolveWindows(node, spatial: Array(x.shape[2...]), kernel: p.kernel, strides: p.strides,
                                  pads: p.pads, dilations: p.dilations, autoPad: p.autoPad,
                                  ceilMode: p.ceilMode && p.autoPad == .explicit)
    let unit = WindowAxis(input: 1, output: 1, kernel: 1, stride: 1, dilation: 1, padBegin: 0, padEnd: 0)
    let padded = Array(repeating: unit, count: 3 - r) + axes
    let (d, h, w) = (padded[0], padded[1], padded[2])
    var geometry = PoolGeometry(
        planes: x.shape[0] * x.shape[1], inH: h.input, inW: w.input, outH: h.output, outW: w.output,
        kernelH: h.kernel, kernelW: w.kernel, strideH: h.stride, strideW: w.stride,
        dilationH: h.dilation, dilationW: w.dilation, padTop: h.padBegin, padLeft: w.padBegin,
        padBottom: h.padEnd, padRight: w.padEnd)
    geometry.inD = d.input; geometry.outD = d.output; geometry.kernelD = d.kernel; geometry.strideD = d.stride
    geometry.dilationD = d.dilation; geometry.padFront = d.padBegin; geometry.padBack = d.padEnd
    return (geometry, Array(x.shape[..<2]) + axes.map(\.output))
}

/// Max, average and Lp pooling over 1 to 3 spatial axes: x `[N, C, spatial...]` ->
/// `[y, indices?]`, indices (max only) int64 flat positions in x. Max pooling also takes integers.
func lowerPool(_ node: Node, _ p: PoolParams, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    guard x.dtype == .float32 || (p.kind == .max && x.dtype != .bool) else {
        throw GraphError(node: node.name, "\(node.sourceOp) input X must be float32\(p.kind == .max ? " or integer" : ""), got \(x.dtype)")
    }
    let (geometry, outShape) = try poolGeometry(node, p, x: x)
    let reduction: PoolReduction
    switch p.kind {
    case .max: reduction = .max
    case .average: reduction = .average(countIncludePad: p.countIncludePad)
    case .lp(let pw): reduction = .lp(p: pw)
    }
    let withIndices = node.outputs.count > 1 && p.kind == .max
    var outputs = [(outShape, x.dtype)]
    if withIndices { outputs.append((outShape, .int64)) }
    let columnMajor = p.storageOrderColumnMajor, isFloat = x.dtype.isFloat
    let g = geometry
    return LoweredOp(outputs: outputs) { ins, outs in
        let ip = withIndices ? outs[1].ints : nil
        if !isFloat {
            let xp = ins[0]!.ints, yp = outs[0].ints
            return { maxPoolInt64(g, x: xp, y: yp, indices: ip, columnMajor: columnMajor) }
        }
        let xp = ins[0]!.floats, yp = outs[0].floats
        return { pool(g, reduction, x: xp, y: yp, indices: ip, columnMajor: columnMajor) }
    }
}

/// Global pooling over every spatial axis of x `[N, C, spatial...]` -> `[N, C, 1, ...]`.
func lowerGlobalPool(_ node: Node, _ kind: PoolKind, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    guard x.shape.count >= 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, spatial...], got \(x.shape)")
    }
    let planes = x.shape[0] * x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
    let reduction: PoolReduction
    switch kind {
    case .max: reduction = .max
    case .average: reduction = .average(countIncludePad: false)
    case .lp(let pw): reduction = .lp(p: pw)
    }
    let outShape = Array(x.shape[..<2]) + Array(repeating: 1, count: x.shape.count - 2)
    return LoweredOp(outputs: [(outShape, .float32)]) { ins, outs in
        let xp = ins[0]!.floats, yp = outs[0].floats
        return { globalPool(reduction, planes: planes, size: size, x: xp, y: yp) }
    }
}
