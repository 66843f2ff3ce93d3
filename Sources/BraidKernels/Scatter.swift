import BraidTensor

// Indexed writes and reads: ScatterND / GatherND (index tuples address slices) and
// ScatterElements (one index per element along an axis). Forward and backward side by side:
// the gradient of a scatter with respect to its data is the output gradient with the written
// places cleared, with respect to its updates the gather of the output gradient at the same
// places (reduction `none` only); a gather's gradient is a scatter-add.


@inline(__always)
private func combine<T: Numeric & Comparable>(_ old: T, _ new: T, _ c: ScatterCombine) -> T {
    switch c {
    case .replace: return new
    case .add: return old + new
    case .mul: return old * new
    case .max: return Swift.max(old, new)
    case .min: return Swift.min(old, new)
    }
}

/// Index tuples of length `depth` into the leading axes of `shape`, each addressing a slice of
/// `sliceSize` elements; `batch` leading axes shared by data and indices (GatherND's
/// `batch_dims`) repeat the whole lookup per batch entry.
///
/// Shapes: data `[B..., D_0..D_{depth-1}, S...]`, indices `[B..., I..., depth]`,
/// slices/updates `[B..., I..., S...]`.
public struct IndexedSlices: Sendable {
    public let dataShape: [Int]
    public let batch: Int
    public let depth: Int
    /// Tuples per batch entry.
    public let tuples: Int
    public let sliceSize: Int
    let batchCount: Int
    let batchStride: Int
    /// Element strides of the indexed axes.
    let axisStrides: [Int]

    public init(dataShape: [Int], indicesShape: [Int], batchDims: Int = 0) {
        self.dataShape = dataShape
        batch = batchDims
        depth = indicesShape.last ?? 0
        batchCount = dataShape[..<batchDims].reduce(1, *)
        tuples = indicesShape.dropLast().dropFirst(batchDims).reduce(1, *)
        sliceSize = dataShape[(batchDims + depth)...].reduce(1, *)
        batchStride = dataShape[batchDims...].reduce(1, *)
        let st = dataShape.strides
        axisStrides = Array(st[batchDims..<(batchDims + depth)])
    }

    /// Element offset of tuple `t` of batch entry `b` in the data, or nil when out of range.
    @inline(__always)
    func offset(_ indices: UnsafePointer<Int64>, batch b: Int, tuple t: Int) -> Int? {
        let base = (b * tuples + t) * depth
        var off = b * batchStride
        for k in 0..<depth {
            let dim = dataShape[batch + k]
            var i = Int(indices[base + k])
            if i < 0 { i += dim }
            guard i >= 0 && i < dim else { return nil }
            off += i * axisStrides[k]
        }
        return off
    }

    /// GatherND forward: `out[b, t, :] = data[b, indices[b, t], :]`; out-of-range tuples give
    /// zeros (the planner rejects constant ones).
    public func gather<T>(_ data: UnsafePointer<T>, _ indices: UnsafePointer<Int64>, _ out: UnsafeMutablePointer<T>) {
        let s = sliceSize
        for b in 0..<batchCount {
            for t in 0..<tuples {
                let dst = out + (b * tuples + t) * s
                if let off = offset(indices, batch: b, tuple: t) {
                    dst.update(from: data + off, count: s)
                } else {
                    dst.withMemoryRebound(to: UInt8.self, capacity: s * MemoryLayout<T>.stride) {
                        $0.update(repeating: 0, count: s * MemoryLayout<T>.stride)
                    }
                }
            }
        }
    }

    /// ScatterND forward on an output already holding a copy of the data: each update slice is
    /// combined into the place its tuple names, in tuple order.
    public func scatter<T: Numeric & Comparable>(_ updates: UnsafePointer<T>, _ indices: UnsafePointer<Int64>,
                                                 into out: UnsafeMutablePointer<T>, _ c: ScatterCombine) {
        let s = sliceSize
        for b in 0..<batchCount {
            for t in 0..<tuples {
                guard let off = offset(indices, batch: b, tuple: t) else { continue }
                let src = updates + (b * tuples + t) * s
                if c == .replace {
                    (out + off).update(from: src, count: s)
                } else {
                    for j in 0..<s { out[off + j] = combine(out[off + j], src[j], c) }
                }
            }
        }
    }

    /// ScatterND backward for the data (reduction `none`): `dData += dOut` except at the
    /// written places.
    public func scatterDataBackward(_ dOut: UnsafePointer<Float>, _ indices: UnsafePointer<Int64>,
                                    _ mask: UnsafeMutablePointer<Float>, _ dData: UnsafeMutablePointer<Float>) {
        let n = dataShape.reduce(1, *)
        mask.update(repeating: 1, count: n)
        let s = sliceSize
        for b in 0..<batchCount {
            for t in 0..<tuples {
                if let off = offset(indices, batch: b, tuple: t) { (mask + off).update(repeating: 0, count: s) }
            }
        }
        for i in 0..<n { dData[i] += dOut[i] * mask[i] }
    }

    /// Gradient of a gather (or of a scatter's updates): `dData[place] += dSlices[b, t]`.
    public func gatherBackward(_ dSlices: UnsafePointer<Float>, _ indices: UnsafePointer<Int64>,
                               _ dData: UnsafeMutablePointer<Float>) {
        forEachPlacedSlice(indices) { slice, off in
            let src = dSlices + slice
            for j in 0..<sliceSize { dData[off + j] += src[j] }
        }
    }

    /// Gradient of a scatter's updates (reduction `none`): `dUpdates[b, t] += dOut[place]`.
    public func scatterUpdatesBackward(_ dOut: UnsafePointer<Float>, _ indices: UnsafePointer<Int64>,
                                       _ dUpdates: UnsafeMutablePointer<Float>) {
        forEachPlacedSlice(indices) { slice, off in
            let dst = dUpdates + slice
            for j in 0..<sliceSize { dst[j] += dOut[off + j] }
        }
    }

    /// Calls `body` with the offset of every slice `[b, t]` (in a `[batch, tuples, slice]`
    /// array) whose index tuple is in range, and the data offset that tuple names.
    @inline(__always)
    private func forEachPlacedSlice(_ indices: UnsafePointer<Int64>, _ body: (_ slice: Int, _ offset: Int) -> Void) {
        for b in 0..<batchCount {
            for t in 0..<tuples {
                guard let off = offset(indices, batch: b, tuple: t) else { continue }
                body((b * tuples + t) * sliceSize, off)
            }
        }
    }
}

/// ONNX ScatterElements: for every element `e` of `indices` (shape `indexShape`, equal to the
/// updates' shape), `out[e with its axis coordinate replaced by indices[e]] op= updates[e]`.
/// The output holds a copy of the data beforehand. Out-of-range indices are skipped.
public struct ElementScatter: Sendable {
    public let shape: [Int]
    public let indexShape: [Int]
    public let axis: Int
    let strides: [Int]

    public init(shape: [Int], indexShape: [Int], axis: Int) {
        self.shape = shape; self.indexShape = indexShape; self.axis = axis
        strides = shape.strides
    }

    public func run<T: Numeric & Comparable>(_ updates: UnsafePointer<T>, _ indices: UnsafePointer<Int64>,
                                             into out: UnsafeMutablePointer<T>, _ c: ScatterCombine) {
        forEachAxisIndex(shape: shape, strides: strides, indexShape: indexShape, axis: axis, indices) { e, o in
            if let o { out[o] = combine(out[o], updates[e], c) }
        }
    }
}
