import BraidGraph
import BraidTensor

// Neural-network ONNX ops -> IR: convolution, dense products, normalisation, pooling,
// softmax and dropout.

let nnOps: OpTable = {
    var t: OpTable = [:]
    t["Conv"] = [v(1) { n in
        n.emit(.conv(try convParams(n)))
    }]
    t["ConvTranspose"] = [v(1) { n in
        let conv = try convParams(n)
        let spatial = conv.kernel.count
        let outputPadding = try n.ints("output_padding") ?? Array(repeating: 0, count: spatial)
        var outputShape = try n.ints("output_shape")
        if let s = outputShape, s.count == spatial + 2 { outputShape = Array(s.dropFirst(2)) }
        guard outputPadding.count == spatial, outputShape.map({ $0.count == spatial }) ?? true else {
            throw n.error("output_padding/output_shape need \(spatial) entries")
        }
        n.emit(.convTranspose(ConvTransposeParams(conv: conv, outputPadding: outputPadding,
                                                  outputShape: outputShape)))
    }]
    t["Gemm"] = [v(1) { n in
        n.emit(.gemm(transA: try n.bool("transA", default: false),
                     transB: try n.bool("transB", default: false),
                     alpha: try n.float("alpha", default: 1), beta: try n.float("beta", default: 1)),
               inputs: [n.input(0), n.input(1), n.input(2)])
    }]
    t["MatMul"] = [v(1) { $0.emit(.matMul) }]
    t["BatchNormalization"] = [v(1) { n in
        if n.opset < 9, try !n.bool("spatial", default: true) {
            throw n.error("per-activation batch normalisation (spatial = 0) is not supported")
        }
        if try n.bool("training_mode", default: false) {
            throw n.error("training-mode batch normalisation is not supported; export the model in eval mode")
        }
        try requireUnused(n, from: 1, "running statistics")
        n.emit(.batchNorm(epsilon: try n.float("epsilon", default: 1e-5)),
               inputs: Array((0..<5).map(n.input)), outputs: [n.outputs[0]])
    }]
    t["InstanceNormalization"] = [v(1) { n in
        n.emit(.instanceNorm(epsilon: try n.float("epsilon", default: 1e-5)))
    }]
    t["LayerNormalization"] = [v(17) { n in
        if n.outputUsed(1) || n.outputUsed(2) { return try layerNormWithStatistics(n) }
        n.emit(.layerNorm(axis: try n.int("axis", default: -1), epsilon: try n.float("epsilon", default: 1e-5)),
               inputs: [n.input(0), n.input(1), n.input(2)], outputs: [n.outputs[0]])
    }]
    t["MaxPool"] = [v(1) { n in
        n.emit(.pool(try poolParams(n, .max,
                                    dilations: n.opset >= 10, ceil: n.opset >= 10, includePad: false)))
    }]
    t["AveragePool"] = [v(1) { n in
        n.emit(.pool(try poolParams(n, .average, dilations: n.opset >= 19, ceil: n.opset >= 10,
                                    includePad: n.opset >= 7)))
    }]
    t["LpPool"] = [v(1) { n in
        // Opset 1 declared p as a float; later as an int.
        let p = try n.float("p", default: 2)
        guard p >= 1, p == p.rounded() else { throw n.error("attribute 'p' = \(p), expected a positive integer") }
        n.emit(.pool(try poolParams(n, .lp(p: Int(p)), dilations: n.opset >= 18, ceil: n.opset >= 18,
                                    includePad: false)))
    }]
    t["GlobalAveragePool"] = [v(1) { $0.emit(.globalPool(.average)) }]
    t["GlobalMaxPool"] = [v(1) { $0.emit(.globalPool(.max)) }]
    t["GlobalLpPool"] = [v(1) { n in
        // Opset 1 declared p as a float; later as an int.
        let p = try n.float("p", default: 2)
        guard p >= 1, p == p.rounded() else { throw n.error("attribute 'p' = \(p), expected a positive integer") }
        n.emit(.globalPool(.lp(p: Int(p))))
    }]
    t["LRN"] = [v(1) { n in
        n.emit(.lrn(size: try n.requiredInt("size"), alpha: try n.float("alpha", default: 1e-4),
                    beta: try n.float("beta", default: 0.75), bias: try n.float("bias", default: 1)))
    }]
    for (name, kind) in [("Softmax", SoftmaxMode.softmax), ("LogSoftmax", .logSoftmax), ("Hardmax", .hardmax)] {
        t[name] = [
            v(1) { n in n.emit(.softmax(kind, axis: try n.int("axis", default: 1), coerce2D: true)) },
            v(13) { n in n.emit(.softmax(kind, axis: try n.int("axis", default: -1), coerce2D: false)) },
        ]
    }
    t["Dropout"] = [
        v(1) { n in
            n.emit(.dropout, inputs: [n.input(0)])
        },
        v(12) { n in
            // Opset 12 moved training_mode to an input; only a known false is inference.
            if !n.input(2).isEmpty {
                guard let mode = n.initializerValue(2), mode.count == 1, mode.int(at: 0) == 0 else {
                    throw n.error("training-mode dropout is not supported (input 'training_mode' must be a false constant)")
                }
            }
            n.emit(.dropout, inputs: [n.input(0)])
        },
    ]
    return t
}()

/// Refuses a node whose extra outputs (from index `first` on) feed anything.
private func requireUnused(_ n: NodeTranslation, from first: Int, _ what: String) throws {
    for i in first..<max(first, n.outputs.count) where n.outputUsed(i) {
        throw n.error("output '\(n.outputs[i])' (\(what)) is used, but Braid computes only the inference output")
    }
}

private func autoPad(_ n: NodeTranslation) throws -> AutoPad {
    switch try n.string("auto_pad", default: "NOTSET") {
    case "NOTSET", "": return .explicit
    case "SAME_UPPER": return .sameUpper
    case "SAME_LOWER": return .sameLower
    case "VALID": return .valid
    case let s: throw n.error("attribute 'auto_pad' = '\(s)' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    }
}

/// Geometry shared by Conv and ConvTranspose. The kernel size comes from `kernel_shape` or,
/// when absent, from the weight's trailing dimensions (an initializer or a fixed-shape input).
/// A convolution's geometry from the node's attributes (the kernel from the weight at input
/// `weight` when `kernel_shape` is absent).
func convParams(_ n: NodeTranslation, weight: Int = 1) throws -> ConvParams {
    var kernel = try n.ints("kernel_shape")
    if kernel == nil, let w = n.knownShape(weight), w.count >= 3 {
        kernel = Array(w.dropFirst(2))
    }
    guard let kernel, !kernel.isEmpty else {
        throw n.error("attribute 'kernel_shape' is missing and the weight's shape is not known at import")
    }
    let (strides, pads, dilations) = try geometry(n, spatial: kernel.count, dilations: true)
    let group = try n.int("group", default: 1)
    guard group >= 1 else { throw n.error("attribute 'group' = \(group), expected >= 1") }
    return ConvParams(kernel: kernel, strides: strides, pads: pads, dilations: dilations,
                      group: group, autoPad: try autoPad(n))
}

private func geometry(_ n: NodeTranslation, spatial: Int, dilations readDilations: Bool) throws
    -> (strides: [Int], pads: [Int], dilations: [Int]) {
    let strides = try n.ints("strides") ?? Array(repeating: 1, count: spatial)
    let pads = try n.ints("pads") ?? Array(repeating: 0, count: 2 * spatial)
    let dilations = (readDilations ? try n.ints("dilations") : nil) ?? Array(repeating: 1, count: spatial)
    guard strides.count == spatial, pads.count == 2 * spatial, dilations.count == spatial else {
        throw n.error("strides/dilations need \(spatial) entries and pads \(2 * spatial) (kernel has \(spatial) spatial axes)")
    }
    guard strides.allSatisfy({ $0 >= 1 }), dilations.allSatisfy({ $0 >= 1 }), pads.allSatisfy({ $0 >= 0 }) else {
        throw n.error("strides and dilations must be >= 1 and pads >= 0")
    }
    return (strides, pads, dilations)
}

func poolParams(_ n: NodeTranslation, _ kind: PoolKind, dilations: Bool, ceil: Bool,
                        includePad: Bool) throws -> PoolParams {
    guard let kernel = try n.ints("kernel_shape"), !kernel.isEmpty, kernel.allSatisfy({ $0 >= 1 }) else {
        throw n.error("missing or invalid attribute 'kernel_shape'")
    }
    let g = try geometry(n, spatial: kernel.count, dilations: dilations)
    return PoolParams(kind: kind, kernel: kernel, strides: g.strides, pads: g.pads,
                      dilations: g.dilations, autoPad: try autoPad(n),
                      ceilMode: ceil ? try n.bool("ceil_mode", default: false) : false,
                      countIncludePad: includePad ? try n.bool("count_include_pad", default: false) : false,
                      storageOrderColumnMajor: kind == .max && n.opset >= 8
                          ? try n.bool("storage_order", default: false) : false)
}

// MARK: - Writers (IR -> ONNX)

/// Writes the neural-network ops; false when `n` is not one of them.
func writeNNOp(_ n: NodeExport) throws -> Bool {
    switch n.node.op {
    case .conv(let p):
        guard p.fusion == nil else {
            throw n.error("a fused convolution is for running only; export the graph from before Passes.optimizeForExecution")
        }
        n.emit("Conv", attrs: convAttributes(p) + windowPads(n, autoPad: p.autoPad, pads: p.pads, kernel: p.kernel,
                                                          strides: p.strides, dilations: p.dilations))
    case .convTranspose(let p):
        var attrs = convAttributes(p.conv) + windowPads(n, autoPad: p.conv.autoPad, pads: p.conv.pads, kernel: nil,
                                                        strides: p.conv.strides, dilations: p.conv.dilations)
        if p.outputPadding.contains(where: { $0 != 0 }) { attrs.append(.ints("output_padding", p.outputPadding)) }
        if let s = p.outputShape { attrs.append(.ints("output_shape", s)) }
        n.emit("ConvTranspose", attrs: attrs)
    case .gemm(let transA, let transB, let alpha, let beta):
        n.emit("Gemm", attrs: [.bool("transA", transA), .bool("transB", transB), .float("alpha", alpha), .float("beta", beta)])
    case .matMul: n.emit("MatMul")
    case .batchNorm(let epsilon): n.emit("BatchNormalization", attrs: [.float("epsilon", epsilon)])
    case .instanceNorm(let epsilon): n.emit("InstanceNormalization", attrs: [.float("epsilon", epsilon)])
    case .layerNorm(let axis, let epsilon): try writeLayerNorm(n, axis: axis, epsilon: epsilon)
    case .pool(let p): try writePool(n, p)
    case .globalPool(let kind):
        switch kind {
        case .max: n.emit("GlobalMaxPool")
        case .average: n.emit("GlobalAveragePool")
        case .lp(let p): n.emit("GlobalLpPool", attrs: [.int("p", p)])
        }
    case .lrn(let size, let alpha, let beta, let bias):
        n.emit("LRN", attrs: [.int("size", size), .float("alpha", alpha), .float("beta", beta), .float("bias", bias)])
    case .softmax(let kind, let axis, let coerce2D): try writeSoftmax(n, kind, axis: axis, coerce2D: coerce2D)
    case .dropout: n.emit("Dropout", [n.input(0)])
    case .batchNormTraining:
        throw n.error("training-mode batch normalisation is not written; export an inference graph (running statistics)")
    case .dropoutTraining:
        throw n.error("training-mode dropout is not written; export an inference graph")
    default: return false
    }
    return true
}

private func convAttributes(_ p: ConvParams) -> [ONNXAttributeProto] {
    nonEmpty("kernel_shape", p.kernel) + nonEmpty("strides", p.strides) + nonEmpty("dilations", p.dilations)
        + [.int("group", p.group)]
}

/// An ints attribute, or nothing for an empty list (the IR's "default").
private func nonEmpty(_ name: String, _ v: [Int]) -> [ONNXAttributeProto] { v.isEmpty ? [] : [.ints(name, v)] }

/// `pads` for explicit padding; for an auto-pad rule, explicit pads when the input's spatial
/// size is known (and `kernel` given: the rule is resolved as a convolution or pooling
/// window), `auto_pad` otherwise.
private func windowPads(_ n: NodeExport, autoPad: AutoPad, pads: [Int], kernel: [Int]?, strides: [Int],
                        dilations: [Int]) -> [ONNXAttributeProto] {
    switch autoPad {
    case .explicit: return pads.isEmpty ? [] : [.ints("pads", pads)]
    case .valid: return [.string("auto_pad", "VALID")]
    case .sameUpper, .sameLower:
        if let kernel, let x = n.shape(n.input(0)), x.count == kernel.count + 2 {
            let spatial = x.dropFirst(2).compactMap { $0 }
            if spatial.count == kernel.count {
                var begins: [Int] = [], ends: [Int] = []
                for (i, size) in spatial.enumerated() {
                    let s = strides.isEmpty ? 1 : strides[i], d = dilations.isEmpty ? 1 : dilations[i]
                    let out = (size + s - 1) / s
                    let total = max(0, (out - 1) * s + (kernel[i] - 1) * d + 1 - size)
                    let begin = autoPad == .sameUpper ? total / 2 : total - total / 2
                    begins.append(begin); ends.append(total - begin)
                }
                return [.ints("pads", begins + ends)]
            }
        }
        return [.string("auto_pad", autoPad == .sameUpper ? "SAME_UPPER" : "SAME_LOWER")]
    }
}

private func writePool(_ n: NodeExport, _ p: PoolParams) throws {
    let unitDilations = p.dilations.allSatisfy { $0 == 1 }
    var attrs = [ONNXAttributeProto.ints("kernel_shape", p.kernel)] + nonEmpty("strides", p.strides)
    attrs += windowPads(n, autoPad: p.autoPad, pads: p.pads, kernel: p.ceilMode ? nil : p.kernel,
                        strides: p.strides, dilations: p.dilations)
    switch p.kind {
    case .max:
        attrs += nonEmpty("dilations", p.dilations) + [.bool("ceil_mode", p.ceilMode)]
        if p.storageOrderColumnMajor { attrs.append(.int("storage_order", 1)) }
        n.emit("MaxPool", attrs: attrs)
    case .average:
        if !unitDilations {
            try n.require(opset: 19, "average pooling with dilations \(p.dilations)")
            attrs.append(.ints("dilations", p.dilations))
        }
        attrs += [.bool("ceil_mode", p.ceilMode), .bool("count_include_pad", p.countIncludePad)]
        n.emit("AveragePool", attrs: attrs)
    case .lp(let power):
        if !unitDilations || p.ceilMode {
            try n.require(opset: 18, "Lp pooling with dilations or ceil mode")
            attrs += [.ints("dilations", p.dilations), .bool("ceil_mode", p.ceilMode)]
        }
        attrs.append(.int("p", power))
        n.emit("LpPool", attrs: attrs)
    }
}

/// Softmax 13 normalises one axis. The IR's `coerce2D` form (opset < 13's rule) is that same
/// op when the axis is the last one; otherwise it becomes Flatten, Softmax, Reshape.
private func writeSoftmax(_ n: NodeExport, _ kind: SoftmaxMode, axis: Int, coerce2D: Bool) throws {
    let name = kind == .softmax ? "Softmax" : kind == .logSoftmax ? "LogSoftmax" : "Hardmax"
    let x = n.input(0)
    let rank = n.shape(x)?.count
    if !coerce2D || axis == -1 || (rank.map { axis == $0 - 1 } ?? false) {
        n.emit(name, [x], attrs: [.int("axis", axis)])
        return
    }
    let flat = n.emitTemporary("Flatten", [x], "flat", [.int("axis", axis)])
    let y = n.emitTemporary(name, [flat], "normalised", [.int("axis", 1)])
    let shape = n.emitTemporary("Shape", [x], "shape")
    n.emit("Reshape", [y, shape], outputs: [n.node.outputs[0]])
}

/// LayerNormalization 17; before it, the same arithmetic with ReduceMean (axes as attribute).
private func writeLayerNorm(_ n: NodeExport, axis: Int, epsilon: Float) throws {
    if n.opset >= 17 {
        n.emit("LayerNormalization", [n.input(0), n.input(1), n.input(2)], outputs: [n.node.outputs[0]],
               attrs: [.int("axis", axis), .float("epsilon", epsilon)])
        return
    }
    let axes: [Int]
    if axis < 0 {
        axes = Array(axis...(-1))
    } else if let rank = n.shape(n.input(0))?.count {
        axes = Array(axis..<rank)
    } else {
        throw n.error("layer normalisation from a non-negative axis needs the input's rank (LayerNormalization needs opset 17)")
    }
    let x = n.input(0)
    let mean = n.emitTemporary("ReduceMean", [x], "mean", [.ints("axes", axes), .int("keepdims", 1)])
    let centred = n.emitTemporary("Sub", [x, mean], "centred")
    let square = n.emitTemporary("Mul", [centred, centred], "square")
    let variance = n.emitTemporary("ReduceMean", [square], "variance", [.ints("axes", axes), .int("keepdims", 1)])
    let shifted = n.emitTemporary("Add", [variance, n.constant(scalar: epsilon, "epsilon")], "shifted")
    let std = n.emitTemporary("Sqrt", [shifted], "std")
    let normalised = n.emitTemporary("Div", [centred, std], "normalised")
    let out = n.node.outputs[0]
    if n.input(2).isEmpty {
        n.emit("Mul", [normalised, n.input(1)], outputs: [out])
    } else {
        let scaled = n.emitTemporary("Mul", [normalised, n.input(1)], "scaled")
        n.emit("Add", [scaled, n.input(2)], outputs: [out])
    }
}
