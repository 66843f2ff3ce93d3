import BraidGraph
import BraidTensor
import Foundation

/// IR ops no Keras layer computes, written as Keras 3 operation nodes: the `keras.ops` calls
/// a functional config records (module `keras.src.ops.*`, config the op's constructor
/// arguments, call arguments inline) and `keras.saving.load_model` rebuilds. The exporter
/// tries an op's layer writer first and comes here when it refuses.
///
/// Layouts: element-wise ops, reductions, slices and splits work on the input's Keras
/// layout (their axes mapped through the tensor's perm); reshapes, gathers and matrix
/// products take the IR layout (Keras axes = IR axes), so a channels-last tensor is
/// transposed back first. A reshape that merges the batch with other axes writes -1 where
/// the planner saw the batch scale (the model keeps a symbolic batch).
let operationWriters: [String: LayerWriter] = [
    "unary": opUnary,
    "binary": opBinary,
    "reduce": opReduce,
    "reshape": opReshape,
    "flatten": opReshape,
    "squeeze": opReshape,
    "unsqueeze": opReshape,
    "gather": opGather,
    "slice": opSlice,
    "split": opSplit,
    "matMul": opMatMul,
    "concat": opConcat,
    "pool": opPool,
    "clip": opClip,
    "expand": opExpand,
    "pad": opPad,
]

private let numpyOps = "keras.src.ops.numpy"
private let mathOps = "keras.src.ops.math"

/// The largest finite float32: the fill of a max pool's padding (a window always holds one
/// input element, so the fill never wins; JSON has no -inf).
private let lowestFloat = -Double(Float.greatestFiniteMagnitude)

/// A constant as a `__numpy__` argument laid out like `x` (the constant aligned to x's rank
/// from the right, its axes moved to Keras's order).
private func arrayArgument(_ c: Tensor, like x: XTensor) throws -> OperationArg {
    guard c.dtype == .float32 else { throw Unmappable(reason: "its constant operand is \(c.dtype), not float32") }
    guard c.rank <= x.rank else { throw Unmappable(reason: "its constant operand has more axes than the tensor") }
    let aligned = c.reshaped(Array(repeating: 1, count: x.rank - c.rank) + c.shape)
    let inverse = (0..<x.rank).map { k in x.perm.firstIndex(of: k)! }
    let k = permuted(aligned, inverse)
    return .array(shape: k.shape, values: k.floatArray.map(Double.init), dtype: "float32")
}

/// Indices (a constant of any integer type) as an int64 `__numpy__` argument, or a number
/// for a scalar.
private func indexArgument(_ t: Tensor, size: Int) throws -> OperationArg {
    guard !t.dtype.isFloat else { throw Unmappable(reason: "its indices are not integers") }
    let v = t.intArray.map { Int($0) < 0 ? Int($0) + size : Int($0) }
    if t.rank == 0 { return .number(Double(v[0])) }
    return .array(shape: t.shape, values: v.map(Double.init), dtype: "int64")
}

private func opUnary(_ b: ExportBuilder, _ node: Node) throws {
    guard case .unary(let f) = node.op else { return }
    let found: (String, String)?
    switch f {
    case .erf: found = ("Erf", mathOps)
    case .sqrt: found = ("Sqrt", numpyOps)
    case .abs: found = ("Absolute", numpyOps)
    case .neg: found = ("Negative", numpyOps)
    case .log: found = ("Log", numpyOps)
    case .floor: found = ("Floor", numpyOps)
    case .ceil: found = ("Ceil", numpyOps)
    case .sin: found = ("Sin", numpyOps)
    case .cos: found = ("Cos", numpyOps)
    case .reciprocal: found = ("Reciprocal", numpyOps)
    case .sign: found = ("Sign", numpyOps)
    default: found = nil
    }
    guard let (cls, module) = found else { throw Unmappable(reason: "\(f) has no Keras operation") }
    let x = try b.input(node)
    b.tensors[node.outputs[0]] = b.addOperation(cls, module: module, [:], args: [.tensor(x)],
                                                outputShape: b.kerasShape(node.outputs[0], perm: x.perm), perm: x.perm)
}

/// The Keras classes computing a binary function elementwise: Keras 3 has an operation of each
/// name, and a merge layer of the names marked `layer`.
let kerasElementwiseClasses: [(function: BinaryFunction, name: String, layer: Bool)] = [
    (.add, "Add", true), (.sub, "Subtract", true), (.mul, "Multiply", true), (.div, "Divide", false),
    (.pow, "Power", false), (.max, "Maximum", true), (.min, "Minimum", true),
]

private func opBinary(_ b: ExportBuilder, _ node: Node) throws {
    guard case .binary(let f) = node.op else { return }
    guard let cls = kerasElementwiseClasses.first(where: { $0.function == f })?.name else {
        throw Unmappable(reason: "\(f) has no Keras operation")
    }
    let out = node.outputs[0]
    let computed = node.inputs.filter { b.constant($0) == nil }
    var args: [OperationArg]
    let perm: [Int]
    if computed.count == 2 {
        var xs = try node.inputs.map { try b.tensor($0) }
        if xs[0].rank == xs[1].rank {
            xs[1] = try b.layout(xs[1], xs[0].perm)
        } else {
            xs = try xs.map { try b.plain($0) }
        }
        guard b.shape(out).count == max(xs[0].rank, xs[1].rank) else { throw Unmappable(reason: "its result has an unexpected rank") }
        perm = xs[0].rank >= xs[1].rank ? xs[0].perm : xs[1].perm
        args = xs.map { .tensor($0) }
    } else {
        guard let name = computed.first else { return }
        let x = try b.tensor(name)
        guard b.shape(out) == b.shape(name) else {
            throw Unmappable(reason: "its constant operand broadcasts the tensor to a larger shape")
        }
        perm = x.perm
        args = try node.inputs.map { i in
            if i == name { return .tensor(x) }
            let c = b.constant(i)!
            return c.count == 1 && c.dtype == .float32 ? .number(Double(c.floats[0])) : try arrayArgument(c, like: x)
        }
    }
    b.tensors[out] = b.addOperation(cls, module: numpyOps, [:], args: args, outputShape: b.kerasShape(out, perm: perm), perm: perm)
}

/// Reductions as `keras.ops` reductions; L2 (`F.normalize`, Swin V2's cosine attention) as
/// sqrt(sum(square(x))), L1 as sum(abs(x)), a sum of squares as sum(square(x)).
private func opReduce(_ b: ExportBuilder, _ node: Node) throws {
    guard case .reduce(let kind, let irAxes, let keep, let noop) = node.op else { return }
    let names: [ReduceFunction: String] = [.mean: "Mean", .sum: "Sum", .max: "Max", .min: "Min", .prod: "Prod",
                                           .l2: "Sum", .l1: "Sum", .sumSquare: "Sum"]
    guard let cls = names[kind] else { throw Unmappable(reason: "\(kind) reduction has no Keras operation") }
    var x = try b.input(node)
    var axes = irAxes
    if axes == nil, node.inputs.count > 1, !node.inputs[1].isEmpty {
        axes = try b.requireConstant(node, 1, "axes").intArray.map(Int.init)
    }
    guard var axes else { throw Unmappable(reason: "it reduces every axis, the batch among them") }
    if axes.isEmpty && noop { b.alias(node.outputs[0], x); return }
    axes = axes.map { $0 < 0 ? $0 + x.rank : $0 }
    guard !axes.contains(0) else { throw Unmappable(reason: "it reduces the batch axis") }
    let kerasAxes = axes.map { x.perm[$0] }.sorted()
    // Without keepdims the kept IR axes keep their order among the kept Keras axes.
    let perm = keep ? x.perm : (0..<x.rank).filter { !axes.contains($0) }.map { i in
        x.perm[i] - kerasAxes.filter { $0 < x.perm[i] }.count
    }
    let elementwise: String? = kind == .l1 ? "Absolute" : kind == .l2 || kind == .sumSquare ? "Square" : nil
    if let f = elementwise {
        x = b.addOperation(f, module: numpyOps, [:], args: [.tensor(x)], outputShape: x.shape, perm: x.perm, suffix: f.lowercased())
    }
    let outShape = b.kerasShape(node.outputs[0], perm: perm)
    var y = b.addOperation(cls, module: numpyOps, ["axis": kerasAxes, "keepdims": keep], args: [.tensor(x)],
                           outputShape: outShape, perm: perm, suffix: kind == .l2 ? "sum" : nil)
    if kind == .l2 {
        y = b.addOperation("Sqrt", module: numpyOps, [:], args: [.tensor(y)], outputShape: outShape, perm: perm)
    }
    b.tensors[node.outputs[0]] = y
}

/// A clip with one bound (`clamp_min(eps)` of `F.normalize`) as `keras.ops.maximum` or
/// `keras.ops.minimum` with a number; clips with both bounds or at 0 are layers.
private func opClip(_ b: ExportBuilder, _ node: Node) throws {
    func bound(_ i: Int) throws -> Float? {
        guard i < node.inputs.count, !node.inputs[i].isEmpty else { return nil }
        let t = try b.requireConstant(node, i, "bound")
        guard t.count == 1, t.dtype == .float32 else { throw Unmappable(reason: "its bounds are not float32 scalars") }
        return t.floats[0]
    }
    let lo = try bound(1), hi = try bound(2)
    let x = try b.input(node)
    var y = x
    if let lo {
        y = b.addOperation("Maximum", module: numpyOps, [:], args: [.tensor(y), .number(Double(lo))], outputShape: x.shape,
                           perm: x.perm, suffix: hi == nil ? nil : "min")
    }
    if let hi {
        y = b.addOperation("Minimum", module: numpyOps, [:], args: [.tensor(y), .number(Double(hi))], outputShape: x.shape, perm: x.perm)
    }
    b.alias(node.outputs[0], y)
}

/// Expand along axes other than the batch (`expand_as` in `F.normalize`) as a product with
/// a constant of ones, sized like the result on the expanded axes and 1 elsewhere: exact,
/// and the batch stays symbolic. The input keeps its Keras layout.
private func opExpand(_ b: ExportBuilder, _ node: Node) throws {
    let out = node.outputs[0]
    let inShape = b.shape(node.inputs[0]), outShape = b.shape(out)
    guard inShape.count == outShape.count else { throw Unmappable(reason: "it adds axes (rank \(inShape.count) to \(outShape.count))") }
    let x = try b.input(node)
    let batch = try b.batchAxis(out)
    if let a = batch, inShape[a] != outShape[a] { throw Unmappable(reason: "it expands the batch axis") }
    // Ones only along the expanded axes (size 1 elsewhere): broadcasting does the rest.
    let onesShape = zip(inShape, outShape).map { i, o in i == o ? 1 : o }
    let ones = Tensor(shape: onesShape, floats: Array(repeating: 1, count: onesShape.reduce(1, *)))
    b.tensors[out] = b.addOperation("Multiply", module: numpyOps, [:], args: [.tensor(x), try arrayArgument(ones, like: x)],
                                    outputShape: b.kerasShape(out, perm: x.perm), perm: x.perm)
}

/// Constant padding of any axes but the batch (Swin's padding of [N, H, W, C] windows) as
/// `keras.ops.pad` on the input's Keras layout.
private func opPad(_ b: ExportBuilder, _ node: Node) throws {
    guard case .pad(.constant) = node.op else { throw Unmappable(reason: "only constant padding is written as a Keras operation") }
    let x = try b.input(node)
    let r = x.rank
    var pads = try b.requireConstant(node, 1, "pads").intArray.map(Int.init)
    if node.inputs.count > 3, !node.inputs[3].isEmpty {
        let axes = try b.requireConstant(node, 3, "axes").intArray.map { Int($0) < 0 ? Int($0) + r : Int($0) }
        var full = Array(repeating: 0, count: 2 * r)
        for (k, a) in axes.enumerated() { full[a] = pads[k]; full[r + a] = pads[axes.count + k] }
        pads = full
    }
    guard pads.count == 2 * r, pads.allSatisfy({ $0 >= 0 }) else { throw Unmappable(reason: "its pads \(pads) are negative or not one pair per axis") }
    var fill = 0.0
    if node.inputs.count > 2, !node.inputs[2].isEmpty {
        let v = try b.requireConstant(node, 2, "pad value")
        guard v.count == 1, v.dtype == .float32 else { throw Unmappable(reason: "its pad value is not a float32 scalar") }
        fill = Double(v.floats[0])
    }
    if let a = try b.batchAxis(node.inputs[0]), pads[a] != 0 || pads[r + a] != 0 { throw Unmappable(reason: "it pads the batch axis") }
    guard pads[0] == 0, pads[r] == 0 else { throw Unmappable(reason: "it pads axis 0, which Keras holds as the batch") }
    // Keras axis k holds IR axis perm⁻¹(k).
    let widths: [[Int]] = (0..<r).map { k in let i = x.perm.firstIndex(of: k)!; return [pads[i], pads[r + i]] }
    b.tensors[node.outputs[0]] = b.addOperation("Pad", module: numpyOps, ["pad_width": widths, "mode": "constant"],
                                                args: [.tensor(x), .number(fill)],
                                                outputShape: b.kerasShape(node.outputs[0], perm: x.perm), perm: x.perm)
}

/// Reshape, Flatten, Squeeze, Unsqueeze as `keras.ops.reshape` on the IR layout.
private func opReshape(_ b: ExportBuilder, _ node: Node) throws {
    let out = node.outputs[0]
    let x = try b.plain(try b.input(node))
    var target = b.shape(out)
    if let a = try b.batchAxis(out) { target[a] = -1 }
    let perm = Array(0..<target.count)
    b.tensors[out] = b.addOperation("Reshape", module: numpyOps, ["newshape": target], args: [.tensor(x)],
                                    outputShape: b.kerasShape(out, perm: perm), perm: perm)
}

/// Gather with constant indices as `keras.ops.take` on the IR layout.
private func opGather(_ b: ExportBuilder, _ node: Node) throws {
    guard case .gather(let axis) = node.op else { return }
    let x = try b.plain(try b.input(node))
    let a = axis < 0 ? axis + x.rank : axis
    let indices = try b.requireConstant(node, 1, "indices")
    let out = node.outputs[0]
    guard try b.batchAxis(node.inputs[0]) != a else { throw Unmappable(reason: "it gathers along the batch axis") }
    let perm = Array(0..<b.shape(out).count)
    b.tensors[out] = b.addOperation("Take", module: numpyOps, ["axis": a],
                                    args: [.tensor(x), try indexArgument(indices, size: b.shape(node.inputs[0])[a])],
                                    outputShape: b.kerasShape(out, perm: perm), perm: perm)
}

/// Slice as one `keras.ops.take` per sliced axis (the indices `start, start + step, ...`),
/// each on the input's Keras layout.
private func opSlice(_ b: ExportBuilder, _ node: Node) throws {
    let inShape = b.shape(node.inputs[0]), outShape = b.shape(node.outputs[0])
    let r = inShape.count
    func ints(_ i: Int, _ what: String) throws -> [Int]? {
        guard node.inputs.count > i, !node.inputs[i].isEmpty else { return nil }
        return try b.requireConstant(node, i, what).intArray.map { Int(clamping: $0) }
    }
    guard let starts = try ints(1, "starts") else { throw Unmappable(reason: "it has no starts") }
    let axes = (try ints(3, "axes"))?.map { $0 < 0 ? $0 + r : $0 } ?? Array(0..<starts.count)
    let steps = try ints(4, "steps") ?? Array(repeating: 1, count: starts.count)
    var x = try b.input(node)
    for (k, a) in axes.enumerated() {
        let n = inShape[a], step = steps[k]
        var s = starts[k] < 0 ? starts[k] + n : starts[k]
        s = step > 0 ? min(max(s, 0), n) : min(max(s, 0), n - 1)
        if s == 0 && step == 1 && outShape[a] == n { continue }
        guard try b.batchAxis(node.inputs[0]) != a else {
            throw Unmappable(reason: "it slices the batch axis")
        }
        let indices = (0..<outShape[a]).map { Double(s + step * $0) }
        var shape = x.shape
        shape[x.perm[a]] = outShape[a]
        x = b.addOperation("Take", module: numpyOps, ["axis": x.perm[a]],
                           args: [.tensor(x), .array(shape: [outShape[a]], values: indices, dtype: "int64")],
                           outputShape: shape, perm: x.perm, suffix: "take\(a)")
    }
    b.alias(node.outputs[0], x)
}

/// Split as `keras.ops.split` at the planned boundaries, on the input's Keras layout.
private func opSplit(_ b: ExportBuilder, _ node: Node) throws {
    guard case .split(let axis, _) = node.op else { return }
    let x = try b.input(node)
    let a = axis < 0 ? axis + x.rank : axis
    guard try b.batchAxis(node.inputs[0]) != a else {
        throw Unmappable(reason: "it splits the batch axis")
    }
    let sizes = node.outputs.map { b.shape($0)[a] }
    var points: [Int] = []
    var total = 0
    for s in sizes.dropLast() { total += s; points.append(total) }
    let t = b.addOperation("Split", module: numpyOps, ["indices_or_sections": points, "axis": x.perm[a]], args: [.tensor(x)],
                           outputShape: b.kerasShape(node.outputs[0], perm: x.perm), perm: x.perm)
    for (i, o) in node.outputs.enumerated() where !o.isEmpty {
        b.tensors[o] = XTensor(layer: t.layer, shape: b.kerasShape(o, perm: x.perm), perm: x.perm, index: i)
    }
}

/// MatMul of computed tensors of any rank (or one constant, inline) as `keras.ops.matmul`.
private func opMatMul(_ b: ExportBuilder, _ node: Node) throws {
    let out = node.outputs[0]
    let args: [OperationArg] = try node.inputs.prefix(2).map { i in
        if let c = b.constant(i) {
            guard c.dtype == .float32 else { throw Unmappable(reason: "its constant operand is \(c.dtype)") }
            return .array(shape: c.shape, values: c.floatArray.map(Double.init), dtype: "float32")
        }
        return .tensor(try b.plain(try b.tensor(i)))
    }
    let perm = Array(0..<b.shape(out).count)
    b.tensors[out] = b.addOperation("Matmul", module: numpyOps, [:], args: args,
                                    outputShape: b.kerasShape(out, perm: perm), perm: perm)
}

/// Concatenation with constant parts (ViT's class token): each constant, planned at batch 1,
/// is broadcast to the batch of a computed part as `zeros_like(take(x, [0...], axis)) + c`,
/// then all are joined by a Concatenate layer on the IR layout.
private func opConcat(_ b: ExportBuilder, _ node: Node) throws {
    guard case .concat(let axis) = node.op else { return }
    guard let ref = node.inputs.first(where: { b.constant($0) == nil }) else { return }
    let x = try b.plain(try b.tensor(ref))
    let a = axis < 0 ? axis + x.rank : axis
    guard a != 0 else { throw Unmappable(reason: "it concatenates along the batch axis") }
    let parts: [XTensor] = try node.inputs.map { i in
        guard let c = b.constant(i) else { return try b.plain(try b.tensor(i)) }
        guard c.rank == x.rank, c.shape[0] == 1 else { throw Unmappable(reason: "its constant part does not have batch 1") }
        var shape = x.shape
        shape[a] = c.shape[a]
        let rows = b.addOperation("Take", module: numpyOps, ["axis": a],
                                  args: [.tensor(x), .array(shape: [c.shape[a]], values: Array(repeating: 0, count: c.shape[a]), dtype: "int64")],
                                  outputShape: shape, perm: x.perm, suffix: "rows")
        let zeros = b.addOperation("ZerosLike", module: numpyOps, ["dtype": NSNull()], args: [.tensor(rows)],
                                   outputShape: shape, perm: x.perm, suffix: "zeros")
        return b.addOperation("Add", module: numpyOps, [:], args: [.tensor(zeros), try arrayArgument(c, like: zeros)],
                              outputShape: shape, perm: x.perm, suffix: "constant")
    }
    b.emit(node, "Concatenate", ["axis": a], inputs: parts, listInput: true, perm: x.perm)
}

/// Max pooling whose padding Keras's `valid`/`same` cannot express (explicit pads, ceil
/// mode): `keras.ops.pad` with the lowest float, then a `valid` MaxPooling layer. The fill
/// never wins a window, so the result is exact.
private func opPool(_ b: ExportBuilder, _ node: Node) throws {
    guard case .pool(let p) = node.op, p.kind == .max else { throw Unmappable(reason: "only max pooling pads with a fill") }
    let s = p.kernel.count
    guard s == 1 || s == 2, p.dilations.allSatisfy({ $0 == 1 }) else {
        throw Unmappable(reason: "only undilated 1-D and 2-D pooling have Keras layers")
    }
    guard p.autoPad == .explicit || p.autoPad == .valid else { throw Unmappable(reason: "auto padding \(p.autoPad)") }
    let spatialIn = Array(b.shape(node.inputs[0]).dropFirst(2)), spatialOut = Array(b.shape(node.outputs[0]).dropFirst(2))
    var pads: [(Int, Int)] = []
    for i in 0..<s {
        let begin = p.autoPad == .explicit ? p.pads[i] : 0
        var end = p.autoPad == .explicit ? p.pads[s + i] : 0
        // Ceil mode: the last window reaches past the end; pad so that `valid` still takes it.
        end = max(end, (spatialOut[i] - 1) * p.strides[i] + p.kernel[i] - spatialIn[i] - begin)
        pads.append((begin, end))
    }
    let x = try b.channelsLast(try b.input(node))
    let padded = (0..<s).map { spatialIn[$0] + pads[$0].0 + pads[$0].1 }
    guard (0..<s).allSatisfy({ (padded[$0] - p.kernel[$0]) / p.strides[$0] + 1 == spatialOut[$0] }) else {
        throw Unmappable(reason: "its output size \(spatialOut) is not a valid pooling of the padded input")
    }
    let widths = [[0, 0]] + pads.map { [$0.0, $0.1] } + [[0, 0]]
    var shape = x.shape
    for i in 0..<s { shape[1 + i] = padded[i] }
    let pad = b.addOperation("Pad", module: numpyOps, ["pad_width": widths, "mode": "constant"],
                             args: [.tensor(x), .number(lowestFloat)], outputShape: shape, perm: x.perm, suffix: "pad")
    b.emit(node, "MaxPooling\(s)D", ["pool_size": p.kernel, "strides": p.strides, "padding": "valid", "data_format": "channels_last"],
           inputs: [pad], perm: b.cfPerm(s + 2))
}
