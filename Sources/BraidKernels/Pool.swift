import Foundation

/// Geometry of 2-D pooling over `[N, C, H, W]` planes; 1-D pooling is `H = 1, kernelH = 1`.
///
/// Windows start at `o * stride - padBegin`; taps past `in + padEnd` (the ceil-mode overhang)
/// are never part of a window, matching ONNX.
public struct PoolGeometry: Sendable, Equatable {
    /// `N * C`.
    public var planes: Int
    public var inH: Int
    public var inW: Int
    public var outH: Int
    public var outW: Int
    public var kernelH: Int
    public var kernelW: Int
    public var strideH: Int
    public var strideW: Int
    public var dilationH: Int
    public var dilationW: Int
    public var padTop: Int
    public var padLeft: Int
    public var padBottom: Int
    public var padRight: Int

    public init(planes: Int, inH: Int, inW: Int, outH: Int, outW: Int, kernelH: Int, kernelW: Int,
                strideH: Int = 1, strideW: Int = 1, dilationH: Int = 1, dilationW: Int = 1,
                padTop: Int = 0, padLeft: Int = 0, padBottom: Int = 0, padRight: Int = 0) {
        self.planes = planes; self.inH = inH; self.inW = inW; self.outH = outH; self.outW = outW
        self.kernelH = kernelH; self.kernelW = kernelW; self.strideH = strideH; self.strideW = strideW
        self.dilationH = dilationH; self.dilationW = dilationW
        self.padTop = padTop; self.padLeft = padLeft; self.padBottom = padBottom; self.padRight = padRight
    }
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

/// Pools `x` `[planes, inH, inW]` into `y` `[planes, outH, outW]`. For `.max`, `indices`
/// (when given) receives each maximum's flat index into x, row-major within the plane
/// (`h * W + w`) or column-major (`h + w * H`) when `columnMajor`, plus `plane * H * W`.
public func pool2D(_ g: PoolGeometry, _ reduction: PoolReduction, x: UnsafePointer<Float>,
                   y: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int64>? = nil,
                   columnMajor: Bool = false) {
    let work = g.planes * g.outH * g.outW * g.kernelH * g.kernelW
    let chunks = work >= 1 << 15 ? min(g.planes, NNParallel.workers * 4) : 1
    NNParallel.run(chunks) { i in
        poolPlanes(g, reduction, g.planes * i / chunks, g.planes * (i + 1) / chunks, x, y, indices, columnMajor)
    }
}

private func poolPlanes(_ g: PoolGeometry, _ reduction: PoolReduction, _ first: Int, _ end: Int,
                        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                        _ indices: UnsafeMutablePointer<Int64>?, _ columnMajor: Bool) {
    let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
    let dh = g.dilationH, dw = g.dilationW
    for p in first..<end {
        let src = x + p * inPlane
        let dst = y + p * outPlane
        for oy in 0..<g.outH {
            let hs = oy * g.strideH - g.padTop
            let (ky0, ky1) = taps(hs, g.kernelH, dh, g.inH)
            for ox in 0..<g.outW {
                let ws = ox * g.strideW - g.padLeft
                let (kx0, kx1) = taps(ws, g.kernelW, dw, g.inW)
                let o = oy * g.outW + ox
                switch reduction {
                case .max:
                    var best = -Float.infinity
                    var at = -1
                    for ky in ky0..<ky1 {
                        let row = (hs + ky * dh) * g.inW
                        for kx in kx0..<kx1 where src[row + ws + kx * dw] > best || at < 0 {
                            best = src[row + ws + kx * dw]; at = row + ws + kx * dw
                        }
                    }
                    dst[o] = best
                    if let indices {
                        let flat = at < 0 ? 0 : (columnMajor ? (at / g.inW) + (at % g.inW) * g.inH : at)
                        indices[p * outPlane + o] = Int64(p * inPlane + flat)
                    }
                case .average(let includePad):
                    var sum: Float = 0
                    for ky in ky0..<ky1 {
                        let row = src + (hs + ky * dh) * g.inW + ws
                        for kx in kx0..<kx1 { sum += row[kx * dw] }
                    }
                    let count: Int
                    if includePad {
                        count = paddedTaps(hs, g.kernelH, dh, g.inH + g.padTop + g.padBottom, g.padTop)
                            * paddedTaps(ws, g.kernelW, dw, g.inW + g.padLeft + g.padRight, g.padLeft)
                    } else {
                        count = (ky1 - ky0) * (kx1 - kx0)
                    }
                    dst[o] = count > 0 ? sum / Float(count) : 0
                case .lp(let pw):
                    var sum: Float = 0
                    for ky in ky0..<ky1 {
                        let row = src + (hs + ky * dh) * g.inW + ws
                        for kx in kx0..<kx1 { sum += lpPower(row[kx * dw], pw) }
                    }
                    dst[o] = lpRoot(sum, pw)
                }
            }
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
        for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
            let row = x + p * size
            switch reduction {
            case .max:
                var m = -Float.infinity
                for j in 0..<size where row[j] > m || j == 0 { m = row[j] }
                y[p] = m
            case .average:
                y[p] = size == 0 ? 0 : NNVec.sum(row, size) / Float(size)
            case .lp(let pw):
                var s: Float = 0
                for j in 0..<size { s += lpPower(row[j], pw) }
                y[p] = lpRoot(s, pw)
            }
        }
    }
}
