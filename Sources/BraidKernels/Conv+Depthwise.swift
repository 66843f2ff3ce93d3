/// Direct convolution for groups with one input channel each (depthwise, with any channel
/// multiplier): `y[N, M, OH, OW]`, output channel `m` reading input channel `m / (M / C)` through
/// its own `kH x kW` filter.
///
/// Each plane is first copied into a zero-padded scratch whose rows are split into `strideW`
/// phases (phase `p` holds padded columns `p, p + s, p + 2s, ...`), so every tap of eight
/// neighbouring outputs is one contiguous 8-float load whatever the stride and padding, with no
/// border cases. 3x3 and 5x5 filter rows are unrolled. The epilogue (residual add and
/// activation) is applied to each output row while it is in registers or L1.
final class DepthwiseConv2D: @unchecked Sendable {
    let geometry: ConvGeometry
    let epilogue: ConvEpilogue
    /// Floats in one phase row of the padded scratch (a multiple of 8 outputs plus the taps' reach).
    private let phaseLength: Int
    /// Padded input rows the outputs read.
    private let paddedRows: Int
    /// Scratch floats per chunk.
    private let scratchSize: Int
    private let chunks: Int
    private let scratch: UnsafeMutablePointer<Float>
    /// Per filter column `kx`: offset of its tap from the output column inside a padded row.
    private let columnOffsets: UnsafeMutablePointer<Int>
    /// Per phase: the phase-row entries `[lo, hi)` that hold input columns, and the first column.
    private let phaseRanges: UnsafeMutablePointer<Int>

    init(_ g: ConvGeometry, epilogue: ConvEpilogue = .none) {
        geometry = g
        self.epilogue = epilogue
        let s = max(1, g.strideW)
        let reach = ((g.kernelW - 1) * g.dilationW) / s + 1
        phaseLength = (g.outW + 7) / 8 * 8 + reach
        paddedRows = max(0, (g.outH - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1)
        scratchSize = max(1, paddedRows * s * phaseLength)
        let planes = g.batch * g.outChannels
        let work = planes * g.outH * g.outW * g.kernelH * g.kernelW
        chunks = NNParallel.workers > 1 && work >= 1 << 15 ? max(1, min(planes, NNParallel.workers * 4)) : 1
        scratch = .allocate(capacity: scratchSize * chunks)
        scratch.initialize(repeating: 0, count: scratchSize * chunks)
        columnOffsets = .allocate(capacity: max(1, g.kernelW))
        for kx in 0..<g.kernelW {
            let c = kx * g.dilationW
            columnOffsets[kx] = (c % s) * phaseLength + c / s
        }
        phaseRanges = .allocate(capacity: 2 * s)
        for p in 0..<s {
            let r = ConvGeometry.validOutputs(offset: p - g.padLeft, stride: s, size: g.inW, count: phaseLength)
            phaseRanges[2 * p] = r.0; phaseRanges[2 * p + 1] = r.1
        }
    }

    deinit {
        scratch.deallocate()
        columnOffsets.deallocate()
        phaseRanges.deallocate()
    }

    /// `x` `[N, C, H, W]`, `weight` `[M, 1, kH, kW]`, `bias` `[M]` or nil, `residual`
    /// `[N, M, OH, OW]` (read when the epilogue has one), `y` `[N, M, OH, OW]`.
    func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 residual: UnsafePointer<Float>? = nil, y: UnsafeMutablePointer<Float>) {
        epilogue.activation.dispatch(Run(conv: self, x: x, weight: weight, bias: bias, residual: residual, y: y))
    }

    private struct Run: EpilogueVisitor {
        let conv: DepthwiseConv2D
        let x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?
        let residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>
        func visit<F: EpilogueFunction>(_ f: F) {
            conv.run(f, x: x, weight: weight, bias: bias, residual: residual, y: y)
        }
    }

    private func run<F: EpilogueFunction>(_ f: F, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                          bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                          y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let planes = g.batch * g.outChannels, chunks = self.chunks
        let outPlane = g.outH * g.outW, kArea = g.kernelH * g.kernelW
        NNParallel.run(chunks) { i in
            let pad = self.scratch + i * self.scratchSize
            var lastInput = -1
            for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
                let m = p % g.outChannels, n = p / g.outChannels
                let input = n * g.inChannels + m / g.groupOut
                if input != lastInput {
                    fillPadded(x + input * g.inH * g.inW, pad)
                    lastInput = input
                }
                plane(f, pad, weight + m * kArea, bias?[m] ?? 0, residual.map { $0 + p * outPlane }, y + p * outPlane)
            }
        }
    }

    /// Copies one input plane into the phase-split, zero-padded scratch.
    private func fillPadded(_ src: UnsafePointer<Float>, _ pad: UnsafeMutablePointer<Float>) {
        let g = geometry
        let s = max(1, g.strideW), len = phaseLength
        for r in 0..<paddedRows {
            let iy = r - g.padTop
            for p in 0..<s {
                let dst = pad + (r * s + p) * len
                guard iy >= 0 && iy < g.inH else {
                    dst.update(repeating: 0, count: len)
                    continue
                }
                let lo = phaseRanges[2 * p], hi = phaseRanges[2 * p + 1]
                let row = src + iy * g.inW + p - g.padLeft
                if lo > 0 { dst.update(repeating: 0, count: lo) }
                if s == 1 {
                    (dst + lo).update(from: row + lo, count: hi - lo)
                } else {
                    for j in lo..<hi { dst[j] = row[j * s] }
                }
                if hi < len { (dst + hi).update(repeating: 0, count: len - hi) }
            }
        }
    }

    @inline(__always)
    private static func row3(_ r: UnsafeRawPointer, _ w: UnsafePointer<Float>, _ c0: Int, _ c1: Int, _ c2: Int) -> SIMD8<Float> {
        (w[0] * NNVec.load(r, c0) + w[1] * NNVec.load(r, c1)) + w[2] * NNVec.load(r, c2)
    }

    @inline(__always)
    private static func row5(_ r: UnsafeRawPointer, _ w: UnsafePointer<Float>,
                             _ c0: Int, _ c1: Int, _ c2: Int, _ c3: Int, _ c4: Int) -> SIMD8<Float> {
        ((w[0] * NNVec.load(r, c0) + w[1] * NNVec.load(r, c1)) + (w[2] * NNVec.load(r, c2) + w[3] * NNVec.load(r, c3)))
            + w[4] * NNVec.load(r, c4)
    }

    /// One output plane from its padded input.
    @inline(__always)
    private func plane<F: EpilogueFunction>(_ f: F, _ pad: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: Float,
                                            _ residual: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>) {
        let g = geometry
        let ow = g.outW, kw = g.kernelW, kh = g.kernelH
        let rowFloats = max(1, g.strideW) * phaseLength
        let rowStep = g.strideH * rowFloats, tapRowStep = g.dilationH * rowFloats
        let c = columnOffsets
        let fused = residual == nil
        let bv = SIMD8<Float>(repeating: b)
        for oy in 0..<g.outH {
            let top = UnsafeRawPointer(pad + oy * rowStep)
            let drow = dst + oy * ow
            var ox = 0
            while ox < ow {
                let at = top + ox * 4
                var acc: SIMD8<Float>
                // Taps are summed as trees, not one running sum: a chain of 25 dependent adds
                // would leave the kernel waiting on add latency.
                if kw == 3 && kh == 3 {
                    let c0 = c[0] * 4, c1 = c[1] * 4, c2 = c[2] * 4, t = tapRowStep * 4
                    let r0 = DepthwiseConv2D.row3(at, w, c0, c1, c2)
                    let r1 = DepthwiseConv2D.row3(at + t, w + 3, c0, c1, c2)
                    let r2 = DepthwiseConv2D.row3(at + 2 * t, w + 6, c0, c1, c2)
                    acc = (bv + r0) + (r1 + r2)
                } else if kw == 5 && kh == 5 {
                    let c0 = c[0] * 4, c1 = c[1] * 4, c2 = c[2] * 4, c3 = c[3] * 4, c4 = c[4] * 4, t = tapRowStep * 4
                    let r0 = DepthwiseConv2D.row5(at, w, c0, c1, c2, c3, c4)
                    let r1 = DepthwiseConv2D.row5(at + t, w + 5, c0, c1, c2, c3, c4)
                    let r2 = DepthwiseConv2D.row5(at + 2 * t, w + 10, c0, c1, c2, c3, c4)
                    let r3 = DepthwiseConv2D.row5(at + 3 * t, w + 15, c0, c1, c2, c3, c4)
                    let r4 = DepthwiseConv2D.row5(at + 4 * t, w + 20, c0, c1, c2, c3, c4)
                    acc = ((bv + r0) + (r1 + r2)) + (r3 + r4)
                } else {
                    var even = bv, odd = SIMD8<Float>()
                    for ky in 0..<kh {
                        let r = at + ky * tapRowStep * 4, wk = w + ky * kw
                        for kx in 0..<kw {
                            if (ky * kw + kx) & 1 == 0 {
                                even += wk[kx] * NNVec.load(r, c[kx] * 4)
                            } else {
                                odd += wk[kx] * NNVec.load(r, c[kx] * 4)
                            }
                        }
                    }
                    acc = even + odd
                }
                if fused { acc = f(acc) }
                if ox + 8 <= ow {
                    UnsafeMutableRawPointer(drow + ox).storeBytes(of: acc, as: SIMD8<Float>.self)
                } else {
                    for l in 0..<(ow - ox) { drow[ox + l] = acc[l] }
                }
                ox += 8
            }
            if let residual {
                let rrow = residual + oy * ow
                for i in 0..<ow { drow[i] = f(drow[i] + rrow[i]) }
            }
        }
    }
}
