import BraidKernels
import BraidTensor

/// Lowers the neural-network family (convolution, matrix products, normalisation, pooling,
/// softmax, dropout) onto BraidKernels. Output sizes and automatic padding are resolved here
/// from the concrete input shapes.
func lowerNN(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    switch node.op {
    case .conv(let p): return try lowerConv(node, p, inputs)
    case .convTranspose(let p): return try lowerConvTranspose(node, p, inputs)
    case .gemm(let transA, let transB, let alpha, let beta):
        return try lowerGemm(node, transA: transA, transB: transB, alpha: alpha, beta: beta, inputs)
    case .matMul: return try lowerMatMul(node, inputs)
    case .batchNorm(let epsilon): return try lowerBatchNorm(node, epsilon: epsilon, inputs)
    case .instanceNorm(let epsilon): return try lowerInstanceNorm(node, epsilon: epsilon, inputs)
    case .channelChain(let steps, let activation): return try lowerChannelChain(node, steps, activation, inputs)
    case .layerNorm(let axis, let epsilon): return try lowerLayerNorm(node, axis: axis, epsilon: epsilon, inputs)
    case .pool(let p): return try lowerPool(node, p, inputs)
    case .globalPool(let kind): return try lowerGlobalPool(node, kind, inputs)
    case .lrn(let size, let alpha, let beta, let bias):
        return try lowerLRN(node, size: size, alpha: alpha, beta: beta, bias: bias, inputs)
    case .softmax(let kind, let axis, let coerce2D): return try lowerSoftmax(node, kind, axis: axis, coerce2D: coerce2D, inputs)
    case .dropout: return try lowerDropout(node, inputs)
    case .batchNormTraining(let epsilon, let momentum):
        return try lowerBatchNormTraining(node, epsilon: epsilon, momentum: momentum, inputs)
    case .dropoutTraining(let ratio, let seed): return try lowerDropoutTraining(node, ratio: ratio, seed: seed, inputs)
    default:
        throw GraphError(node: node.name, "\(node.sourceOp) is not a neural-network op")
    }
}

// MARK: - Shared checks

/// Input `i`, which must be float32.
func nnFloatInput(_ i: Int, _ node: Node, _ inputs: [PlanValue?], _ role: String) throws -> PlanValue {
    let v = try inputs.required(i, node)
    guard v.dtype == .float32 else {
        throw GraphError(node: node.name, "\(node.sourceOp) input \(role) must be float32, got \(v.dtype)")
    }
    return v
}

/// Optional input `i` (nil when absent), which must be float32 of exactly `shape`.
func nnOptionalInput(_ i: Int, _ node: Node, _ inputs: [PlanValue?], _ role: String, shape: [Int]) throws -> PlanValue? {
    guard i < inputs.count, let v = inputs[i] else { return nil }
    guard v.dtype == .float32 else {
        throw GraphError(node: node.name, "\(node.sourceOp) input \(role) must be float32, got \(v.dtype)")
    }
    guard v.shape == shape else {
        throw GraphError(node: node.name, "\(node.sourceOp) input \(role): expected shape \(shape), got \(v.shape)")
    }
    return v
}

/// Checks that `v` has `shape`, naming the role in the error.
func nnExpectShape(_ v: PlanValue, _ shape: [Int], _ node: Node, _ role: String) throws {
    guard v.shape == shape else {
        throw GraphError(node: node.name, "\(node.sourceOp) input \(role): expected shape \(shape), got \(v.shape)")
    }
}

/// One spatial axis's sliding-window facts after padding is resolved.
struct WindowAxis: Equatable {
    var input: Int
    var output: Int
    var kernel: Int
    var stride: Int
    var dilation: Int
    var padBegin: Int
    var padEnd: Int
}

/// Resolves each spatial axis of a convolution or pooling window (ONNX rules): explicit pads
/// with floor (or `ceilMode`) output size, `valid`, or `sameUpper`/`sameLower` where
/// `output = ceil(input / stride)` and the total pad is split with the odd one at the end
/// (upper) or start (lower).
func resolveWindows(_ node: Node, spatial: [Int], kernel: [Int], strides: [Int], pads: [Int],
                    dilations: [Int], autoPad: AutoPad, ceilMode: Bool = false) throws -> [WindowAxis] {
    let r = spatial.count
    func entry(_ a: [Int], _ i: Int, _ fallback: Int, _ name: String) throws -> Int {
        if a.isEmpty { return fallback }
        guard a.count == r else {
            throw GraphError(node: node.name, "\(node.sourceOp) \(name) has \(a.count) entries, expected \(r)")
        }
        return a[i]
    }
    guard pads.isEmpty || pads.count == 2 * r else {
        throw GraphError(node: node.name, "\(node.sourceOp) pads has \(pads.count) entries, expected \(2 * r)")
    }
    guard kernel.count == r else {
        throw GraphError(node: node.name, "\(node.sourceOp) kernel has \(kernel.count) dims, input has \(r) spatial dims")
    }
    var axes: [WindowAxis] = []
    for i in 0..<r {
        let k = kernel[i], s = try entry(strides, i, 1, "strides"), d = try entry(dilations, i, 1, "dilations")
        guard k >= 1, s >= 1, d >= 1 else {
            throw GraphError(node: node.name, "\(node.sourceOp) needs kernel, strides and dilations >= 1, got \(kernel), \(strides), \(dilations)")
        }
        let n = spatial[i], dk = (k - 1) * d + 1
        var a = WindowAxis(input: n, output: 0, kernel: k, stride: s, dilation: d, padBegin: 0, padEnd: 0)
        switch autoPad {
        case .explicit:
            a.padBegin = pads.isEmpty ? 0 : pads[i]
            a.padEnd = pads.isEmpty ? 0 : pads[r + i]
            let span = n + a.padBegin + a.padEnd - dk
            guard span >= 0 else {
                throw GraphError(node: node.name, "\(node.sourceOp) window \(dk) is larger than padded input \(n + a.padBegin + a.padEnd) on spatial axis \(i)")
            }
            if ceilMode {
                a.output = (span + s - 1) / s + 1
                if (a.output - 1) * s >= n + a.padBegin { a.output -= 1 }
            } else {
                a.output = span / s + 1
            }
        case .valid:
            guard n >= dk else {
                throw GraphError(node: node.name, "\(node.sourceOp) window \(dk) is larger than input \(n) on spatial axis \(i)")
            }
            a.output = (n - dk) / s + 1
        case .sameUpper, .sameLower:
            a.output = (n + s - 1) / s
            let total = max(0, (a.output - 1) * s + dk - n)
            a.padBegin = autoPad == .sameUpper ? total / 2 : total - total / 2
            a.padEnd = total - a.padBegin
        }
        axes.append(a)
    }
    return axes
}

/// Rejects ranks other than 1-D and 2-D spatial with a clear message.
func nnSpatialRank(_ node: Node, _ x: PlanValue) throws -> Int {
    let r = x.shape.count - 2
    guard r >= 1 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, spatial...], got shape \(x.shape)")
    }
    guard r <= 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) with \(r) spatial dims is unsupported (1-D and 2-D only), input shape \(x.shape)")
    }
    return r
}

// MARK: - Convolution

/// The geometry a convolution node runs with for input `x` `[N, C, spatial...]` and weight
/// `w` `[M, C/group, kernel...]` (automatic pads resolved), and its output shape. Shared by the
/// forward lowering and the training backward so both see the same padding.
public func convGeometry(_ node: Node, _ p: ConvParams, x: PlanValue, w: PlanValue) throws -> (ConvGeometry, [Int]) {
    let r = try nnSpatialRank(node, x)
    guard w.shape.count == r + 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) weight: expected rank \(r + 2) [M, C/group, kernel...], got shape \(w.shape)")
    }
    let n = x.shape[0], c = x.shape[1], m = w.shape[0], group = max(1, p.group)
    guard c % group == 0, m % group == 0, w.shape[1] == c / group else {
        throw GraphError(node: node.name, "\(node.sourceOp) weight: expected shape [M, \(c / max(group, 1)), ...] with M divisible by group \(group), got \(w.shape) for input \(x.shape)")
    }
    let kernel = Array(w.shape[2...])
    if !p.kernel.isEmpty && p.kernel != kernel {
        throw GraphError(node: node.name, "\(node.sourceOp) kernel \(p.kernel) does not match weight shape \(w.shape)")
    }
    let axes = try resolveWindows(node, spatial: Array(x.shape[2...]), kernel: kernel, strides: p.strides,
                                  pads: p.pads, dilations: p.dilations, autoPad: p.autoPad)
    let (h, wd) = r == 1 ? (nil, axes[0]) : (axes[0], axes[1])
    let geometry = ConvGeometry(
        batch: n, inChannels: c, inH: h?.input ?? 1, inW: wd.input, outChannels: m,
        outH: h?.output ?? 1, outW: wd.output, kernelH: h?.kernel ?? 1, kernelW: wd.kernel,
        strideH: h?.stride ?? 1, strideW: wd.stride, dilationH: h?.dilation ?? 1, dilationW: wd.dilation,
        padTop: h?.padBegin ?? 0, padLeft: wd.padBegin, group: group)
    return (geometry, [n, m] + axes.map(\.output))
}

func lowerConv(_ node: Node, _ p: ConvParams, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X"), w = try nnFloatInput(1, node, inputs, "W")
    if x.shape.count == 5 { return try lowerConv3D(node, p, x: x, w: w, inputs) }
    let (geometry, outShape) = try convGeometry(node, p, x: x, w: w)
    let bias = try nnOptionalInput(2, node, inputs, "B", shape: [w.shape[0]])
    let hasBias = bias != nil
    let activation = p.fusion?.activation
    if p.summation == .onnxruntimeCPU && MLASOrderConv2D.handles(geometry) && p.fusion?.residual != true && activation == nil {
        return LoweredOp(outputs: [(outShape, .float32)]) { ins, outs in
            let conv = MLASOrderConv2D(geometry)
            let xp = ins[0]!.floats, wp = ins[1]!.floats
            let bp = hasBias ? UnsafePointer(ins[2]!.floats) : nil
            let yp = outs[0].floats
            return { conv.forward(x: xp, weight: wp, bias: bp, y: yp) }
        }
    }
    if p.fusion?.constantWeights == true, let weight = w.constant, WinogradConv3x3.handles(geometry),
       p.fusion?.residual != true || (try? nnFloatInput(3, node, inputs, "residual"))?.shape == outShape {
        let residual = p.fusion?.residual == true
        return LoweredOp(outputs: [(outShape, .float32)]) { ins, outs in
            let conv = WinogradConv3x3(geometry, weight: weight.floats,
                                       epilogue: ConvEpilogue(activation: activation, residual: residual))
            let xp = ins[0]!.floats
            let bp = hasBias ? UnsafePointer(ins[2]!.floats) : nil
            let rp = residual ? UnsafePointer(ins[3]!.floats) : nil
            let yp = outs[0].floats
            return { conv.forward(x: xp, bias: bp, residual: rp, y: yp) }
        }
    }
    guard p.fusion?.residual == true else {
        return LoweredOp(outputs: [(outShape, .float32)]) { ins, outs in
            let conv = Conv2D(geometry, epilogue: ConvEpilogue(activation: activation))
            let xp = ins[0]!.floats, wp = ins[1]!.floats
            let bp = hasBias ? UnsafePointer(ins[2]!.floats) : nil
            let yp = outs[0].floats
            return { conv.forward(x: xp, weight: wp, bias: bp, y: yp) }
        }
    }
    let r = try nnFloatInput(3, node, inputs, "residual")
    if r.shape == outShape {
        return LoweredOp(outputs: [(outShape, .float32)]) { ins, outs in
            let conv = Conv2D(geometry, epilogue: ConvEpilogue(activation: activation, residual: true))
            let xp = ins[0]!.floats, wp = ins[1]!.floats, rp = ins[3]!.floats
            let bp = hasBias ? UnsafePointer(ins[2]!.floats) : nil
            let yp = outs[0].floats
            return { conv.forward(x: xp, weight: wp, bias: bp, residual: rp, y: yp) }
        }
    }
    // A residual that broadcasts (as the Add it replaced allowed): convolve into scratch, then
    // add and activate over the whole output.
    guard let layout = BroadcastLayout(inputs: [outShape, r.shape]) else {
        throw GraphError(node: node.name, "\(node.sourceOp) residual of shape \(r.shape) does not broadcast with the convolution's output \(outShape)")
    }
    return LoweredOp(outputs: [(layout.shape, .float32)]) { ins, outs in
        let conv = Conv2D(geometry)
        let scratch = Tensor(zeros: outShape)
        let xp = ins[0]!.floats, wp = ins[1]!.floats, rp = ins[3]!.floats, sp = scratch.floats
        let bp = hasBias ? UnsafePointer(ins[2]!.floats) : nil
        let yp = outs[0].floats, count = layout.count
        return {
            conv.forward(x: xp, weight: wp, bias: bp, y: sp)
            Elementwise.binary(.add, layout, sp, rp, yp)
            activation?.apply(yp, cols: count)
            _ = scratch
        }
    }
}

func lowerConvTranspose(_ node: Node, _ p: ConvTransposeParams, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X"), w = try nnFloatInput(1, node, inputs, "W")
    let r = x.shape.count == 5 ? 3 : try nnSpatialRank(node, x)
    let cp = p.conv
    let n = x.shape[0], c = x.shape[1], group = max(1, cp.group)
    guard w.shape.count == r + 2, w.shape[0] == c, c % group == 0 else {
        throw GraphError(node: node.name, "\(node.sourceOp) weight: expected shape [\(c), M/group, kernel...] (rank \(r + 2)), got \(w.shape)")
    }
    let m = w.shape[1] * group
    let kernel = Array(w.shape[2...])
    if !cp.kernel.isEmpty && cp.kernel != kernel {
        throw GraphError(node: node.name, "\(node.sourceOp) kernel \(cp.kernel) does not match weight shape \(w.shape)")
    }
    let bias = try nnOptionalInput(2, node, inputs, "B", shape: [m])
    func list(_ a: [Int], _ fallback: Int, _ count: Int, _ name: String) throws -> [Int] {
        if a.isEmpty { return Array(repeating: fallback, count: count) }
        guard a.count == count else {
            throw GraphError(node: node.name, "\(node.sourceOp) \(name) has \(a.count) entries, expected \(count)")
        }
        return a
    }
    let strides = try list(cp.strides, 1, r, "strides"), dil = try list(cp.dilations, 1, r, "dilations")
    let outPad = try list(p.outputPadding, 0, r, "output_padding")
    var pads = try list(cp.pads, 0, 2 * r, "pads")
    var outSpatial = [Int](repeating: 0, count: r)
    var target: [Int]? = p.outputShape.map { Array($0.suffix(r)) }
    if target == nil && (cp.autoPad == .sameUpper || cp.autoPad == .sameLower) {
        target = (0..<r).map { x.shape[2 + $0] * strides[$0] }
    }
    if cp.autoPad == .valid { pads = Array(repeating: 0, count: 2 * r) }
    for i in 0..<r {
        let natural = strides[i] * (x.shape[2 + i] - 1) + outPad[i] + (kernel[i] - 1) * dil[i] + 1
        if let target {
            let total = natural - target[i]
            // Negative totals (a larger requested output) split with floor division, as ONNX does.
            let half = total >= 0 ? total / 2 : -((-total + 1) / 2)
            pads[i] = cp.autoPad == .sameUpper ? half : total - half
            pads[r + i] = total - pads[i]
            outSpatial[i] = target[i]
        } else {
            outSpatial[i] = natural - pads[i] - pads[r + i]
        }
        guard outSpatial[i] >= 0 else {
            throw GraphError(node: node.name, "\(node.sourceOp) output size \(outSpatial[i]) < 0 on spatial axis \(i)")
        }
    }
    if r == 3 {
        let direct = DirectConv(batch: n, inChannels: c, outChannels: m, group: group, input: Array(x.shape[2...]),
                                output: outSpatial, kernel: kernel, strides: strides, dilations: dil,
                                padBegin: Array(pads[..<r]), transposed: true)
        return directConvOp(direct, [n, m] + outSpatial, hasBias: bias != nil)
    }
    let two = r == 2
    let geometry = ConvGeometry(
        batch: n, inChannels: c, inH: two ? x.shape[2] : 1, inW: x.shape[1 + r], outChannels: m,
        outH: two ? outSpatial[0] : 1, outW: outSpatial[r - 1], kernelH: two ? kernel[0] : 1, kernelW: kernel[r - 1],
        strideH: two ? strides[0] : 1, strideW: strides[r - 1], dilationH: two ? dil[0] : 1, dilationW: dil[r - 1],
        padTop: two ? pads[0] : 0, padLeft: pads[r - 1], group: group)
    let hasBias = bias != nil
    return LoweredOp(outputs: [([n, m] + outSpatial, .float32)]) { ins, outs in
        let conv = ConvTranspose2D(geometry)
        let xp = ins[0]!.floats, wp = ins[1]!.floats
        let bp = hasBias ? UnsafePointer(ins[2]!.floats) : nil
        let yp = outs[0].floats
        return { conv.forward(x: xp, weight: wp, bias: bp, y: yp) }
    }
}
