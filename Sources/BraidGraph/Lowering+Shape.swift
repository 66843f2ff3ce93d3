import BraidKernels
import BraidTensor

/// Lowers the shape and data-movement family. Operands that decide the output shape (target
/// shapes, axes, bounds, pads, repeats, sizes, scales) must be plan-time constants.
func lowerShape(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    switch node.op {
    case .reshape(let allowZero): return try lowerReshape(node, inputs, allowZero: allowZero)
    case .flatten(let axis): return try lowerFlatten(node, inputs, axis: axis)
    case .squeeze: return try lowerSqueeze(node, inputs)
    case .unsqueeze: return try lowerUnsqueeze(node, inputs)
    case .identity:
        let x = try inputs.required(0, node)
        return contiguousCopy(x.shape, x.dtype)
    case .transpose(let perm): return try lowerTranspose(node, inputs, perm: perm)
    case .expand: return try lowerExpand(node, inputs)
    case .tile: return try lowerTile(node, inputs)
    case .depthToSpace(let b, let crd): return try lowerDepthToSpace(node, inputs, block: b, crd: crd)
    case .spaceToDepth(let b): return try lowerSpaceToDepth(node, inputs, block: b)
    case .concat(let axis): return try lowerConcat(node, inputs, axis: axis)
    case .split(let axis, let count): return try lowerSplit(node, inputs, axis: axis, count: count)
    case .slice: return try lowerSlice(node, inputs)
    case .gather(let axis): return try lowerGather(node, inputs, axis: axis)
    case .gatherElements(let axis): return try lowerGatherElements(node, inputs, axis: axis)
    case .shape(let start, let end): return try lowerShapeOf(node, inputs, start: start, end: end)
    case .size:
        let x = try inputs.required(0, node)
        return intsOutput([], [Int64(x.shape.product)])
    case .constantOfShape(let value): return try lowerConstantOfShape(node, inputs, value: value)
    case .range: return try lowerRange(node, inputs)
    case .pad(let mode): return try lowerPad(node, inputs, mode: mode)
    case .resize(let params): return try lowerResize(node, inputs, params)
    case .constant(let t):
        return LoweredOp(outputs: [(t.shape, t.dtype)]) { _, outs in
            let out = outs[0]
            return { copyContiguous(t.buffer.raw, out.buffer.raw, byteCount: t.count * t.dtype.storageStride) }
        }
    default:
        throw GraphError(node: node.name, "\(node.sourceOp) is not a shape op")
    }
}

// MARK: Helpers

/// `axis` in `[-rank, rank)` made non-negative, or an error naming the node.
func normalizedAxis(_ axis: Int, rank: Int, _ node: Node) throws -> Int {
    let a = axis < 0 ? axis + rank : axis
    guard a >= 0 && a < rank else {
        throw GraphError(node: node.name, "\(node.sourceOp) axis \(axis) out of range for rank \(rank)")
    }
    return a
}

/// An op whose output is its first input's elements in the same order under a new shape.
func contiguousCopy(_ shape: [Int], _ dtype: DType) -> LoweredOp {
    LoweredOp(outputs: [(shape, dtype)]) { ins, outs in
        let src = ins[0]!.buffer.raw, dst = outs[0].buffer.raw
        let bytes = shape.product * dtype.storageStride
        return { copyContiguous(src, dst, byteCount: bytes) }
    }
}

/// An op whose output is a strided view of its first input.
func stridedOp(_ shape: [Int], _ dtype: DType, _ copy: StridedCopy) -> LoweredOp {
    LoweredOp(outputs: [(shape, dtype)]) { ins, outs in
        let src = ins[0]!.buffer.raw, dst = outs[0].buffer.raw
        return { copy.run(src, dst) }
    }
}

/// An int64 output whose elements are known now.
func intsOutput(_ shape: [Int], _ values: [Int64]) -> LoweredOp {
    LoweredOp(outputs: [(shape, .int64)]) { _, outs in
        let dst = outs[0].ints
        return { values.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: values.count) } }
    }
}

/// The plan-time constant at input `i`, which must be present.
func requiredInts(_ i: Int, _ node: Node, _ inputs: [PlanValue?], _ what: String) throws -> [Int] {
    guard let v = try inputs.constantInts(i, node) else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs its \(what) input")
    }
    return v.map { Int(clamping: $0) }
}

/// Whether optional input `i` is present (a non-empty name and a value).
func hasInput(_ i: Int, _ inputs: [PlanValue?]) -> Bool { i < inputs.count && inputs[i] != nil }

// MARK: Contiguous reshapes

private func lowerReshape(_ node: Node, _ inputs: [PlanValue?], allowZero: Bool) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let target = try requiredInts(1, node, inputs, "shape")
    var shape = target
    var infer: Int?
    for (i, d) in target.enumerated() {
        if d == 0 && !allowZero {
            guard i < x.shape.count else {
                throw GraphError(node: node.name, "Reshape copies dim \(i) but input \(x.shape) has rank \(x.shape.count)")
            }
            shape[i] = x.shape[i]
        } else if d == -1 {
            guard infer == nil else { throw GraphError(node: node.name, "Reshape target \(target) has two -1") }
            infer = i
        } else if d < 0 {
            throw GraphError(node: node.name, "Reshape target \(target) has a negative dim")
        }
    }
    if let i = infer {
        let known = shape.enumerated().filter { $0.offset != i }.map(\.element).product
        guard known != 0, x.shape.product % known == 0 else {
            throw GraphError(node: node.name, "Reshape cannot infer -1 in \(target) for input \(x.shape)")
        }
        shape[i] = x.shape.product / known
    }
    guard shape.product == x.shape.product else {
        throw GraphError(node: node.name, "Reshape \(x.shape) to \(target): element counts differ")
    }
    return contiguousCopy(shape, x.dtype)
}

private func lowerFlatten(_ node: Node, _ inputs: [PlanValue?], axis: Int) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    let a = axis < 0 ? axis + r : axis
    guard a >= 0 && a <= r else { throw GraphError(node: node.name, "Flatten axis \(axis) out of range for rank \(r)") }
    return contiguousCopy([x.shape[..<a].reduce(1, *), x.shape[a...].reduce(1, *)], x.dtype)
}

private func lowerSqueeze(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    let axes: Set<Int>
    if hasInput(1, inputs) {
        axes = Set(try requiredInts(1, node, inputs, "axes").map { try normalizedAxis($0, rank: r, node) })
        for a in axes where x.shape[a] != 1 {
            throw GraphError(node: node.name, "Squeeze axis \(a) of \(x.shape) is not 1")
        }
    } else {
        axes = Set(x.shape.indices.filter { x.shape[$0] == 1 })
    }
    return contiguousCopy(x.shape.indices.filter { !axes.contains($0) }.map { x.shape[$0] }, x.dtype)
}

private func lowerUnsqueeze(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let raw = try requiredInts(1, node, inputs, "axes")
    let r = x.shape.count + raw.count
    let axes = try raw.map { try normalizedAxis($0, rank: r, node) }
    guard Set(axes).count == axes.count else { throw GraphError(node: node.name, "Unsqueeze axes \(raw) repeat") }
    var shape: [Int] = [], rest = x.shape.makeIterator()
    for i in 0..<r { shape.append(axes.contains(i) ? 1 : rest.next()!) }
    return contiguousCopy(shape, x.dtype)
}

// MARK: Strided views

private func lowerTranspose(_ node: Node, _ inputs: [PlanValue?], perm: [Int]?) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    let p = try (perm ?? Array((0..<r).reversed())).map { try normalizedAxis($0, rank: r, node) }
    guard p.count == r, Set(p).count == r else {
        throw GraphError(node: node.name, "Transpose perm \(perm ?? []) is not a permutation of rank \(r)")
    }
    return stridedOp(p.map { x.shape[$0] }, x.dtype,
                     .transpose(shape: x.shape, perm: p, elementSize: x.dtype.storageStride))
}

/// NumPy broadcast of two shapes, or nil when incompatible.
func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int]? {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        guard da == db || da == 1 || db == 1 else { return nil }
        out[i] = da == 1 ? db : da
    }
    return out
}

private func lowerExpand(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let target = try requiredInts(1, node, inputs, "shape")
    guard let shape = broadcastShapes(x.shape, target) else {
        throw GraphError(node: node.name, "Expand cannot broadcast \(x.shape) to \(target)")
    }
    return stridedOp(shape, x.dtype, .broadcast(shape: x.shape, to: shape, elementSize: x.dtype.storageStride))
}

private func lowerTile(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let repeats = try requiredInts(1, node, inputs, "repeats")
    guard repeats.count == x.shape.count, repeats.allSatisfy({ $0 >= 0 }) else {
        throw GraphError(node: node.name, "Tile repeats \(repeats) do not fit rank \(x.shape.count)")
    }
    let shape = zip(x.shape, repeats).map { $0 * $1 }
    return stridedOp(shape, x.dtype, .tile(shape: x.shape, repeats: repeats, elementSize: x.dtype.storageStride))
}

private func lowerDepthToSpace(_ node: Node, _ inputs: [PlanValue?], block b: Int, crd: Bool) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    guard x.shape.count == 4, b > 0, x.shape[1] % (b * b) == 0 else {
        throw GraphError(node: node.name, "DepthToSpace needs [N, C, H, W] with C divisible by \(b * b), got \(x.shape)")
    }
    let (n, c, h, w) = (x.shape[0], x.shape[1] / (b * b), x.shape[2], x.shape[3])
    let view = crd ? [n, c, b, b, h, w] : [n, b, b, c, h, w]
    let perm = crd ? [0, 1, 4, 2, 5, 3] : [0, 3, 4, 1, 5, 2]
    let copy = StridedCopy.transpose(shape: view, perm: perm, elementSize: x.dtype.storageStride)
    return stridedOp([n, c, h * b, w * b], x.dtype, copy)
}

private func lowerSpaceToDepth(_ node: Node, _ inputs: [PlanValue?], block b: Int) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    guard x.shape.count == 4, b > 0, x.shape[2] % b == 0, x.shape[3] % b == 0 else {
        throw GraphError(node: node.name, "SpaceToDepth needs [N, C, H, W] with H and W divisible by \(b), got \(x.shape)")
    }
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2] / b, x.shape[3] / b)
    let copy = StridedCopy.transpose(shape: [n, c, h, b, w, b], perm: [0, 3, 5, 1, 2, 4],
                                     elementSize: x.dtype.storageStride)
    return stridedOp([n, c * b * b, h, w], x.dtype, copy)
}

// MARK: Values from shapes

private func lowerShapeOf(_ node: Node, _ inputs: [PlanValue?], start: Int, end: Int?) throws -> LoweredOp {
    let x = try inputs.required(0, node)
    let r = x.shape.count
    func clampIndex(_ i: Int) -> Int { min(max(i < 0 ? i + r : i, 0), r) }
    let s = clampIndex(start), e = clampIndex(end ?? r)
    let dims = s < e ? x.shape[s..<e].map { Int64($0) } : []
    return intsOutput([dims.count], dims)
}

private func lowerConstantOfShape(_ node: Node, _ inputs: [PlanValue?], value: Tensor) throws -> LoweredOp {
    let shape = try requiredInts(0, node, inputs, "shape")
    guard shape.allSatisfy({ $0 >= 0 }) else {
        throw GraphError(node: node.name, "ConstantOfShape shape \(shape) has a negative dim")
    }
    let dtype = value.dtype
    let bits = value.count == 0 ? 0 : (dtype.isFloat ? UInt64(value.floats[0].bitPattern) : UInt64(bitPattern: value.ints[0]))
    return LoweredOp(outputs: [(shape, dtype)]) { _, outs in
        let out = outs[0], n = shape.product
        return {
            if dtype.isFloat { out.floats.update(repeating: Float(bitPattern: UInt32(bits)), count: n) }
            else { out.ints.update(repeating: Int64(bitPattern: bits), count: n) }
        }
    }
}

private func lowerRange(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    let start = try inputs.required(0, node)
    let values = try (0..<3).map { i -> Tensor in
        guard let t = try inputs.required(i, node).constant, t.count == 1 else {
            throw GraphError(node: node.name, "Range input \(i) must be a scalar known before the run")
        }
        return t
    }
    if start.dtype.isFloat {
        let (s, l, d) = (values[0].floats[0], values[1].floats[0], values[2].floats[0])
        guard d != 0 else { throw GraphError(node: node.name, "Range delta is 0") }
        let n = max(Int(((Double(l) - Double(s)) / Double(d)).rounded(.up)), 0)
        return LoweredOp(outputs: [([n], .float32)]) { _, outs in
            let dst = outs[0].floats
            return { for i in 0..<n { dst[i] = s + Float(i) * d } }
        }
    }
    let (s, l, d) = (values[0].ints[0], values[1].ints[0], values[2].ints[0])
    guard d != 0 else { throw GraphError(node: node.name, "Range delta is 0") }
    let span = l - s
    let n = max(Int(span / d + (span % d != 0 && (span > 0) == (d > 0) ? 1 : 0)), 0)
    return LoweredOp(outputs: [([n], start.dtype)]) { _, outs in
        let dst = outs[0].ints
        return { for i in 0..<n { dst[i] = s + Int64(i) * d } }
    }
}
