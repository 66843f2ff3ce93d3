/// Direct convolution for groups with one input channel each (depthwise, with any channel
/// multiplier): `y[N, M, OH, OW]`, output channel `m` reading input channel `m / (M / C)` through
/// its own `kH x kW` filter. Eight output columns at a time; a dedicated path for the common
/// 3x3, dilation-1 filter with stride 1 or 2.
final class DepthwiseConv2D: @unchecked Sendable {
    let geometry: ConvGeometry
    /// Output columns `[xa, xb)` whose every tap lies inside the input row.
    private let xa: Int
    private let xb: Int
    /// A row of zeros standing in for input rows above or below the image.
    private let zeroRow: UnsafeMutablePointer<Float>
    private let fast3x3: Bool

    init(_ g: ConvGeometry) {
        geometry = g
        var lo = 0, hi = g.outW
        for kx in 0..<g.kernelW {
            let r = ConvGeometry.validOutputs(offset: kx * g.dilationW - g.padLeft, stride: g.strideW,
                                              size: g.inW, count: g.outW)
            lo = max(lo, r.0); hi = min(hi, r.1)
        }
        xa = lo; xb = max(lo, hi)
        zeroRow = .allocate(capacity: max(1, g.inW))
        zeroRow.initialize(repeating: 0, count: max(1, g.inW))
        fast3x3 = g.kernelH == 3 && g.kernelW == 3 && g.dilationH == 1 && g.dilationW == 1
            && (g.strideW == 1 || g.strideW == 2)
    }

    deinit { zeroRow.deallocate() }

    /// `x` `[N, C, H, W]`, `weight` `[M, 1, kH, kW]`, `bias` `[M]` or nil, `y` `[N, M, OH, OW]`.
    func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let planes = g.batch * g.outChannels
        let work = planes * g.outH * g.outW * g.kernelH * g.kernelW
        let chunks = NNParallel.workers > 1 && work >= 1 << 15 ? min(planes, NNParallel.workers * 4) : 1
        NNParallel.run(chunks) { i in
            for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
                let m = p % g.outChannels, n = p / g.outChannels
                let src = x + (n * g.inChannels + m / g.groupOut) * g.inH * g.inW
                let w = weight + m * g.kernelH * g.kernelW
                let b = bias?[m] ?? 0
                let dst = y + p * g.outH * g.outW
                if fast3x3 {
                    plane3x3(src, w, b, dst)
                } else {
                    planeGeneric(src, w, b, dst)
                }
            }
        }
    }

    private func plane3x3(_ src: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: Float,
                          _ dst: UnsafeMutablePointer<Float>) {
        let g = geometry
        let ow = g.outW, stride2 = g.strideW == 2
        let w0 = SIMD8<Float>(repeating: w[0]), w1 = SIMD8<Float>(repeating: w[1]), w2 = SIMD8<Float>(repeating: w[2])
        let w3 = SIMD8<Float>(repeating: w[3]), w4 = SIMD8<Float>(repeating: w[4]), w5 = SIMD8<Float>(repeating: w[5])
        let w6 = SIMD8<Float>(repeating: w[6]), w7 = SIMD8<Float>(repeating: w[7]), w8 = SIMD8<Float>(repeating: w[8])
        let bv = SIMD8<Float>(repeating: b)
        let vectorEnd = xb - xa >= 8 ? xb : xa
        for oy in 0..<g.outH {
            let drow = dst + oy * ow
            let iy = oy * g.strideH - g.padTop
            let r0 = row(src, iy), r1 = row(src, iy + 1), r2 = row(src, iy + 2)
            for c in 0..<xa { drow[c] = point(src, w, b, iy, c) }
            var ox = xa
            while ox < vectorEnd {
                // The last vector overlaps the previous one rather than falling back to scalars.
                if ox + 8 > vectorEnd { ox = vectorEnd - 8 }
                let base = (ox * g.strideW - g.padLeft) * 4
                var acc = bv
                if stride2 {
                    acc += w0 * NNVec.even(r0, base) + w1 * NNVec.even(r0, base + 4) + w2 * NNVec.even(r0, base + 8)
                    acc += w3 * NNVec.even(r1, base) + w4 * NNVec.even(r1, base + 4) + w5 * NNVec.even(r1, base + 8)
                    acc += w6 * NNVec.even(r2, base) + w7 * NNVec.even(r2, base + 4) + w8 * NNVec.even(r2, base + 8)
                } else {
                    acc += w0 * NNVec.load(r0, base) + w1 * NNVec.load(r0, base + 4) + w2 * NNVec.load(r0, base + 8)
                    acc += w3 * NNVec.load(r1, base) + w4 * NNVec.load(r1, base + 4) + w5 * NNVec.load(r1, base + 8)
                    acc += w6 * NNVec.load(r2, base) + w7 * NNVec.load(r2, base + 4) + w8 * NNVec.load(r2, base + 8)
                }
                UnsafeMutableRawPointer(drow + ox).storeBytes(of: acc, as: SIMD8<Float>.self)
                ox += 8
            }
            for c in max(xa, vectorEnd)..<ow { drow[c] = point(src, w, b, iy, c) }
        }
    }

    private func planeGeneric(_ src: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: Float,
                              _ dst: UnsafeMutablePointer<Float>) {
        let g = geometry
        let ow = g.outW, kw = g.kernelW, dw = g.dilationW
        let vectorEnd = (g.strideW == 1 || g.strideW == 2) && xb - xa >= 8 ? xb : xa
        for oy in 0..<g.outH {
            let drow = dst + oy * ow
            let iy0 = oy * g.strideH - g.padTop
            for c in 0..<xa { drow[c] = point(src, w, b, iy0, c) }
            var ox = xa
            while ox < vectorEnd {
                if ox + 8 > vectorEnd { ox = vectorEnd - 8 }
                let base = (ox * g.strideW - g.padLeft) * 4
                var acc = SIMD8<Float>(repeating: b)
                for ky in 0..<g.kernelH {
                    let r = row(src, iy0 + ky * g.dilationH)
                    for kx in 0..<kw {
                        let v = g.strideW == 1 ? NNVec.load(r, base + kx * dw * 4) : NNVec.even(r, base + kx * dw * 4)
                        acc += w[ky * kw + kx] * v
                    }
                }
                UnsafeMutableRawPointer(drow + ox).storeBytes(of: acc, as: SIMD8<Float>.self)
                ox += 8
            }
            for c in max(xa, vectorEnd)..<ow { drow[c] = point(src, w, b, iy0, c) }
        }
    }

    /// Input row `iy` of the plane, or the zero row outside the image.
    @inline(__always)
    private func row(_ src: UnsafePointer<Float>, _ iy: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(iy >= 0 && iy < geometry.inH ? src + iy * geometry.inW : UnsafePointer(zeroRow))
    }

    /// One output value with every tap bounds-checked (image borders).
    @inline(__always)
    private func point(_ src: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: Float, _ iy0: Int, _ ox: Int) -> Float {
        let g = geometry
        var acc = b
        let ix0 = ox * g.strideW - g.padLeft
        for ky in 0..<g.kernelH {
            let iy = iy0 + ky * g.dilationH
            if iy < 0 || iy >= g.inH { continue }
            let srow = src + iy * g.inW
            for kx in 0..<g.kernelW {
                let ix = ix0 + kx * g.dilationW
                if ix >= 0 && ix < g.inW { acc += w[ky * g.kernelW + kx] * srow[ix] }
            }
        }
        return acc
    }

    /// Adds `dx` `[N, C, H, W]` from `dy` `[N, M, OH, OW]`: each input plane gathers from its
    /// `M / C` output channels, so planes are split over the cores without overlap.
    func backwardInput(dy: UnsafePointer<Float>, weight: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let g = geometry
        let planes = g.batch * g.inChannels, mult = g.groupOut
        let work = planes * mult * g.outH * g.outW * g.kernelH * g.kernelW
        let chunks = NNParallel.workers > 1 && work >= 1 << 15 ? min(planes, NNParallel.workers * 4) : 1
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW, kArea = g.kernelH * g.kernelW
        NNParallel.run(chunks) { i in
            for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
                let n = p / g.inChannels, c = p % g.inChannels
                let dst = dx + p * inPlane
                for m in (c * mult)..<((c + 1) * mult) {
                    let src = dy + (n * g.outChannels + m) * outPlane
                    let w = weight + m * kArea
                    for ky in 0..<g.kernelH {
                        for oy in 0..<g.outH {
                            let iy = oy * g.strideH + ky * g.dilationH - g.padTop
                            if iy < 0 || iy >= g.inH { continue }
                            let drow = dst + iy * g.inW, srow = src + oy * g.outW
                            for kx in 0..<g.kernelW {
                                let off = kx * g.dilationW - g.padLeft
                                let (lo, hi) = ConvGeometry.validOutputs(offset: off, stride: g.strideW, size: g.inW, count: g.outW)
                                let wv = w[ky * g.kernelW + kx]
                                if g.strideW == 1 {
                                    let d = drow + off
                                    for ox in lo..<hi { d[ox] += wv * srow[ox] }
                                } else {
                                    for ox in lo..<hi { drow[ox * g.strideW + off] += wv * srow[ox] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds `dw` `[M, 1, kH, kW]` from `x` and `dy`: each output channel's filter sums over the
    /// batch on one core, so channels are split over the cores without overlap.
    func backwardWeight(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>) {
        let g = geometry
        let channels = g.outChannels
        let work = g.batch * channels * g.outH * g.outW * g.kernelH * g.kernelW
        let chunks = NNParallel.workers > 1 && work >= 1 << 15 ? min(channels, NNParallel.workers * 4) : 1
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW, kArea = g.kernelH * g.kernelW
        NNParallel.run(chunks) { i in
            for m in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
                let w = dw + m * kArea
                for ky in 0..<g.kernelH {
                    for kx in 0..<g.kernelW {
                        let off = kx * g.dilationW - g.padLeft
                        let (lo, hi) = ConvGeometry.validOutputs(offset: off, stride: g.strideW, size: g.inW, count: g.outW)
                        var acc: Float = 0
                        for n in 0..<g.batch {
                            let src = x + (n * g.inChannels + m / g.groupOut) * inPlane
                            let grad = dy + (n * channels + m) * outPlane
                            for oy in 0..<g.outH {
                                let iy = oy * g.strideH + ky * g.dilationH - g.padTop
                                if iy < 0 || iy >= g.inH { continue }
                                let xrow = src + iy * g.inW, grow = grad + oy * g.outW
                                if g.strideW == 1 {
                                    acc += NNVec.dot(grow + lo, xrow + off + lo, hi - lo)
                                } else {
                                    for ox in lo..<hi { acc += grow[ox] * xrow[ox * g.strideW + off] }
                                }
                            }
                        }
                        w[ky * g.kernelW + kx] += acc
                    }
                }
            }
        }
    }
}
