import Foundation

/// Number of worker threads the data-movement kernels split large copies over
/// (`KernelThreads.count`).
let dataMovementWorkers = NNParallel.workers

/// Element counts below this are copied on the calling thread.
let parallelCopyThreshold = 1 << 16

/// Runs `body(chunk)` for `chunks` chunks, in parallel when there is more than one.
@inline(__always)
func forEachChunk(_ chunks: Int, _ body: (Int) -> Void) {
    if chunks <= 1 { body(0); return }
    if SpinPool.shared.run(chunks, body) { return }
    // The chunks write disjoint ranges of raw buffers; raw pointers are not Sendable, so the
    // closure is passed on as @Sendable by hand.
    withoutActuallyEscaping(body) { escapable in
        let work = unsafeBitCast(escapable, to: (@Sendable (Int) -> Void).self)
        DispatchQueue.concurrentPerform(iterations: chunks, execute: work)
    }
}

/// Splits `total` items into `chunks` contiguous ranges; returns range `i`.
@inline(__always)
func chunkRange(_ i: Int, of chunks: Int, total: Int) -> Range<Int> {
    let lo = total * i / chunks, hi = total * (i + 1) / chunks
    return lo..<hi
}

/// Copies `byteCount` bytes; the contiguous ops (reshape, flatten, squeeze, unsqueeze, identity).
public func copyContiguous(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, byteCount: Int) {
    if byteCount > 0 { dst.copyMemory(from: src, byteCount: byteCount) }
}

/// A copy from a strided view of a source buffer into a contiguous destination.
///
/// The view has `shape` and per-axis source `strides` in elements (0 broadcasts, negative
/// walks backwards) starting at element `offset`. It expresses transpose, slice, expand, tile,
/// depth-to-space and space-to-depth. Axes of size 1 are dropped and axes that are contiguous
/// with their neighbour are merged once at construction, so `run` walks the fewest loops: a
/// `memcpy` per run when the innermost source stride is 1, a blocked 2-D transpose when the
/// second-innermost one is.
public struct StridedCopy: Sendable {
    public let shape: [Int]
    public let strides: [Int]
    public let offset: Int
    public let elementSize: Int
    public let count: Int

    public init(shape: [Int], strides: [Int], offset: Int = 0, elementSize: Int) {
        precondition(shape.count == strides.count, "strided copy: shape and strides differ in rank")
        precondition(elementSize == 4 || elementSize == 8, "strided copy: element size \(elementSize)")
        self.offset = offset
        self.elementSize = elementSize
        count = shape.reduce(1, *)
        var s: [Int] = [], st: [Int] = []
        for (d, k) in zip(shape, strides) where d != 1 {
            if let last = s.last, st[st.count - 1] == k * d {
                s[s.count - 1] = last * d
                st[st.count - 1] = k
            } else {
                s.append(d); st.append(k)
            }
        }
        if s.isEmpty { s = [1]; st = [1] }
        self.shape = s
        self.strides = st
    }

    /// Copies the view of `src` into `dst`, which holds `count` elements.
    public func run(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) {
        if count == 0 { return }
        if elementSize == 4 {
            runTyped(src.assumingMemoryBound(to: UInt32.self), dst.assumingMemoryBound(to: UInt32.self))
        } else {
            runTyped(src.assumingMemoryBound(to: UInt64.self), dst.assumingMemoryBound(to: UInt64.self))
        }
    }

    @inline(__always)
    private func runTyped<T>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>) {
        let r = shape.count
        let inner = shape[r - 1], innerStride = strides[r - 1]
        if r == 1 && innerStride == 1 {
            (dst).update(from: src + offset, count: inner)
            return
        }
        if r >= 2 && strides[r - 2] == 1 && innerStride != 0 {
            runTransposed(src, dst)
            return
        }
        forEachRowChunked(parallel: true) { row, base in
            let s = src + base, out = dst + row * inner
            if innerStride == 1 {
                out.update(from: s, count: inner)
            } else if innerStride == 0 {
                out.update(repeating: s.pointee, count: inner)
            } else {
                for j in 0..<inner { out[j] = s[j * innerStride] }
            }
        }
    }

    /// Visits every row of the view (all axes but the last) as `forEachRow` does, split into
    /// chunks over the pool when `parallel` and the view is large, calling `body` with the
    /// row's index in the dense order and the source offset of its first element.
    @inline(__always)
    fileprivate func forEachRowChunked(parallel: Bool, _ body: (_ row: Int, _ base: Int) -> Void) {
        let outer = count / shape[shape.count - 1]
        let chunks = parallel && count >= parallelCopyThreshold ? min(outer, dataMovementWorkers * 4) : 1
        forEachChunk(chunks) { c in
            let range = chunkRange(c, of: chunks, total: outer)
            if range.isEmpty { return }
            var row = range.lowerBound
            forEachRow(range) { base in
                body(row, base)
                row += 1
            }
        }
    }

    /// Visits rows `range` of the view (all axes but the last) in order, calling `body` with
    /// the source offset of each row's first element.
    @inline(__always)
    fileprivate func forEachRow(_ range: Range<Int>, _ body: (Int) -> Void) {
        let r = shape.count
        let shape = self.shape, strides = self.strides
        withUnsafeTemporaryAllocation(of: Int.self, capacity: r) { idx in
            var rem = range.lowerBound, base = offset
            for d in stride(from: r - 2, through: 0, by: -1) {
                idx[d] = rem % shape[d]; rem /= shape[d]
                base += idx[d] * strides[d]
            }
            for _ in range {
                body(base)
                var d = r - 2
                while d >= 0 {
                    idx[d] += 1; base += strides[d]
                    if idx[d] < shape[d] { break }
                    base -= idx[d] * strides[d]; idx[d] = 0
                    d -= 1
                }
            }
        }
    }

    /// The last two axes read the source transposed: tile them so both sides stay in cache.
    @inline(__always)
    private func runTransposed<T>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>) {
        let r = shape.count, tile = 32
        let rows = shape[r - 2], cols = shape[r - 1], colStride = strides[r - 1]
        let rowTiles = (rows + tile - 1) / tile
        let outer = count / (rows * cols)
        let items = outer * rowTiles
        let chunks = count >= parallelCopyThreshold ? min(items, dataMovementWorkers * 4) : 1
        let shape = self.shape, strides = self.strides, offset = self.offset
        forEachChunk(chunks) { c in
            for item in chunkRange(c, of: chunks, total: items) {
                let o = item / rowTiles, i0 = (item % rowTiles) * tile
                var rem = o, base = offset
                for d in stride(from: r - 3, through: 0, by: -1) {
                    base += (rem % shape[d]) * strides[d]; rem /= shape[d]
                }
                let i1 = min(i0 + tile, rows)
                let out = dst + o * rows * cols
                var j0 = 0
                while j0 < cols {
                    let j1 = min(j0 + tile, cols)
                    for i in i0..<i1 {
                        let s = src + base + i
                        let d = out + i * cols
                        for j in j0..<j1 { d[j] = s[j * colStride] }
                    }
                    j0 = j1
                }
            }
        }
    }
}

extension StridedCopy {
    /// Backward of `run` for float32: `gx[view element] += g[i]`, `g` holding the `count`
    /// elements of the view in order and `gx` the source. Views that read an element more than
    /// once (broadcast strides of 0) add every read.
    public func accumulateAdjoint(_ g: UnsafePointer<Float>, into gx: UnsafeMutablePointer<Float>) {
        if count == 0 { return }
        let r = shape.count
        let inner = shape[r - 1], innerStride = strides[r - 1]
        // Rows write disjoint source elements unless some stride repeats them.
        forEachRowChunked(parallel: !strides.contains(0)) { row, base in
            let d = gx + base, src = g + row * inner
            if innerStride == 1 {
                for j in 0..<inner { d[j] += src[j] }
            } else {
                for j in 0..<inner { d[j * innerStride] += src[j] }
            }
        }
    }
}

/// Backward of Tile: sums each tile of a gradient `[d0 * r0, d1 * r1, ...]` back onto
/// `[d0, d1, ...]`, adding into the input's gradient.
public struct TileGradient: Sendable {
    let reduction: ReduceLayout

    public init(shape: [Int], repeats: [Int]) {
        var view: [Int] = []
        for i in shape.indices { view += [repeats[i], shape[i]] }
        reduction = ReduceLayout(shape: view, axes: shape.indices.map { 2 * $0 })
    }

    public func accumulate(_ g: UnsafePointer<Float>, into gx: UnsafeMutablePointer<Float>) {
        Elementwise.reduceSumAdding(reduction, g, gx)
    }
}

extension StridedCopy {
    /// The permutation `perm` of a row-major tensor of `shape`: output axis i is input axis
    /// `perm[i]`.
    public static func transpose(shape: [Int], perm: [Int], elementSize: Int) -> StridedCopy {
        let st = shape.strides
        return StridedCopy(shape: perm.map { shape[$0] }, strides: perm.map { st[$0] },
                           elementSize: elementSize)
    }

    /// Broadcasts `shape` (right-aligned) to `outShape`; input dims must be 1 or equal.
    public static func broadcast(shape: [Int], to outShape: [Int], elementSize: Int) -> StridedCopy {
        let st = shape.strides, lead = outShape.count - shape.count
        let strides = outShape.indices.map { i -> Int in
            let a = i - lead
            return a < 0 || shape[a] == 1 ? 0 : st[a]
        }
        return StridedCopy(shape: outShape, strides: strides, elementSize: elementSize)
    }

    /// Repeats a tensor of `shape` `repeats[i]` times along each axis: the view
    /// `[r0, d0, r1, d1, ...]` with stride 0 on every repeat axis is the tiled output in order.
    public static func tile(shape: [Int], repeats: [Int], elementSize: Int) -> StridedCopy {
        let st = shape.strides
        var s: [Int] = [], k: [Int] = []
        for i in shape.indices { s += [repeats[i], shape[i]]; k += [0, st[i]] }
        return StridedCopy(shape: s, strides: k, elementSize: elementSize)
    }
}

/// Concatenation along one axis of row-major tensors: for each of `outer` rows, each input
/// contributes one contiguous run of `runBytes[i]` bytes.
public struct ConcatCopy: Sendable {
    public let outer: Int
    public let runBytes: [Int]
    let rowBytes: Int

    /// `axisSizes[i] * inner` elements of input i sit side by side in each output row.
    public init(outer: Int, inner: Int, axisSizes: [Int], elementSize: Int) {
        self.outer = outer
        runBytes = axisSizes.map { $0 * inner * elementSize }
        rowBytes = runBytes.reduce(0, +)
    }

    /// Copies the inputs, one pointer per entry of `axisSizes`, into `dst`. The output's bytes
    /// are cut into equal ranges over the cores whatever `outer` is (a channel concatenation of
    /// one image has `outer` 1).
    public func run(_ sources: [UnsafeRawPointer], _ dst: UnsafeMutableRawPointer) {
        let total = outer * rowBytes
        let chunks = total >= parallelCopyThreshold * 4 ? dataMovementWorkers : 1
        forEachChunk(chunks) { c in
            let range = chunkRange(c, of: chunks, total: total)
            guard !range.isEmpty else { return }
            var o = range.lowerBound / rowBytes
            var at = o * rowBytes
            while at < range.upperBound {
                for (i, src) in sources.enumerated() {
                    let n = runBytes[i]
                    let lo = max(at, range.lowerBound), hi = min(at + n, range.upperBound)
                    if hi > lo { (dst + lo).copyMemory(from: src + o * n + (lo - at), byteCount: hi - lo) }
                    at += n
                }
                o += 1
            }
        }
    }
}

extension ConcatCopy {
    /// Backward for float32: `grads[i] += input i's part of g`; nil entries are skipped.
    public func accumulateAdjoint(_ g: UnsafePointer<Float>, into grads: [UnsafeMutablePointer<Float>?]) {
        let rowElements = rowBytes / 4
        var start = 0
        for (i, n) in runBytes.enumerated() {
            let run = n / 4
            if let gx = grads[i] {
                let first = start
                let chunks = outer * run >= parallelCopyThreshold ? min(outer, dataMovementWorkers * 4) : 1
                forEachChunk(chunks) { c in
                    for o in chunkRange(c, of: chunks, total: outer) {
                        let s = g + o * rowElements + first, d = gx + o * run
                        for j in 0..<run { d[j] += s[j] }
                    }
                }
            }
            start += run
        }
    }
}

/// A copy that reads its source at positions an int64 index tensor gives, for 4- and 8-byte
/// elements (the bits are moved, never interpreted).
public protocol IndexedCopy: Sendable {
    var elementSize: Int { get }
    func runTyped<T: FixedWidthInteger>(_ src: UnsafePointer<T>, _ indices: UnsafePointer<Int64>,
                                        _ dst: UnsafeMutablePointer<T>)
}

extension IndexedCopy {
    public func run(_ src: UnsafeRawPointer, _ indices: UnsafePointer<Int64>, _ dst: UnsafeMutableRawPointer) {
        if elementSize == 4 {
            runTyped(src.assumingMemoryBound(to: UInt32.self), indices, dst.assumingMemoryBound(to: UInt32.self))
        } else {
            runTyped(src.assumingMemoryBound(to: UInt64.self), indices, dst.assumingMemoryBound(to: UInt64.self))
        }
    }
}

/// Gather of whole slices along one axis: x viewed as `[outer, axisSize, inner]`, indices
/// (any shape, `indexCount` entries, negative counts from the end) give an output
/// `[outer, indexCount, inner]`. An index outside `[-axisSize, axisSize)` yields zeros
/// (the run closure cannot throw; the lowering checks plan-time indices).
public struct GatherCopy: IndexedCopy {
    public let outer, axisSize, inner, indexCount, elementSize: Int

    public init(outer: Int, axisSize: Int, inner: Int, indexCount: Int, elementSize: Int) {
        self.outer = outer; self.axisSize = axisSize; self.inner = inner
        self.indexCount = indexCount; self.elementSize = elementSize
    }

    @inline(__always)
    public func runTyped<T: FixedWidthInteger>(_ src: UnsafePointer<T>, _ indices: UnsafePointer<Int64>,
                                               _ dst: UnsafeMutablePointer<T>) {
        let total = outer * indexCount * inner
        let chunks = total >= parallelCopyThreshold ? min(outer * indexCount, dataMovementWorkers * 4) : 1
        let (axisSize, inner, indexCount) = (self.axisSize, self.inner, self.indexCount)
        forEachChunk(chunks) { c in
            for item in chunkRange(c, of: chunks, total: outer * indexCount) {
                let o = item / indexCount, k = item % indexCount
                var i = Int(indices[k])
                if i < 0 { i += axisSize }
                let out = dst + item * inner
                if i < 0 || i >= axisSize {
                    out.update(repeating: 0, count: inner)
                } else if inner == 1 {
                    out.pointee = src[o * axisSize + i]
                } else {
                    out.update(from: src + (o * axisSize + i) * inner, count: inner)
                }
            }
        }
    }
}

extension GatherCopy {
    /// Backward for float32: scatter-adds `g` (`[outer, indexCount, inner]`) into `gx`
    /// (`[outer, axisSize, inner]`); repeated indices add up, out-of-range ones are skipped.
    public func accumulateAdjoint(_ g: UnsafePointer<Float>, _ indices: UnsafePointer<Int64>,
                                  into gx: UnsafeMutablePointer<Float>) {
        // Chunks over `outer` write disjoint rows even when indices repeat.
        let chunks = outer * indexCount * inner >= parallelCopyThreshold ? min(outer, dataMovementWorkers * 4) : 1
        let (axisSize, inner, indexCount) = (self.axisSize, self.inner, self.indexCount)
        forEachChunk(chunks) { c in
            for o in chunkRange(c, of: chunks, total: outer) {
                for k in 0..<indexCount {
                    var i = Int(indices[k])
                    if i < 0 { i += axisSize }
                    if i < 0 || i >= axisSize { continue }
                    let s = g + (o * indexCount + k) * inner, d = gx + (o * axisSize + i) * inner
                    for j in 0..<inner { d[j] += s[j] }
                }
            }
        }
    }
}

/// ONNX GatherElements: `out[i...] = x[i... with axis coordinate replaced by indices[i...]]`.
/// `indexShape` may be smaller than `shape` on any axis; out-of-range indices yield zeros.
public struct GatherElementsCopy: IndexedCopy {
    public let shape: [Int]
    public let indexShape: [Int]
    public let axis: Int
    public let elementSize: Int

    /// Row-major strides of `shape`, computed once so runs do not allocate.
    let strides: [Int]

    public init(shape: [Int], indexShape: [Int], axis: Int, elementSize: Int) {
        self.shape = shape; self.indexShape = indexShape; self.axis = axis; self.elementSize = elementSize
        strides = shape.strides
    }

    @inline(__always)
    public func runTyped<T: FixedWidthInteger>(_ src: UnsafePointer<T>, _ indices: UnsafePointer<Int64>,
                                               _ dst: UnsafeMutablePointer<T>) {
        forEachAxisIndex(shape: shape, strides: strides, indexShape: indexShape, axis: axis, indices) { e, o in
            dst[e] = o.map { src[$0] } ?? 0
        }
    }
}

extension GatherElementsCopy {
    /// Backward for float32: scatter-adds `g` (the index shape) into `gx` (the data shape).
    public func accumulateAdjoint(_ g: UnsafePointer<Float>, _ indices: UnsafePointer<Int64>,
                                  into gx: UnsafeMutablePointer<Float>) {
        forEachAxisIndex(shape: shape, strides: strides, indexShape: indexShape, axis: axis, indices) { e, o in
            if let o { gx[o] += g[e] }
        }
    }
}

/// Walks the elements of an index tensor `indexShape` that picks along `axis` of data
/// `shape` (GatherElements, ScatterElements): `body(e, offset)` for every element `e` in
/// order, `offset` the data element its index names (negative indices count from the end),
/// nil when the index is outside the axis.
@inline(__always)
func forEachAxisIndex(shape: [Int], strides: [Int], indexShape: [Int], axis: Int, _ indices: UnsafePointer<Int64>,
                      _ body: (Int, Int?) -> Void) {
    let r = indexShape.count
    let total = indexShape.reduce(1, *)
    if total == 0 { return }
    let axisSize = shape[axis], axisStride = strides[axis]
    withUnsafeTemporaryAllocation(of: Int.self, capacity: r) { idx in
        idx.initialize(repeating: 0)
        var base = 0
        for e in 0..<total {
            var i = Int(indices[e])
            if i < 0 { i += axisSize }
            body(e, i >= 0 && i < axisSize ? base + i * axisStride : nil)
            var d = r - 1
            while d >= 0 {
                idx[d] += 1
                if d != axis { base += strides[d] }
                if idx[d] < indexShape[d] { break }
                if d != axis { base -= idx[d] * strides[d] }
                idx[d] = 0
                d -= 1
            }
        }
    }
}

/// A copy where each output coordinate maps, axis by axis, to an input coordinate or to a
/// fill value: constant/reflect/edge/wrap padding and nearest-neighbour resizing.
///
/// `maps[a][o]` is the input index on axis `a` for output index `o`, or -1 for the fill.
/// The longest stretch of the innermost map that walks the input one step at a time is
/// copied with `memcpy`.
public struct AxisMapCopy: Sendable {
    public let inShape: [Int]
    public let maps: [[Int]]
    public let elementSize: Int
    let outShape: [Int]
    let runStart: Int, runLength: Int
    let inStrides: [Int]

    public init(inShape: [Int], maps: [[Int]], elementSize: Int) {
        precondition(inShape.count == maps.count && !maps.isEmpty, "axis map copy: one map per axis")
        self.inShape = inShape; self.maps = maps; self.elementSize = elementSize
        outShape = maps.map(\.count)
        inStrides = inShape.strides
        let m = maps[maps.count - 1]
        var best = (0, 0), o = 0
        while o < m.count {
            var e = o + 1
            if m[o] >= 0 { while e < m.count && m[e] == m[e - 1] + 1 { e += 1 } }
            if m[o] >= 0 && e - o > best.1 { best = (o, e - o) }
            o = e
        }
        (runStart, runLength) = best
    }

    /// Fills `dst` (the output shape) from `src`; `fillBits` is the fill value's bit pattern
    /// (a `Float`'s for 4-byte elements, an `Int64`'s for 8-byte ones).
    public func run(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, fillBits: UInt64) {
        if elementSize == 4 {
            runTyped(src.assumingMemoryBound(to: UInt32.self), dst.assumingMemoryBound(to: UInt32.self),
                     UInt32(truncatingIfNeeded: fillBits))
        } else {
            runTyped(src.assumingMemoryBound(to: UInt64.self), dst.assumingMemoryBound(to: UInt64.self), fillBits)
        }
    }

    @inline(__always)
    private func runTyped<T>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>, _ fill: T) {
        let r = outShape.count
        let inner = outShape[r - 1]
        let total = outShape.reduce(1, *)
        if total == 0 { return }
        let outer = total / inner
        let chunks = total >= parallelCopyThreshold ? min(outer, dataMovementWorkers * 4) : 1
        let (runStart, runLength, innerMap) = (self.runStart, self.runLength, maps[r - 1])
        forEachChunk(chunks) { c in
            let range = chunkRange(c, of: chunks, total: outer)
            if range.isEmpty { return }
            forEachOuterRow(range) { row, base in
                let out = dst + row * inner
                guard let base else {
                    out.update(repeating: fill, count: inner)
                    return
                }
                let s = src + base
                for o in 0..<runStart { let m = innerMap[o]; out[o] = m < 0 ? fill : s[m] }
                if runLength > 0 { (out + runStart).update(from: s + innerMap[runStart], count: runLength) }
                for o in (runStart + runLength)..<inner { let m = innerMap[o]; out[o] = m < 0 ? fill : s[m] }
            }
        }
    }

    /// Visits output rows `range` (all axes but the last) in order, calling `body` with the
    /// row's index and the source offset its inner map reads from, or nil when an outer axis
    /// maps the row to the fill value.
    @inline(__always)
    fileprivate func forEachOuterRow(_ range: Range<Int>, _ body: (_ row: Int, _ base: Int?) -> Void) {
        let r = outShape.count
        let (maps, outShape, inStrides) = (self.maps, self.outShape, self.inStrides)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: r) { idx in
            var rem = range.lowerBound
            for d in stride(from: r - 2, through: 0, by: -1) { idx[d] = rem % outShape[d]; rem /= outShape[d] }
            for row in range {
                var base = 0, filled = false
                for d in 0..<(r - 1) {
                    let m = maps[d][idx[d]]
                    if m < 0 { filled = true; break }
                    base += m * inStrides[d]
                }
                body(row, filled ? nil : base)
                var d = r - 2
                while d >= 0 {
                    idx[d] += 1
                    if idx[d] < outShape[d] { break }
                    idx[d] = 0; d -= 1
                }
            }
        }
    }
}

extension AxisMapCopy {
    /// Backward for float32: `gx[map(o)] += g[o]` for every output element not filled.
    /// Several outputs reading one input (edge/reflect padding, nearest upsampling) add up.
    public func accumulateAdjoint(_ g: UnsafePointer<Float>, into gx: UnsafeMutablePointer<Float>) {
        let r = outShape.count
        let inner = outShape[r - 1]
        let total = outShape.reduce(1, *)
        if total == 0 { return }
        let innerMap = maps[r - 1]
        forEachOuterRow(0..<(total / inner)) { row, base in
            guard let base else { return }
            let d = gx + base, src = g + row * inner
            for o in 0..<inner where innerMap[o] >= 0 { d[innerMap[o]] += src[o] }
        }
    }
}

/// The bit pattern of a fill value as `AxisMapCopy.run` takes it.
public func fillBits(_ value: Double, float: Bool) -> UInt64 {
    if float { return UInt64(Float(value).bitPattern) }
    let clamped = value.isNaN ? 0 : min(max(value, -9.2e18), 9.2e18)
    return UInt64(bitPattern: Int64(clamped))
}
