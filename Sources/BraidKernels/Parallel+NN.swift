import Dispatch
import Foundation

/// How many threads Braid's kernels use: `BRAID_THREADS` when it holds a whole number from 1 on
/// (so a benchmark can give Braid exactly the threads its peer has, on any machine), else one
/// per core this process may run on. Read once, before the first kernel runs.
public enum KernelThreads {
    /// The thread count in use.
    public static let count: Int = parse(ProcessInfo.processInfo.environment["BRAID_THREADS"] ?? "")
        ?? max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// The count a `BRAID_THREADS` value asks for, or nil when it is not a whole number from 1 on.
    public static func parse(_ value: String) -> Int? {
        guard let n = Int(value.trimmingCharacters(in: .whitespaces)), n >= 1 else { return nil }
        return n
    }
}

/// The NN kernels' thread fan-out over raw-pointer work: the spinning `SpinPool`, or
/// `DispatchQueue.concurrentPerform` when the pool is busy.
enum NNParallel {
    /// Threads the kernels fan out over: `KernelThreads.count`.
    static let workers = KernelThreads.count

    /// OpenBLAS's thread count when the NN kernels first ran, restored after batch-parallel work.
    static let blasDefaultThreads = blasThreads()

    /// Calls `body(i)` for `i` in `0..<count`, concurrently when `count > 1`. The body may
    /// capture raw pointers: callers guarantee that iterations write disjoint memory.
    static func run(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 {
            if count == 1 { body(0) }
            return
        }
        if SpinPool.shared.run(count, body) { return }
        withoutActuallyEscaping(body) { escaping in
            let box = Unchecked(body: escaping)
            DispatchQueue.concurrentPerform(iterations: count) { box.body($0) }
        }
    }

    private struct Unchecked: @unchecked Sendable {
        let body: (Int) -> Void
    }
}

/// The lane-wise sums of the first `count` floats in whole vectors of `V`, and how many
/// floats those vectors covered (the rest is the caller's tail).
@inline(__always)
func laneSums<V: SIMD>(_ p: UnsafePointer<Float>, _ count: Int, _: V.Type) -> (V, Int) where V.Scalar == Float {
    var acc = V()
    var i = 0
    let raw = UnsafeRawPointer(p)
    while i + V.scalarCount <= count {
        acc += raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
        i += V.scalarCount
    }
    return (acc, i)
}

/// Small vector helpers shared by the NN kernels.
enum NNVec {
    /// Sum of `count` floats with eight running lanes.
    @inline(__always)
    static func sum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
        let (acc, whole) = laneSums(p, count, SIMD8<Float>.self)
        var s = acc.sum()
        for i in whole..<count { s += p[i] }
        return s
    }

    /// `sum(a[i] * b[i])` over `count` floats with eight running lanes.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
        var acc = SIMD8<Float>()
        var i = 0
        let ar = UnsafeRawPointer(a), br = UnsafeRawPointer(b)
        while i + 8 <= count {
            acc += ar.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                * br.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        var s = acc.sum()
        while i < count { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// Sum of `(p[i] - mean)^2` over `count` floats.
    @inline(__always)
    static func squaredDeviation(_ p: UnsafePointer<Float>, _ count: Int, _ mean: Float) -> Float {
        var acc = SIMD8<Float>()
        let m = SIMD8<Float>(repeating: mean)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= count {
            let d = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - m
            acc += d * d
            i += 8
        }
        var s = acc.sum()
        while i < count { let d = p[i] - mean; s += d * d; i += 1 }
        return s
    }

    /// `y[i] = x[i] * scale + shift`.
    @inline(__always)
    static func affine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int,
                       _ scale: Float, _ shift: Float) {
        let a = SIMD8<Float>(repeating: scale), b = SIMD8<Float>(repeating: shift)
        var i = 0
        let xr = UnsafeRawPointer(x), yr = UnsafeMutableRawPointer(y)
        while i + 8 <= count {
            let v = xr.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            yr.storeBytes(of: v * a + b, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count { y[i] = x[i] * scale + shift; i += 1 }
    }

    @inline(__always)
    static func load(_ p: UnsafeRawPointer, _ byteOffset: Int) -> SIMD8<Float> {
        p.loadUnaligned(fromByteOffset: byteOffset, as: SIMD8<Float>.self)
    }

    /// Elements 0, 2, ..., 14 of the 15 floats at `p + byteOffset`, reading no further (a
    /// 16-wide load would run one float past the last tap of a row).
    @inline(__always)
    static func even(_ p: UnsafeRawPointer, _ byteOffset: Int) -> SIMD8<Float> {
        let lo = p.loadUnaligned(fromByteOffset: byteOffset, as: SIMD8<Float>.self)
        let hi = p.loadUnaligned(fromByteOffset: byteOffset + 28, as: SIMD8<Float>.self)
        return SIMD8(lo[0], lo[2], lo[4], lo[6], hi[1], hi[3], hi[5], hi[7])
    }
}
