extension DepthwiseConv2D {
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
