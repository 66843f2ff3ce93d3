import BraidKernels
import BraidTensor

/// Max, average and Lp pooling over 1-D or 2-D spatial axes: x `[N, C, spatial...]` ->
/// `[y, indices?]`, indices (max only) int64 flat positions in x.
func lowerPool(_ node: Node, _ p: PoolParams, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    let r = try nnSpatialRank(node, x)
    let axes = try resolveWindows(node, spatial: Array(x.shape[2...]), kernel: p.kernel, strides: p.strides,
                                  pads: p.pads, dilations: p.dilations, autoPad: p.autoPad,
                                  ceilMode: p.ceilMode && p.autoPad == .explicit)
    let (h, w) = r == 1 ? (nil, axes[0]) : (axes[0], axes[1])
    let planes = x.shape[0] * x.shape[1]
    let geometry = PoolGeometry(
        planes: planes, inH: h?.input ?? 1, inW: w.input, outH: h?.output ?? 1, outW: w.output,
        kernelH: h?.kernel ?? 1, kernelW: w.kernel, strideH: h?.stride ?? 1, strideW: w.stride,
        dilationH: h?.dilation ?? 1, dilationW: w.dilation, padTop: h?.padBegin ?? 0, padLeft: w.padBegin,
        padBottom: h?.padEnd ?? 0, padRight: w.padEnd)
    let reduction: PoolReduction
    switch p.kind {
    case .max: reduction = .max
    case .average: reduction = .average(countIncludePad: p.countIncludePad)
    case .lp(let pw): reduction = .lp(p: pw)
    }
    let outShape = Array(x.shape[..<2]) + axes.map(\.output)
    let withIndices = node.outputs.count > 1 && p.kind == .max
    var outputs = [(outShape, DType.float32)]
    if withIndices { outputs.append((outShape, .int64)) }
    let columnMajor = p.storageOrderColumnMajor
    return LoweredOp(outputs: outputs) { ins, outs in
        let xp = ins[0]!.floats, yp = outs[0].floats
        let ip = withIndices ? outs[1].ints : nil
        return { pool2D(geometry, reduction, x: xp, y: yp, indices: ip, columnMajor: columnMajor) }
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
