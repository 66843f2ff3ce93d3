import BraidTensor
import Foundation

/// The interpolation filter.
public enum ResizeSampling: Sendable, Equatable {
    case nearest(ResizeRounding)
    case linear
    /// Keys cubic convolution with coefficient `a` (-0.75 in ONNX, -0.5 in TensorFlow).
    case cubic(a: Double)
}

/// One resized axis: extents, the scale (output / input, as the op states it) and, for
/// crop-and-resize, the region `[roiStart, roiEnd]` in normalised input coordinates.
public struct ResizeAxis: Sendable, Equatable {
    public var inSize: Int
    public var outSize: Int
    public var scale: Double
    public var roiStart: Double
    public var roiEnd: Double

    public init(inSize: Int, outSize: Int, scale: Double, roiStart: Double = 0, roiEnd: Double = 1) {
        self.inSize = inSize; self.outSize = outSize; self.scale = scale
        self.roiStart = roiStart; self.roiEnd = roiEnd
    }

    /// The input coordinate that output index `y` samples, and whether it falls outside the
    /// input under crop-and-resize (the output then takes the extrapolation value).
    public func sourceCoordinate(_ y: Int, _ mode: ResizeCoordinates) -> (x: Double, outside: Bool) {
        let y = Double(y), n = Double(inSize), scaled = scale * n
        switch mode {
        case .alignCorners:
            return (scaled == 1 ? 0 : y * (n - 1) / (scaled - 1), false)
        case .asymmetric:
            return (y / scale, false)
        case .tfCropAndResize:
            var x = scaled == 1 ? (roiEnd - roiStart) * (n - 1) / 2
                : y * (roiEnd - roiStart) * (n - 1) / (scaled - 1)
            x += roiStart * (n - 1)
            return (x, x < 0 || x > n - 1)
        case .pytorchHalfPixel:
            return (scaled == 1 ? -0.5 : (y + 0.5) / scale - 0.5, false)
        case .halfPixel:
            return ((y + 0.5) / scale - 0.5, false)
        case .halfPixelSymmetric:
            let adjustment = Double(outSize) / scaled
            let offset = n / 2 * (1 - adjustment)
            return (offset + (y + 0.5) / scale - 0.5, false)
        }
    }

    /// For each output index, the input index nearest sampling reads, or -1 when it is
    /// extrapolated.
    public func nearestIndices(_ mode: ResizeCoordinates, _ rounding: ResizeRounding) -> [Int] {
        (0..<outSize).map { y in
            let (x, outside) = sourceCoordinate(y, mode)
            if outside { return -1 }
            let f = x.rounded(.down)
            var i = Int(f)
            if x != f {
                let ratio = x - f
                let up: Bool
                switch rounding {
                case .roundPreferFloor: up = ratio > 0.5
                case .roundPreferCeil: up = ratio >= 0.5
                case .floor: up = false
                case .ceil: up = true
                }
                if up { i += 1 }
            }
            return min(max(i, 0), inSize - 1)
        }
    }
}

/// Interpolation taps of one axis: output index `o` is `sum_k weight[o*width+k] *
/// input[index[o*width+k]]`, or the extrapolation value when `outside[o]`.
public struct ResizeTaps: Sendable {
    public let width: Int
    public let index: [Int]
    public let weight: [Float]
    public let outside: [Bool]

    /// Builds the taps of a linear or cubic axis following ONNX Resize: the `width` nearest
    /// input indices (ties to the left), edge-clamped; with `antialias` and a scale below 1
    /// the filter is stretched by 1/scale; `excludeOutside` drops out-of-range taps and
    /// renormalises.
    public init(axis: ResizeAxis, coordinates: ResizeCoordinates, sampling: ResizeSampling,
                antialias: Bool, excludeOutside: Bool) {
        let s = min(axis.scale, 1)
        let coeffs: (Double) -> [Double]
        switch sampling {
        case .nearest(let rounding):
            coeffs = { r in
                if r == 1 { return [0, 1] }
                switch rounding {
                case .roundPreferFloor: return r <= 0.5 ? [1, 0] : [0, 1]
                case .roundPreferCeil: return r < 0.5 ? [1, 0] : [0, 1]
                case .floor: return [1, 0]
                case .ceil: return [0, 1]
                }
            }
        case .linear where antialias:
            let start = Int((-1 / s).rounded(.down)) + 1
            let footprint = 2 - 2 * start
            coeffs = { r in
                let c = (start..<(start + footprint)).map { max(0, min(1, 1 - abs((Double($0) - r) * s))) }
                let sum = c.reduce(0, +)
                return c.map { $0 / sum }
            }
        case .linear:
            coeffs = { r in [1 - r, r] }
        case .cubic(let a) where antialias:
            let start = Int((-2 / s).rounded(.down)) + 1
            coeffs = { r in
                let c = (start..<(2 - start)).map { i -> Double in
                    let x = abs(s * (Double(i) - r)), x2 = x * x, x3 = x2 * x
                    if x <= 1 { return (a + 2) * x3 - (a + 3) * x2 + 1 }
                    if x < 2 { return a * x3 - 5 * a * x2 + 8 * a * x - 4 * a }
                    return 0
                }
                let sum = c.reduce(0, +)
                return c.map { $0 / sum }
            }
        case .cubic(let a):
            coeffs = { r in
                let q = 1 - r
                return [((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                        ((a + 2) * r - (a + 3)) * r * r + 1,
                        ((a + 2) * q - (a + 3)) * q * q + 1,
                        ((a * (q + 1) - 5 * a) * (q + 1) + 8 * a) * (q + 1) - 4 * a]
            }
        }
        var width = 0
        var index: [Int] = [], weight: [Float] = [], outside: [Bool] = []
        for y in 0..<axis.outSize {
            let (x, out) = axis.sourceCoordinate(y, coordinates)
            let f = x.rounded(.down)
            let ratio = x == f ? 1 : x - f
            var c = coeffs(ratio)
            width = c.count
            let first = Int(f) - width / 2 + (x == f ? 0 : 1)
            if excludeOutside {
                for k in c.indices where first + k < 0 || first + k >= axis.inSize { c[k] = 0 }
                let sum = c.reduce(0, +)
                if sum != 0 { c = c.map { $0 / sum } }
            }
            for k in c.indices {
                index.append(min(max(first + k, 0), axis.inSize - 1))
                weight.append(Float(c[k]))
            }
            outside.append(out)
        }
        self.width = width; self.index = index; self.weight = weight; self.outside = outside
    }
}

/// One separable pass: input `[outer, inCount, inner]` -> `[outer, outCount, inner]`.
struct ResizePass: Sendable {
    let outer, inCount, outCount, inner: Int
    let taps: ResizeTaps
    let extrapolation: Float

    func run(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>) {
        let lines = outer * outCount
        let chunks = lines * inner * taps.width >= parallelCopyThreshold ? min(lines, dataMovementWorkers * 4) : 1
        let (inCount, outCount, inner, n) = (self.inCount, self.outCount, self.inner, taps.width)
        let (index, weight, outside, extrapolation) = (taps.index, taps.weight, taps.outside, self.extrapolation)
        forEachChunk(chunks) { c in
            for line in chunkRange(c, of: chunks, total: lines) {
                let o = line % outCount
                let out = dst + line * inner
                if outside[o] { out.update(repeating: extrapolation, count: inner); continue }
                let plane = src + (line / outCount) * inCount * inner
                let t = o * n
                if inner == 1 {
                    var acc: Float = 0
                    for k in 0..<n { acc += weight[t + k] * plane[index[t + k]] }
                    out.pointee = acc
                } else {
                    let w0 = weight[t], r0 = plane + index[t] * inner
                    for i in 0..<inner { out[i] = w0 * r0[i] }
                    for k in 1..<max(n, 1) {
                        let w = weight[t + k], r = plane + index[t + k] * inner
                        if w == 0 { continue }
                        for i in 0..<inner { out[i] += w * r[i] }
                    }
                }
            }
        }
    }
}

extension ResizePass {
    /// Backward: `gsrc += W^T g`, spreading each output line's gradient onto the input lines
    /// it was interpolated from with the same weights. Planes run in parallel (they touch
    /// disjoint input planes); lines of one plane overlap and run in order.
    func adjoint(_ g: UnsafePointer<Float>, _ gsrc: UnsafeMutablePointer<Float>) {
        let chunks = outer * outCount * inner * taps.width >= parallelCopyThreshold ? min(outer, dataMovementWorkers * 4) : 1
        let (inCount, outCount, inner, n) = (self.inCount, self.outCount, self.inner, taps.width)
        let (index, weight, outside) = (taps.index, taps.weight, taps.outside)
        forEachChunk(chunks) { c in
            for p in chunkRange(c, of: chunks, total: outer) {
                let plane = gsrc + p * inCount * inner
                for o in 0..<outCount where !outside[o] {
                    let src = g + (p * outCount + o) * inner
                    let t = o * n
                    for k in 0..<n {
                        let w = weight[t + k]
                        if w == 0 { continue }
                        let d = plane + index[t + k] * inner
                        for i in 0..<inner { d[i] += w * src[i] }
                    }
                }
            }
        }
    }
}

/// The backward of a float32 `ResizeInterpolation`: the gradient of its output, spread onto
/// its input with the forward's interpolation weights (the transposed linear map), with
/// scratch for the intermediate passes allocated once. Extrapolated outputs pass nothing.
public final class ResizeGradient: @unchecked Sendable {
    private let passes: [ResizePass]
    private let scratch: [TensorBuffer]
    private let sizes: [Int]
    private let count: Int

    public init(_ plan: ResizeInterpolation) {
        precondition(plan.isFloat, "resize gradient needs a float32 plan")
        passes = plan.passes
        sizes = passes.map { $0.outer * $0.inCount * $0.inner }
        count = plan.outShape.product
        let largest = sizes.dropFirst().max() ?? 0
        scratch = (0..<min(2, max(passes.count - 1, 0))).map { _ in TensorBuffer(byteCount: largest * 4) }
    }

    /// `gx` (the input shape) `+=` the adjoint of `g` (the output shape).
    public func accumulate(_ g: UnsafePointer<Float>, into gx: UnsafeMutablePointer<Float>) {
        if passes.isEmpty {
            for i in 0..<count { gx[i] += g[i] }
            return
        }
        var cur = g
        for k in stride(from: passes.count - 1, through: 0, by: -1) {
            let dst: UnsafeMutablePointer<Float>
            if k == 0 {
                dst = gx
            } else {
                dst = scratch[(k - 1) % 2].raw.assumingMemoryBound(to: Float.self)
                dst.update(repeating: 0, count: sizes[k])
            }
            passes[k].adjoint(cur, dst)
            cur = UnsafePointer(dst)
        }
    }
}

/// A planned linear or cubic Resize of a tensor of `inShape`, one separable pass per resized
/// axis, with scratch planes allocated once. Integer tensors are interpolated in float and
/// rounded half to even, then clamped, as ONNX's saturating cast does.
public final class ResizeInterpolation: @unchecked Sendable {
    public let inShape: [Int]
    public let outShape: [Int]
    public let isFloat: Bool
    fileprivate let passes: [ResizePass]
    private let scratch: [TensorBuffer]

    /// `axes` lists the resized axes (in any order) with their taps; other axes keep their size.
    public init(inShape: [Int], axes: [(axis: Int, outSize: Int, taps: ResizeTaps)],
                extrapolation: Float, isFloat: Bool) {
        self.inShape = inShape
        self.isFloat = isFloat
        var shape = inShape
        var passes: [ResizePass] = []
        var largest = isFloat ? 0 : inShape.product
        for (a, outSize, taps) in axes.sorted(by: { $0.axis < $1.axis }) {
            let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *)
            passes.append(ResizePass(outer: outer, inCount: shape[a], outCount: outSize, inner: inner,
                                     taps: taps, extrapolation: extrapolation))
            shape[a] = outSize
            largest = max(largest, shape.product)
        }
        outShape = shape
        self.passes = passes
        scratch = (0..<(isFloat ? min(2, max(passes.count - 1, 0)) : 3)).map { _ in
            TensorBuffer(byteCount: largest * 4)
        }
    }

    /// Resizes `src` (`inShape`, Float or Int64 storage per `isFloat`) into `dst` (`outShape`).
    public func run(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) {
        var cur: UnsafePointer<Float>
        if isFloat {
            cur = src.assumingMemoryBound(to: Float.self)
        } else {
            let f = scratch[2].raw.assumingMemoryBound(to: Float.self)
            let s = src.assumingMemoryBound(to: Int64.self)
            for i in 0..<inShape.product { f[i] = Float(s[i]) }
            cur = UnsafePointer(f)
        }
        if passes.isEmpty {
            if isFloat { dst.copyMemory(from: cur, byteCount: outShape.product * 4) }
        }
        for (k, pass) in passes.enumerated() {
            let out = isFloat && k == passes.count - 1
                ? dst.assumingMemoryBound(to: Float.self)
                : scratch[k % 2].raw.assumingMemoryBound(to: Float.self)
            pass.run(cur, out)
            cur = UnsafePointer(out)
        }
        if !isFloat {
            let d = dst.assumingMemoryBound(to: Int64.self)
            for i in 0..<outShape.product {
                let v = Double(cur[i]).rounded(.toNearestOrEven)
                d[i] = v.isNaN ? 0 : Int64(min(max(v, -9.2e18), 9.2e18))
            }
        }
    }
}
