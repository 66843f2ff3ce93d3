import BraidKernels
import BraidTensor

/// Lowers the element-wise family: unary, binary, variadic, select, clip, prelu, cast.
///
/// Types follow ONNX: arithmetic keeps its operands' type, comparisons and logic give bool,
/// Pow keeps the base's type. Integer arithmetic runs on Int64 storage and is wrapped back to
/// the declared width afterwards (int8/16/32, uint8/16/32); uint64 values at or above 2^63
/// compare and divide as signed, a known deviation.
func lowerMath(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    switch node.op {
    case .unary(let op): return try lowerUnary(node, op, inputs)
    case .binary(let op): return try lowerBinary(node, op, inputs)
    case .variadic(let op): return try lowerVariadic(node, op, inputs)
    case .select: return try lowerSelect(node, inputs)
    case .clip: return try lowerClip(node, inputs)
    case .prelu: return try lowerPRelu(node, inputs)
    case .reinterpretBits(let from, let to):
        let x = try inputs.required(0, node)
        guard from.bits == to.bits else { throw GraphError(node: node.name, "BitCast between \(from.bits)- and \(to.bits)-bit types") }
        let n = x.shape.product
        return LoweredOp(outputs: [(x.shape, to.storage)]) { ins, outs in
            let src = ins[0]!, dst = outs[0]
            return { for i in 0..<n { storeBits(loadBits(src, i, from), dst, i, to) } }
        }
    case .cast, .castLike:
        let x = try inputs.required(0, node)
        let to: DType
        if case .cast(let t) = node.op { to = t } else { to = try inputs.required(1, node).dtype }
        return LoweredOp(outputs: [(x.shape, to)]) { ins, outs in
            let src = ins[0]!, dst = outs[0]
            return { Elementwise.cast(src, to: dst) }
        }
    default:
        throw GraphError(node: node.name, "\(node.sourceOp) is not an element-wise op")
    }
}

private func lowerUnary(_ node: Node, _ op: UnaryFunction, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let f = op
    let n = x.shape.product
    switch f {
    case .isNaN, .isInf:
        guard x.dtype.isFloat else { throw typeError(node, x.dtype, "float32") }
        return LoweredOp(outputs: [(x.shape, .bool)]) { ins, outs in
            let src = ins[0]!.floats, dst = outs[0].ints
            return { Elementwise.classify(f, src, dst, count: n) }
        }
    case .not:
        guard !x.dtype.isFloat else { throw typeError(node, x.dtype, "bool") }
        return LoweredOp(outputs: [(x.shape, .bool)]) { ins, outs in
            let src = ins[0]!.ints, dst = outs[0].ints
            return { Elementwise.unary(f, src, dst, count: n) }
        }
    default:
        if x.dtype.isFloat {
            if f == .bitwiseNot { throw typeError(node, x.dtype, "an integer type") }
            return LoweredOp(outputs: [(x.shape, x.dtype)]) { ins, outs in
                let src = ins[0]!.floats, dst = outs[0].floats
                return { Elementwise.unary(f, src, dst, count: n) }
            }
        }
        guard f.acceptsIntegers, x.dtype != .bool else { throw typeError(node, x.dtype, "float32") }
        let dtype = x.dtype
        return LoweredOp(outputs: [(x.shape, dtype)]) { ins, outs in
            let src = ins[0]!.ints, dst = outs[0].ints
            return {
                Elementwise.unary(f, src, dst, count: n)
                Elementwise.wrap(dst, count: n, to: dtype)
            }
        }
    }
}

private func lowerBinary(_ node: Node, _ op: BinaryFunction, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let a = try inputs.required(0, node), b = try inputs.required(1, node)
    guard let layout = BroadcastLayout(inputs: [a.shape, b.shape]) else {
        throw GraphError(node: node.name,
                         "\(node.sourceOp) operands \(a.shape) and \(b.shape) do not broadcast")
    }
    let f = op
    let shape = layout.shape, n = layout.count
    if case .pow = op {
        let dtype = a.dtype
        switch (a.dtype.isFloat, b.dtype.isFloat) {
        case (true, true):
            return LoweredOp(outputs: [(shape, dtype)]) { ins, outs in
                let x = ins[0]!.floats, y = ins[1]!.floats, z = outs[0].floats
                return { Elementwise.binary(f, layout, x, y, z) }
            }
        case (true, false):
            return LoweredOp(outputs: [(shape, dtype)]) { ins, outs in
                let x = ins[0]!.floats, y = ins[1]!.ints, z = outs[0].floats
                return { Elementwise.pow(layout, x, y, z) }
            }
        case (false, true):
            return LoweredOp(outputs: [(shape, dtype)]) { ins, outs in
                let x = ins[0]!.ints, y = ins[1]!.floats, z = outs[0].ints
                return {
                    Elementwise.pow(layout, x, y, z)
                    Elementwise.wrap(z, count: n, to: dtype)
                }
            }
        case (false, false):
            break
        }
    }
    guard a.dtype.isFloat == b.dtype.isFloat else {
        throw GraphError(node: node.name,
                         "\(node.sourceOp) operands have different types \(a.dtype) and \(b.dtype)")
    }
    let outType: DType = f.producesBool ? .bool : a.dtype
    if a.dtype.isFloat {
        switch f {
        case .equal, .less, .greater, .lessOrEqual, .greaterOrEqual:
            return LoweredOp(outputs: [(shape, .bool)]) { ins, outs in
                let x = ins[0]!.floats, y = ins[1]!.floats, z = outs[0].ints
                return { Elementwise.compare(f, layout, x, y, z) }
            }
        case .and, .or, .xor, .bitShiftLeft, .bitShiftRight, .bitwiseAnd, .bitwiseOr, .bitwiseXor:
            throw typeError(node, a.dtype, "an integer or bool type")
        default:
            return LoweredOp(outputs: [(shape, outType)]) { ins, outs in
                let x = ins[0]!.floats, y = ins[1]!.floats, z = outs[0].floats
                return { Elementwise.binary(f, layout, x, y, z) }
            }
        }
    }
    // Signed types shift right arithmetically (sign fill), as ONNX's reference does.
    let signed: Set<DType> = [.int8, .int16, .int32, .int64]
    let f2: BinaryFunction = f == .bitShiftRight && signed.contains(a.dtype) ? .arithmeticShiftRight : f
    return LoweredOp(outputs: [(shape, outType)]) { ins, outs in
        let x = ins[0]!.ints, y = ins[1]!.ints, z = outs[0].ints
        let f = f2
        if f.producesBool { return { Elementwise.binary(f, layout, x, y, z) } }
        return {
            Elementwise.binary(f, layout, x, y, z)
            Elementwise.wrap(z, count: n, to: outType)
        }
    }
}

private func lowerVariadic(_ node: Node, _ op: VariadicOp, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let values = inputs.compactMap { $0 }
    guard let first = values.first else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs at least one input")
    }
    guard values.allSatisfy({ $0.dtype == first.dtype }) else {
        throw GraphError(node: node.name, "\(node.sourceOp) inputs differ in type: \(values.map(\.dtype))")
    }
    guard let shape = broadcastShapes(values.map(\.shape)),
          let copy = BroadcastLayout(inputs: [first.shape], output: shape) else {
        throw GraphError(node: node.name,
                         "\(node.sourceOp) inputs \(values.map(\.shape)) do not broadcast")
    }
    let folds = values.dropFirst().map { BroadcastLayout(inputs: [shape, $0.shape], output: shape)! }
    let f: BinaryFunction
    switch op {
    case .sum, .mean: f = .add
    case .max: f = .max
    case .min: f = .min
    }
    let dtype = first.dtype, n = shape.product
    let meanScale = op == .mean ? 1 / Float(values.count) : nil
    if op == .mean && !dtype.isFloat { throw typeError(node, dtype, "float32") }
    return LoweredOp(outputs: [(shape, dtype)]) { ins, outs in
        let present = ins.compactMap { $0 }
        let out = outs[0]
        if dtype.isFloat {
            let srcs = present.map { UnsafePointer($0.floats) }
            let z = out.floats
            return {
                Elementwise.broadcastCopy(copy, srcs[0], z)
                for k in 0..<folds.count { Elementwise.binary(f, folds[k], z, srcs[k + 1], z) }
                if let meanScale { Elementwise.scale(z, count: n, by: meanScale) }
            }
        }
        let srcs = present.map { UnsafePointer($0.ints) }
        let z = out.ints
        return {
            Elementwise.broadcastCopy(copy, srcs[0], z)
            for k in 0..<folds.count { Elementwise.binary(f, folds[k], z, srcs[k + 1], z) }
            Elementwise.wrap(z, count: n, to: dtype)
        }
    }
}

private func lowerSelect(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let c = try inputs.required(0, node), x = try inputs.required(1, node),
        y = try inputs.required(2, node)
    guard !c.dtype.isFloat else { throw typeError(node, c.dtype, "bool condition") }
    guard x.dtype == y.dtype else {
        throw GraphError(node: node.name, "\(node.sourceOp) branches differ in type: \(x.dtype), \(y.dtype)")
    }
    guard let layout = BroadcastLayout(inputs: [c.shape, x.shape, y.shape]) else {
        throw GraphError(node: node.name,
                         "\(node.sourceOp) operands \(c.shape), \(x.shape), \(y.shape) do not broadcast")
    }
    return LoweredOp(outputs: [(layout.shape, x.dtype)]) { ins, outs in
        let cond = ins[0]!.ints
        if x.dtype.isFloat {
            let a = ins[1]!.floats, b = ins[2]!.floats, z = outs[0].floats
            return { Elementwise.select(layout, cond, a, b, z) }
        }
        let a = ins[1]!.ints, b = ins[2]!.ints, z = outs[0].ints
        return { Elementwise.select(layout, cond, a, b, z) }
    }
}

private func lowerClip(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    for i in 1..<3 where i < inputs.count {
        if let bound = inputs[i] {
            guard bound.shape.product == 1 else {
                throw GraphError(node: node.name, "\(node.sourceOp) bound \(i) must be a scalar, got \(bound.shape)")
            }
            guard bound.dtype.isFloat == x.dtype.isFloat else {
                throw GraphError(node: node.name, "\(node.sourceOp) bound \(i) is \(bound.dtype), input is \(x.dtype)")
            }
        }
    }
    let n = x.shape.product
    return LoweredOp(outputs: [(x.shape, x.dtype)]) { ins, outs in
        let lo = ins.count > 1 ? ins[1] : nil, hi = ins.count > 2 ? ins[2] : nil
        if x.dtype.isFloat {
            let src = ins[0]!.floats, dst = outs[0].floats
            let pl = lo?.floats, ph = hi?.floats
            return {
                Elementwise.clip(src, dst, count: n, lo: pl?[0] ?? -.infinity, hi: ph?[0] ?? .infinity)
            }
        }
        let src = ins[0]!.ints, dst = outs[0].ints
        let pl = lo?.ints, ph = hi?.ints
        return { Elementwise.clip(src, dst, count: n, lo: pl?[0] ?? .min, hi: ph?[0] ?? .max) }
    }
}

private func lowerPRelu(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node), s = try inputs.required(1, node)
    var slopeShape = s.shape
    // Some exporters give a per-channel slope `[C]` for `[N, C, ...]`; ONNX would align it
    // with the last axis, which only fails to broadcast, so read it as channel-wise.
    if BroadcastLayout(inputs: [x.shape, slopeShape], output: x.shape) == nil,
       s.shape.count == 1, x.shape.count > 2, x.shape[1] == s.shape[0] {
        slopeShape = [s.shape[0]] + [Int](repeating: 1, count: x.shape.count - 2)
    }
    guard let layout = BroadcastLayout(inputs: [x.shape, slopeShape], output: x.shape) else {
        throw GraphError(node: node.name, "\(node.sourceOp) slope \(s.shape) does not broadcast to \(x.shape)")
    }
    guard x.dtype.isFloat == s.dtype.isFloat else {
        throw GraphError(node: node.name, "\(node.sourceOp) slope is \(s.dtype), input is \(x.dtype)")
    }
    return LoweredOp(outputs: [(x.shape, x.dtype)]) { ins, outs in
        if x.dtype.isFloat {
            let a = ins[0]!.floats, b = ins[1]!.floats, z = outs[0].floats
            return { Elementwise.prelu(layout, a, b, z) }
        }
        let a = ins[0]!.ints, b = ins[1]!.ints, z = outs[0].ints
        return { Elementwise.prelu(layout, a, b, z) }
    }
}

private func typeError(_ node: Node, _ got: DType, _ want: String) -> GraphError {
    GraphError(node: node.name, "\(node.sourceOp) does not accept \(got); it needs \(want)")
}

/// Element `i`'s bits in layout `l` (from Braid's float32 or Int64 storage).
@inline(__always)
private func loadBits(_ t: Tensor, _ i: Int, _ l: BitLayout) -> UInt64 {
    switch l {
    case .float32: return UInt64(t.floats[i].bitPattern)
    case .float64: return Double(t.floats[i]).bitPattern
    case .float16: return UInt64(Float16(t.floats[i]).bitPattern)
    case .bfloat16: return UInt64(t.floats[i].bitPattern >> 16)
    case .bool: return t.ints[i] != 0 ? 1 : 0
    case .integer(let bits, _): return bits == 64 ? UInt64(bitPattern: t.ints[i]) : UInt64(bitPattern: t.ints[i]) & ((1 << UInt64(bits)) - 1)
    }
}

/// Stores `bits` read in layout `l` as element `i` of `t`.
@inline(__always)
private func storeBits(_ bits: UInt64, _ t: Tensor, _ i: Int, _ l: BitLayout) {
    switch l {
    case .float32: t.floats[i] = Float(bitPattern: UInt32(truncatingIfNeeded: bits))
    case .float64: t.floats[i] = Float(Double(bitPattern: bits))
    case .float16: t.floats[i] = Float(Float16(bitPattern: UInt16(truncatingIfNeeded: bits)))
    case .bfloat16: t.floats[i] = Float(bitPattern: UInt32(truncatingIfNeeded: bits) << 16)
    case .bool: t.ints[i] = bits & 0xFF != 0 ? 1 : 0
    case .integer(let width, let signed):
        if width == 64 || !signed { t.ints[i] = Int64(bitPattern: bits); return }
        let shift = UInt64(64 - width)
        t.ints[i] = Int64(bitPattern: bits << shift) >> Int64(shift)
    }
}
