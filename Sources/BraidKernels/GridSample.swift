import BraidTensor

/// Sampling an `[N, C, spatial...]` tensor at the points of a grid `[N, out..., s]` whose last
/// axis holds normalised coordinates in [-1, 1] (x for the last spatial axis first), as ONNX
/// GridSample and PyTorch's grid_sample: nearest, linear or cubic (Keys, a = -0.75)
/// interpolation, taps outside the data read zeros, the border, or its mirror image. One or
/// more spatial axes. The backward gives the data's gradient in every mode and the grid's in
/// nearest (zero) and linear modes.
public struct GridSampler: Sendable {
    public typealias Mode = GridSampleMode
    public typealias Padding = GridSamplePadding

    public let mode: Mode
    public let padding: Padding
    public let alignCorners: Bool
    /// `[N, C, spatial...]`
    public let inputShape: [Int]
    /// Output points per batch entry.
    public let points: Int
    /// Spatial sizes, their row-major strides and product, worked out once.
    let dims: [Int], dimStrides: [Int], plane: Int

    public init(mode: Mode, padding: Padding, alignCorners: Bool, inputShape: [Int], points: Int) {
        self.mode = mode; self.padding = padding; self.alignCorners = alignCorners
        self.inputShape = inputShape; self.points = points
        dims = Array(inputShape.dropFirst(2)); dimStrides = dims.strides; plane = dims.reduce(1, *)
    }

    private var taps: Int {
        switch mode {
        case .nearest: return 1
        case .linear: return 2
        case .cubic: return 4
        }
    }

    private func reflect(_ x: Float, _ lo: Float, _ hi: Float) -> Float {
        let range = hi - lo
        if x < lo {
            let dx = lo - x, k = Int(dx / range), r = dx - Float(k) * range
            return k % 2 == 0 ? lo + r : hi - r
        }
        if x > hi {
            let dx = x - hi, k = Int(dx / range), r = dx - Float(k) * range
            return k % 2 == 0 ? hi - r : lo + r
        }
        return x
    }

    /// The input coordinate normalised grid value `norm` names on an axis of `len` (rounded in
    /// nearest mode, then moved inside by the padding rule), the axis's bounds `lo...hi`, and
    /// d(coordinate)/d(norm) through the padding.
    @inline(__always)
    private func sourceCoordinate(_ norm: Float, _ len: Int) -> (v: Float, lo: Float, hi: Float, slope: Float) {
        var v = alignCorners ? (norm + 1) / 2 * Float(len - 1) : ((norm + 1) * Float(len) - 1) / 2
        if mode == .nearest { v = v.rounded(.toNearestOrEven) }
        let lo: Float = alignCorners ? 0 : -0.5, hi: Float = alignCorners ? Float(len - 1) : Float(len) - 0.5
        var dv: Float = alignCorners ? Float(len - 1) / 2 : Float(len) / 2
        if v < lo || v > hi {
            dv *= paddingSlope(v, lo, hi, len)
            if padding == .border { v = min(max(v, 0), Float(len - 1)) }
            if padding == .reflection { v = reflect(v, lo, hi) }
        }
        return (v, lo, hi, dv)
    }

    /// Tap `i` of an axis of `len` under the padding rule, or -1 (zeros) when it reads nothing.
    @inline(__always)
    private func tapIndex(_ i: Int, _ len: Int, _ lo: Float, _ hi: Float) -> Int {
        switch padding {
        case .zeros: return i < 0 || i >= len ? -1 : i
        case .border: return min(max(i, 0), len - 1)
        case .reflection: return Int(reflect(Float(i), lo, hi))
        }
    }

    /// Visits every combination of one tap per axis (`k` taps on each of `s` axes, their
    /// indices and weights `[s, k]`) whose taps all read the data: `body(offset, weight)`, the
    /// weight the product over axes. `pick` holds each axis's current tap during the call.
    @inline(__always)
    private func forEachTap(_ s: Int, _ k: Int, _ index: UnsafeMutableBufferPointer<Int>,
                            _ weight: UnsafeMutableBufferPointer<Float>, _ strides: [Int],
                            _ pick: UnsafeMutableBufferPointer<Int>, _ body: (Int, Float) -> Void) {
        for d in 0..<s { pick[d] = 0 }
        while true {
            var w: Float = 1, off = 0, valid = true
            for d in 0..<s {
                let i = index[d * k + pick[d]]
                if i < 0 { valid = false; break }
                w *= weight[d * k + pick[d]]
                off += i * strides[d]
            }
            if valid { body(off, w) }
            var d = s - 1
            while d >= 0 {
                pick[d] += 1
                if pick[d] < k { break }
                pick[d] = 0
                d -= 1
            }
            if d < 0 { break }
        }
    }

    private func cubic(_ t: Float, _ w: UnsafeMutablePointer<Float>) {
        let a: Float = -0.75
        let x = abs(t)
        w[0] = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
        w[1] = ((a + 2) * x - (a + 3)) * x * x + 1
        w[2] = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
        w[3] = ((a * (2 - x) - 5 * a) * (2 - x) + 8 * a) * (2 - x) - 4 * a
    }

    /// `y [N, C, points]` from `x [N, C, spatial...]` and `grid [N, points, s]`.
    public func run(_ x: UnsafePointer<Float>, _ grid: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let n = inputShape[0], c = inputShape[1]
        let s = dims.count, k = taps
        let strides = dimStrides
        withUnsafeTemporaryAllocation(of: Int.self, capacity: s * k) { index in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: s * k) { weight in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: s) { pick in
            for b in 0..<n {
                for p in 0..<points {
                    let g = grid + (b * points + p) * s
                    for d in 0..<s {
                        _ = fillTaps(d, g[s - 1 - d], index.baseAddress!, weight.baseAddress!, slope: nil)
                    }
                    for ch in 0..<c {
                        let src = x + (b * c + ch) * plane
                        var acc: Float = 0
                        forEachTap(s, k, index, weight, strides, pick) { off, w in acc += w * src[off] }
                        y[(b * c + ch) * points + p] = acc
                    }
                }
            }
        }
        }
        }
    }

    /// Fills dimension `d`'s tap indices and weights for the grid coordinate `norm` (and, with
    /// `slope`, the weights' derivatives with respect to the source coordinate); returns the
    /// source coordinate's derivative with respect to `norm`.
    @inline(__always)
    private func fillTaps(_ d: Int, _ norm: Float, _ index: UnsafeMutablePointer<Int>, _ weight: UnsafeMutablePointer<Float>,
                          slope: UnsafeMutablePointer<Float>?) -> Float {
        let len = dims[d], k = taps
        let (v, lo, hi, dv) = sourceCoordinate(norm, len)
        let base: Int
        switch mode {
        case .nearest:
            base = Int(v); weight[d * k] = 1
            slope?[d * k] = 0
        case .linear:
            base = Int(v.rounded(.down))
            let f = v - Float(base)
            weight[d * k] = 1 - f; weight[d * k + 1] = f
            slope?[d * k] = -1; slope?[d * k + 1] = 1
        case .cubic:
            base = Int(v.rounded(.down)) - 1
            cubic(v - Float(base + 1), weight + d * k)
            if let slope { for t in 0..<k { slope[d * k + t] = 0 } }
        }
        for t in 0..<k { index[d * k + t] = tapIndex(base + t, len, lo, hi) }
        return dv
    }

    /// Derivative of the padding transform at `x` (1 inside, 0 where the border clamps, ±1
    /// through reflections).
    private func paddingSlope(_ x: Float, _ lo: Float, _ hi: Float, _ len: Int) -> Float {
        switch padding {
        case .zeros: return 1
        case .border: return x < 0 || x > Float(len - 1) ? 0 : 1
        case .reflection:
            let range = hi - lo
            if x < lo { return Int((lo - x) / range) % 2 == 0 ? -1 : 1 }
            if x > hi { return Int((x - hi) / range) % 2 == 0 ? -1 : 1 }
            return 1
        }
    }

    /// Backward: `gx += d/dx`, `ggrid += d/dgrid` of `sum(gy * y)` (either may be nil). The
    /// grid's gradient is zero in nearest mode; cubic mode gives the data's gradient only.
    public func backward(_ x: UnsafePointer<Float>, _ grid: UnsafePointer<Float>, _ gy: UnsafePointer<Float>,
                         gx: UnsafeMutablePointer<Float>?, ggrid: UnsafeMutablePointer<Float>?) {
        let n = inputShape[0], c = inputShape[1]
        let s = dims.count, k = taps
        let strides = dimStrides
        withUnsafeTemporaryAllocation(of: Int.self, capacity: s * k) { index in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: s * k) { weight in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: s * k) { slope in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: s) { factor in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: s) { pick in
            for b in 0..<n {
                for p in 0..<points {
                    let g = grid + (b * points + p) * s
                    for d in 0..<s {
                        let dv = fillTaps(d, g[s - 1 - d], index.baseAddress!, weight.baseAddress!, slope: slope.baseAddress!)
                        factor[d] = mode == .linear ? dv : 0
                    }
                    for ch in 0..<c {
                        let src = x + (b * c + ch) * plane
                        let go = gy[(b * c + ch) * points + p]
                        forEachTap(s, k, index, weight, strides, pick) { off, w in
                            gx?[(b * c + ch) * plane + off] += go * w
                            if let ggrid, mode == .linear {
                                for d in 0..<s {
                                    var partial = slope[d * k + pick[d]] * factor[d]
                                    for e in 0..<s where e != d { partial *= weight[e * k + pick[e]] }
                                    ggrid[(b * points + p) * s + (s - 1 - d)] += go * src[off] * partial
                                }
                            }
                        }
                    }
                }
            }
        }
        }
        }
        }
        }
    }
}
