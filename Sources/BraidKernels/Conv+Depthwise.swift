/// Direct convolution for groups with one input channel each (depthwise, with any channel
/// multiplier): `y[N, M, OH, OW]`, output channel `m` reading input channel `m / (M / C)` through
/// its own `kH x kW` filter.
///
/// Each plane is first copied into a zero-padded scratch whose rows are split into `strideW`
/// phases (phase `p` holds padded columns `p, p + s, p + 2s, ...`), so every tap of eight
/// neighbouring outputs is one contiguous 8-float load whatever the stride and padding, with no
/// border cases. 3x3 and 5x5 filter rows are unrolled. The epilogue (residual add and
/// activation) is applied to each output row while it is in registers or L1.
final class DepthwiseConv2D: EpilogueKernel, @unchecked Sendable {
    let geometry: ConvGeometry
    let epilogue: ConvEpilogue
    /// Floats in one phase row of the padded scratch (a multiple of 8 outputs plus the taps'
    /// reach), padded input rows the outputs read, scratch floats per chunk, and chunks.
    private let phaseLength, paddedRows, scratchSize, chunks: Int
    private let scratch: UnsafeMutablePointer<Float>
    /// Per filter column `kx`: offset of its tap from the output column inside a padded row.
    private let columnOffsets: UnsafeMutablePointer<Int>
    /// Per phase: the phase-row entries `[lo, hi)` that hold input columns, and the first column.
    private let phaseRanges: UnsafeMutablePointer<Int>
    /// Per chunk: the current filter's taps, each broadcast to a vector.
    private let tapVectors: UnsafeMutablePointer<SIMD8<Float>>

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
        tapVectors = .allocate(capacity: max(1, g.kernelH * g.kernelW) * chunks)
        tapVectors.initialize(repeating: SIMD8(), count: max(1, g.kernelH * g.kernelW) * chunks)
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
        scratch.deallocate(); tapVectors.deallocate()
        columnOffsets.deallocate(); phaseRanges.deallocate()
    }


    func run<F: EpilogueFunction>(_ f: F, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                          bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                          y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let planes = g.batch * g.outChannels, chunks = self.chunks
        let outPlane = g.outH * g.outW, kArea = g.kernelH * g.kernelW
        NNParallel.run(chunks) { i in
            let pad = self.scratch + i * self.scratchSize
            let taps = self.tapVectors + i * max(1, kArea)
            var lastInput = -1
            for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
                let m = p % g.outChannels, n = p / g.outChannels
                let input = n * g.inChannels + m / g.groupOut
                if input != lastInput {
                    fillPadded(x + input * g.inH * g.inW, pad)
                    lastInput = input
                }
                for k in 0..<kArea { taps[k] = SIMD8(repeating: weight[m * kArea + k]) }
                plane(f, pad, taps, bias?[m] ?? 0, residual.map { $0 + p * outPlane }, y + p * outPlane)
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
    private static func row3(_ r: UnsafeRawPointer, _ w: UnsafePointer<SIMD8<Float>>,
                             _ c0: Int, _ c1: Int, _ c2: Int) -> SIMD8<Float> {
        (w[0] * NNVec.load(r, c0) + w[1] * NNVec.load(r, c1)) + w[2] * NNVec.load(r, c2)
    }

    @inline(__always)
    private static func row5(_ r: UnsafeRawPointer, _ w: UnsafePointer<SIMD8<Float>>,
                             _ c0: Int, _ c1: Int, _ c2: Int, _ c3: Int, _ c4: Int) -> SIMD8<Float> {
        ((w[0] * NNVec.load(r, c0) + w[1] * NNVec.load(r, c1)) + (w[2] * NNVec.load(r, c2) + w[3] * NNVec.load(r, c3)))
            + w[4] * NNVec.load(r, c4)
    }

    /// Applies the activation (when no residual follows) and stores up to eight outputs.
    @inline(__always)
    private static func put<F: EpilogueFunction>(_ f: F, _ acc: SIMD8<Float>, _ fused: Bool,
                                                 _ drow: UnsafeMutablePointer<Float>, _ ox: Int, _ ow: Int) {
        let v = fused ? f(acc) : acc
        if ox + 8 <= ow {
            UnsafeMutableRawPointer(drow + ox).storeBytes(of: v, as: SIMD8<Float>.self)
        } else {
            for l in 0..<(ow - ox) { drow[ox + l] = v[l] }
        }
    }

    /// One output plane from its padded input. `w` holds the filter's taps broadcast to
    /// vectors. Where a 3x3 or 5x5 filter's rows overlap from one output row to the next, two
    /// output rows are computed together so each input vector is loaded once for both.
    @inline(__always)
    private func plane<F: EpilogueFunction>(_ f: F, _ pad: UnsafePointer<Float>, _ w: UnsafePointer<SIMD8<Float>>,
                                            _ b: Float, _ residual: UnsafePointer<Float>?,
                                            _ dst: UnsafeMutablePointer<Float>) {
        let g = geometry
        let ow = g.outW, oh = g.outH, kw = g.kernelW, kh = g.kernelH, sh = g.strideH
        let rowFloats = max(1, g.strideW) * phaseLength
        let rowStep = sh * rowFloats * 4, t = g.dilationH * rowFloats * 4
        let c = columnOffsets
        let fused = residual == nil
        let bv = SIMD8<Float>(repeating: b)
        let paired = (kw == 3 || kw == 5) && kh == kw && g.dilationH == 1 && sh < kh
        var oy = 0
        while oy < oh {
            let two = paired && oy + 1 < oh
            let top = UnsafeRawPointer(pad) + oy * rowStep
            let d0 = dst + oy * ow, d1 = d0 + ow
            var ox = 0
            while ox < ow {
                let at = top + ox * 4
                if two && kw == 3 {
                    let c0 = c[0] * 4, c1 = c[1] * 4, c2 = c[2] * 4
                    var a0 = bv, a1 = bv
                    for j in 0..<(3 + sh) {
                        let r = at + j * t
                        let v0 = NNVec.load(r, c0), v1 = NNVec.load(r, c1), v2 = NNVec.load(r, c2)
                        if j < 3 { a0 += (w[3 * j] * v0 + w[3 * j + 1] * v1) + w[3 * j + 2] * v2 }
                        if j >= sh { let k = 3 * (j - sh); a1 += (w[k] * v0 + w[k + 1] * v1) + w[k + 2] * v2 }
                    }
                    DepthwiseConv2D.put(f, a0, fused, d0, ox, ow)
                    DepthwiseConv2D.put(f, a1, fused, d1, ox, ow)
                } else if two {
                    let c0 = c[0] * 4, c1 = c[1] * 4, c2 = c[2] * 4, c3 = c[3] * 4, c4 = c[4] * 4
                    var a0 = bv, a1 = bv
                    for j in 0..<(5 + sh) {
                        let r = at + j * t
                        let v0 = NNVec.load(r, c0), v1 = NNVec.load(r, c1), v2 = NNVec.load(r, c2)
                        let v3 = NNVec.load(r, c3), v4 = NNVec.load(r, c4)
                        if j < 5 {
                            let k = 5 * j
                            a0 += ((w[k] * v0 + w[k + 1] * v1) + (w[k + 2] * v2 + w[k + 3] * v3)) + w[k + 4] * v4
                        }
                        if j >= sh {
                            let k = 5 * (j - sh)
                            a1 += ((w[k] * v0 + w[k + 1] * v1) + (w[k + 2] * v2 + w[k + 3] * v3)) + w[k + 4] * v4
                        }
                    }
                    DepthwiseConv2D.put(f, a0, fused, d0, ox, ow)
                    DepthwiseConv2D.put(f, a1, fused, d1, ox, ow)
                } else if kw == 3 && kh == 3 {
                    let c0 = c[0] * 4, c1 = c[1] * 4, c2 = c[2] * 4
                    let r0 = DepthwiseConv2D.row3(at, w, c0, c1, c2)
                    let r1 = DepthwiseConv2D.row3(at + t, w + 3, c0, c1, c2)
                    let r2 = DepthwiseConv2D.row3(at + 2 * t, w + 6, c0, c1, c2)
                    DepthwiseConv2D.put(f, (bv + r0) + (r1 + r2), fused, d0, ox, ow)
                } else if kw == 5 && kh == 5 {
                    let c0 = c[0] * 4, c1 = c[1] * 4, c2 = c[2] * 4, c3 = c[3] * 4, c4 = c[4] * 4
                    let r0 = DepthwiseConv2D.row5(at, w, c0, c1, c2, c3, c4)
                    let r1 = DepthwiseConv2D.row5(at + t, w + 5, c0, c1, c2, c3, c4)
                    let r2 = DepthwiseConv2D.row5(at + 2 * t, w + 10, c0, c1, c2, c3, c4)
                    let r3 = DepthwiseConv2D.row5(at + 3 * t, w + 15, c0, c1, c2, c3, c4)
                    let r4 = DepthwiseConv2D.row5(at + 4 * t, w + 20, c0, c1, c2, c3, c4)
                    DepthwiseConv2D.put(f, ((bv + r0) + (r1 + r2)) + (r3 + r4), fused, d0, ox, ow)
                } else {
                    // Two running sums instead of one halve the chain of dependent adds.
                    var even = bv, odd = SIMD8<Float>()
                    for ky in 0..<kh {
                        let r = at + ky * t, wk = w + ky * kw
                        for kx in 0..<kw {
                            if (ky * kw + kx) & 1 == 0 {
                                even += wk[kx] * NNVec.load(r, c[kx] * 4)
                            } else {
                                odd += wk[kx] * NNVec.load(r, c[kx] * 4)
                            }
                        }
                    }
                    DepthwiseConv2D.put(f, even + odd, fused, d0, ox, ow)
                }
                ox += 8
            }
            if let residual {
                for row in 0..<(two ? 2 : 1) {
                    let drow = d0 + row * ow, rrow = residual + (oy + row) * ow
                    for i in 0..<ow { drow[i] = f(drow[i] + rrow[i]) }
                }
            }
            oy += two ? 2 : 1
        }
    }
}
