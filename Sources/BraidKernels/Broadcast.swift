import BraidTensor
import Dispatch

/// The NumPy broadcast of several shapes: shapes are right-aligned and each dimension must be
/// equal or 1. Returns nil when they do not broadcast.
public func broadcastShapes(_ shapes: [[Int]]) -> [Int]? {
    let rank = shapes.map(\.count).max() ?? 0
    var out = [Int](repeating: 1, count: rank)
    for s in shapes {
        let pad = rank - s.count
        for (i, d) in s.enumerated() {
            let o = out[pad + i]
            if d == o || d == 1 { continue }
            if o == 1 { out[pad + i] = d } else { return nil }
        }
    }
    return out
}

/// The geometry of up to four inputs read in broadcast against one contiguous output.
///
/// Built once per plan. Adjacent output dimensions that every input treats alike (all of them
/// either walk or repeat) are merged, so the walk is a few outer "rows" with one inner run:
/// `[N, C, H, W] + [1, C, 1, 1]` becomes rows `[N, C]` with an inner run of `H * W` over which
/// the second input is a scalar. Each input's inner run is then either contiguous or a
/// repeated scalar, which keeps the inner loops tight.
public struct BroadcastLayout: Sendable {
    /// Output shape.
    public let shape: [Int]
    /// Output element count.
    public let count: Int
    /// Merged outer dimensions (empty when there is a single run).
    let outer: [Int]
    /// Per input, its element stride along each merged outer dimension.
    let outerStrides: [SIMD4<Int>]
    /// Length of the inner run.
    let inner: Int
    /// Per input lane: 1 when the input walks the inner run, 0 when it repeats one element.
    let innerStep: SIMD4<Int>
    let inputCount: Int

    /// Multidirectional (NumPy) broadcast of `inputs`; nil when they are incompatible.
    public init?(inputs: [[Int]]) {
        guard let out = broadcastShapes(inputs) else { return nil }
        self.init(inputs: inputs, output: out)
    }

    /// Each input broadcast to `output` (unidirectional); nil when an input does not fit.
    public init?(inputs: [[Int]], output: [Int]) {
        precondition(inputs.count <= 4, "BroadcastLayout supports up to four inputs")
        let rank = output.count
        var full = [[Int]]()
        for s in inputs {
            guard s.count <= rank else { return nil }
            var strides = [Int](repeating: 0, count: rank)
            let pad = rank - s.count
            var acc = 1
            for i in stride(from: s.count - 1, through: 0, by: -1) {
                let d = s[i]
                guard d == output[pad + i] || d == 1 else { return nil }
                strides[pad + i] = d == 1 ? 0 : acc
                acc *= d
            }
            full.append(strides)
        }
        // Merge dimensions from the innermost outwards; size-1 output dims vanish.
        var dims = [Int]()
        var dimStrides = [[Int]]()
        for i in stride(from: rank - 1, through: 0, by: -1) where output[i] != 1 {
            let st = full.map { $0[i] }
            if let last = dims.last, let lastSt = dimStrides.last,
               zip(st, lastSt).allSatisfy({ s, ls in s == ls * last || (s == 0 && ls == 0) }) {
                dims[dims.count - 1] = last * output[i]
                continue
            }
            dims.append(output[i])
            dimStrides.append(st)
        }
        shape = output
        count = output.product
        inputCount = inputs.count
        if dims.isEmpty {
            inner = 1
            innerStep = SIMD4(repeating: 1)
            outer = []
            outerStrides = []
            return
        }
        inner = dims[0]
        var step = SIMD4<Int>(repeating: 1)
        for k in 0..<inputs.count where dimStrides[0][k] == 0 { step[k] = 0 }
        innerStep = step
        outer = Array(dims.dropFirst().reversed())
        outerStrides = dimStrides.dropFirst().reversed().map { st in
            var v = SIMD4<Int>(repeating: 0)
            for k in 0..<st.count { v[k] = st[k] }
            return v
        }
    }

    /// True when every input is read contiguously with the output's own layout.
    public var isElementwise: Bool {
        outer.isEmpty && innerStep == SIMD4(repeating: 1)
    }

    /// Calls `body(offsets, outOffset, length)` for each run inside output elements
    /// `[lo, hi)`. `offsets` holds each input's element offset at the start of the run; an
    /// input whose `innerStep` lane is 0 repeats the element at its offset for the whole run.
    @inline(__always)
    func walk(_ lo: Int, _ hi: Int, _ body: (SIMD4<Int>, Int, Int) -> Void) {
        if lo >= hi { return }
        if outer.isEmpty {
            body(innerStep &* lo, lo, hi - lo)
            return
        }
        let r = outer.count
        withUnsafeTemporaryAllocation(of: Int.self, capacity: r) { idx in
            var row = lo / inner
            var col = lo - row * inner
            var base = SIMD4<Int>(repeating: 0)
            var rem = row
            for d in stride(from: r - 1, through: 0, by: -1) {
                let i = rem % outer[d]
                rem /= outer[d]
                idx[d] = i
                base &+= outerStrides[d] &* i
            }
            var pos = lo
            while pos < hi {
                let len = Swift.min(inner - col, hi - pos)
                body(base &+ innerStep &* col, pos, len)
                pos += len
                col = 0
                row += 1
                var d = r - 1
                while d >= 0 {
                    idx[d] += 1
                    base &+= outerStrides[d]
                    if idx[d] < outer[d] { break }
                    base &-= outerStrides[d] &* idx[d]
                    idx[d] = 0
                    d -= 1
                }
            }
        }
    }
}

/// Splits `[0, count)` into a few chunks and runs them on the kernels' threads
/// (`KernelThreads.count`, through the spinning pool) when the work is large enough to pay
/// for the hand-off; small work runs inline.
@inline(__always)
func elementwiseChunks(_ count: Int, grain: Int = 1 << 15, _ body: (Int, Int) -> Void) {
    let chunks = Swift.min(NNParallel.workers, count / grain)
    if chunks <= 1 {
        body(0, count)
        return
    }
    let per = (count + chunks - 1) / chunks
    NNParallel.run(chunks) { c in body(c * per, Swift.min(count, (c + 1) * per)) }
}

/// The backward of a broadcast: sums a gradient of the broadcast `outputShape` back to an
/// operand's `inputShape` (right-aligned, each dim 1 or equal), adding into the operand's
/// gradient. Every broadcasting backward rule reduces through this one type.
public struct BroadcastGradient: Sendable {
    public let inputShape: [Int]
    public let outputShape: [Int]
    /// Reduction over the axes the operand repeats; nil when it repeats none.
    let reduction: ReduceLayout?
    let count: Int

    /// Nil when `inputShape` does not broadcast to `outputShape`.
    public init?(inputShape: [Int], outputShape: [Int]) {
        let lead = outputShape.count - inputShape.count
        guard lead >= 0 else { return nil }
        var axes: [Int] = []
        for (i, d) in outputShape.enumerated() {
            let s = i < lead ? 1 : inputShape[i - lead]
            guard s == d || s == 1 else { return nil }
            if s == 1 && d != 1 { axes.append(i) }
        }
        self.inputShape = inputShape
        self.outputShape = outputShape
        count = outputShape.product
        reduction = axes.isEmpty ? nil : ReduceLayout(shape: outputShape, axes: axes)
    }

    /// True when the operand is not broadcast, so its gradient is the output's as it is.
    public var isIdentity: Bool { reduction == nil }

    /// `gx += reduce_sum(g)`: `g` holds `outputShape`, `gx` holds `inputShape`.
    public func accumulate(_ g: UnsafePointer<Float>, into gx: UnsafeMutablePointer<Float>) {
        if let reduction {
            Elementwise.reduceSumAdding(reduction, g, gx)
        } else {
            Elementwise.add(g, into: gx, count: count)
        }
    }
}
