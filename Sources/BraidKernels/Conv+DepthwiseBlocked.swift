import CKernels

/// Depthwise convolution (one output channel per input channel) computed eight channels at a
/// time: `y[N, C, OH, OW]`, channel `c` convolved with its own `kH x kW` filter.
///
/// Each work item (image, block of eight channels, band of output rows) first interleaves the
/// band's input rows into a zero-padded scratch laid out `[row, column, 8 channels]`, so every
/// tap of an output pixel is one aligned 8-float load and one multiply-add whatever the plane
/// width, stride, dilation or padding. Eight output pixels are computed together. Each output
/// row is then spread back to the eight planes, with the epilogue (residual add and
/// activation) applied on the way out. Small planes such as 7x7 and 14x14, where a row of
/// outputs fills less than two vectors, are where this wins over a per-plane kernel.
final class BlockedDepthwiseConv2D: EpilogueKernel, @unchecked Sendable {
    let geometry: ConvGeometry
    let epilogue: ConvEpilogue
    /// Channel blocks; padded columns a band reads (`(OW - 1) * sW + (kW - 1) * dW + 1`); rows
    /// per band; bands; chunks; floats of one chunk's scratch (the interleaved band, its
    /// interleaved outputs, the taps and bias).
    private let blocks, paddedCols, bandRows, bands, chunks, scratchSize: Int
    private let scratch: UnsafeMutablePointer<Float>
    /// Byte offset in the band of each band output pixel's first tap, then of each tap from it.
    private let pixelOffsets: UnsafeMutablePointer<Int>
    private let tapOffsets: UnsafeMutablePointer<Int>

    /// Whether this kernel handles geometry `g`: one input and one output channel per group.
    static func handles(_ g: ConvGeometry) -> Bool {
        g.group > 1 && g.groupIn == 1 && g.groupOut == 1
    }

    init(_ g: ConvGeometry, epilogue: ConvEpilogue = .none) {
        precondition(BlockedDepthwiseConv2D.handles(g))
        geometry = g
        self.epilogue = epilogue
        blocks = (g.outChannels + 7) / 8
        let cols = max(1, (g.outW - 1) * g.strideW + (g.kernelW - 1) * g.dilationW + 1)
        paddedCols = cols
        let kArea = g.kernelH * g.kernelW
        let workers = NNParallel.workers
        // Vector multiply-adds in the whole convolution; below this a second thread costs more
        // than it saves.
        let work = g.batch * blocks * g.outH * g.outW * kArea
        let parallel = workers > 1 && work >= 24_000
        // Bands: enough items for the cores, and a band's scratch within about 256 KB.
        var rows = g.outH
        func bandFloats(_ r: Int) -> Int { ((r - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1) * cols * 8 }
        while rows > 1 && (bandFloats(rows) > 65_536 || (parallel && g.batch * blocks * ((g.outH + rows - 1) / rows) < 2 * workers)) {
            rows = (rows + 1) / 2
        }
        bandRows = max(1, rows)
        bands = (g.outH + bandRows - 1) / bandRows
        let items = g.batch * blocks * bands
        chunks = parallel ? min(items, workers) : 1
        scratchSize = bandFloats(bandRows) + bandRows * g.outW * 8 + kArea * 8 + 8
        pixelOffsets = .allocate(capacity: max(1, bandRows * g.outW))
        for r in 0..<bandRows {
            for ox in 0..<g.outW { pixelOffsets[r * g.outW + ox] = (r * g.strideH * cols + ox * g.strideW) * 32 }
        }
        tapOffsets = .allocate(capacity: max(1, kArea))
        for ky in 0..<g.kernelH {
            for kx in 0..<g.kernelW { tapOffsets[ky * g.kernelW + kx] = (ky * g.dilationH * cols + kx * g.dilationW) * 32 }
        }
        scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchSize * chunks * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: scratchSize * chunks)
        scratch.initialize(repeating: 0, count: scratchSize * chunks)
    }

    deinit {
        scratch.deallocate()
        pixelOffsets.deallocate()
        tapOffsets.deallocate()
    }


    func run<F: EpilogueFunction>(_ f: F, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                          bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                          y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let items = g.batch * blocks * bands, chunks = self.chunks
        NNParallel.run(chunks) { i in
            let band = self.scratch + i * self.scratchSize
            let outs = band + (self.scratchSize - self.bandRows * g.outW * 8 - g.kernelH * g.kernelW * 8 - 8)
            let taps = outs + self.bandRows * g.outW * 8
            let b8 = taps + g.kernelH * g.kernelW * 8
            var current = -1
            for item in (items * i / chunks)..<(items * (i + 1) / chunks) {
                let n = item / (self.blocks * self.bands)
                let block = (item / self.bands) % self.blocks
                let oy0 = (item % self.bands) * self.bandRows
                let oy1 = min(g.outH, oy0 + self.bandRows)
                let c0 = block * 8, lanes = min(8, g.outChannels - c0)
                if block != current {
                    self.packTaps(weight, bias, c0, lanes, taps, b8)
                    current = block
                }
                self.packBand(x, n, c0, lanes, oy0, oy1, band)
                let pixels = (oy1 - oy0) * g.outW
                self.computeBand(band, pixels, taps, b8, outs)
                let out = (n * g.outChannels + c0) * g.outH * g.outW + oy0 * g.outW
                self.spread(f, outs, pixels, lanes, y + out, residual.map { $0 + out })
            }
        }
    }

    /// Interleaves the filters of channels `c0 ..< c0 + lanes` as `taps[k * 8 + lane]`, zero
    /// for the lanes past the last channel.
    private func packTaps(_ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ c0: Int, _ lanes: Int,
                          _ taps: UnsafeMutablePointer<Float>, _ b8: UnsafeMutablePointer<Float>) {
        let kArea = geometry.kernelH * geometry.kernelW
        for k in 0..<kArea {
            for l in 0..<8 { taps[k * 8 + l] = l < lanes ? weight[(c0 + l) * kArea + k] : 0 }
        }
        for l in 0..<8 { b8[l] = l < lanes ? (bias?[c0 + l] ?? 0) : 0 }
    }

    /// Fills the band scratch `[r, col, 8]` with the padded input rows that output rows
    /// `oy0 ..< oy1` read: `band[r, col, l] = x[n, c0 + l, oy0 * sH + r - padTop, col - padLeft]`,
    /// zero outside the input and for lanes past the last channel.
    private func packBand(_ x: UnsafePointer<Float>, _ n: Int, _ c0: Int, _ lanes: Int, _ oy0: Int, _ oy1: Int,
                          _ band: UnsafeMutablePointer<Float>) {
        let g = geometry
        let rows = (oy1 - oy0 - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1
        let cols = paddedCols, inPlane = g.inH * g.inW
        let lo = min(cols, g.padLeft), hi = max(lo, min(cols, g.padLeft + g.inW))
        let planes = x + (n * g.inChannels + c0) * inPlane
        for r in 0..<rows {
            let iy = oy0 * g.strideH + r - g.padTop
            let dst = band + r * cols * 8
            guard iy >= 0 && iy < g.inH else {
                dst.update(repeating: 0, count: cols * 8)
                continue
            }
            if lo > 0 { dst.update(repeating: 0, count: lo * 8) }
            if hi < cols { (dst + hi * 8).update(repeating: 0, count: (cols - hi) * 8) }
            let src = planes + iy * g.inW - g.padLeft
            if lanes == 8 {
                let s0 = src, s1 = src + inPlane, s2 = src + 2 * inPlane, s3 = src + 3 * inPlane
                let s4 = src + 4 * inPlane, s5 = src + 5 * inPlane, s6 = src + 6 * inPlane, s7 = src + 7 * inPlane
                let out = UnsafeMutableRawPointer(dst)
                var c = lo
                while c + 8 <= hi {
                    let (t0, t1, t2, t3, t4, t5, t6, t7) = transpose8(
                        load8(s0 + c), load8(s1 + c), load8(s2 + c), load8(s3 + c),
                        load8(s4 + c), load8(s5 + c), load8(s6 + c), load8(s7 + c))
                    storeConsecutive(out + c * 32, t0, t1, t2, t3, t4, t5, t6, t7)
                    c += 8
                }
                while c < hi {
                    out.storeBytes(of: SIMD8<Float>(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c], s7[c]),
                                   toByteOffset: c * 32, as: SIMD8<Float>.self)
                    c += 1
                }
            } else {
                for c in lo..<hi {
                    for l in 0..<8 { dst[c * 8 + l] = l < lanes ? src[l * inPlane + c] : 0 }
                }
            }
        }
    }

    /// The band's first `pixels` outputs of eight channels, `outs[p * 8 + lane]` for band pixel
    /// `p = oyLocal * OW + ox`, before the activation. Eight pixels are computed together,
    /// whatever rows they sit on, so eight independent multiply-add chains keep both FMA units
    /// busy; the loop is CKernels' `braid_dw8_accumulate`, built for each instruction set.
    @inline(__always)
    private func computeBand(_ band: UnsafePointer<Float>, _ pixels: Int, _ taps: UnsafePointer<Float>,
                             _ b8: UnsafePointer<Float>, _ outs: UnsafeMutablePointer<Float>) {
        braid_dw8_accumulate(band, pixelOffsets, tapOffsets, pixels, geometry.kernelH * geometry.kernelW, taps, b8, outs)
    }

    /// Writes the band's interleaved outputs `outs[p * 8 + lane]` to its `lanes` planes
    /// (`OH * OW` apart; band pixel `p` is element `p` of each plane from `y`), adding the
    /// residual if there is one and applying the activation.
    @inline(__always)
    private func spread<F: EpilogueFunction>(_ f: F, _ outs: UnsafePointer<Float>, _ pixels: Int, _ lanes: Int,
                                             _ y: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>?) {
        let plane = geometry.outH * geometry.outW
        var p = 0
        if lanes == 8 {
            let src = UnsafeRawPointer(outs)
            while p + 8 <= pixels {
                let at = p * 32
                var (t0, t1, t2, t3, t4, t5, t6, t7) = transpose8(
                    src.loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self),
                    src.loadUnaligned(fromByteOffset: at + 32, as: SIMD8<Float>.self),
                    src.loadUnaligned(fromByteOffset: at + 64, as: SIMD8<Float>.self),
                    src.loadUnaligned(fromByteOffset: at + 96, as: SIMD8<Float>.self),
                    src.loadUnaligned(fromByteOffset: at + 128, as: SIMD8<Float>.self),
                    src.loadUnaligned(fromByteOffset: at + 160, as: SIMD8<Float>.self),
                    src.loadUnaligned(fromByteOffset: at + 192, as: SIMD8<Float>.self),
                    src.loadUnaligned(fromByteOffset: at + 224, as: SIMD8<Float>.self))
                if let residual {
                    let r = residual + p
                    t0 = f(t0 + load8(r)); t1 = f(t1 + load8(r + plane)); t2 = f(t2 + load8(r + 2 * plane))
                    t3 = f(t3 + load8(r + 3 * plane)); t4 = f(t4 + load8(r + 4 * plane))
                    t5 = f(t5 + load8(r + 5 * plane)); t6 = f(t6 + load8(r + 6 * plane))
                    t7 = f(t7 + load8(r + 7 * plane))
                } else {
                    t0 = f(t0); t1 = f(t1); t2 = f(t2); t3 = f(t3); t4 = f(t4); t5 = f(t5); t6 = f(t6); t7 = f(t7)
                }
                let d = y + p
                store8(t0, d); store8(t1, d + plane); store8(t2, d + 2 * plane); store8(t3, d + 3 * plane)
                store8(t4, d + 4 * plane); store8(t5, d + 5 * plane); store8(t6, d + 6 * plane)
                store8(t7, d + 7 * plane)
                p += 8
            }
        }
        if let residual {
            for l in 0..<lanes {
                let d = y + l * plane, r = residual + l * plane
                for q in p..<pixels { d[q] = f(outs[q * 8 + l] + r[q]) }
            }
        } else {
            for l in 0..<lanes {
                let d = y + l * plane
                for q in p..<pixels { d[q] = f(outs[q * 8 + l]) }
            }
        }
    }
}

@inline(__always)
private func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

/// Eight vectors stored one after another from `p`.
@inline(__always)
private func storeConsecutive(_ p: UnsafeMutableRawPointer, _ v0: SIMD8<Float>, _ v1: SIMD8<Float>, _ v2: SIMD8<Float>,
                              _ v3: SIMD8<Float>, _ v4: SIMD8<Float>, _ v5: SIMD8<Float>, _ v6: SIMD8<Float>,
                              _ v7: SIMD8<Float>) {
    p.storeBytes(of: v0, as: SIMD8<Float>.self)
    p.storeBytes(of: v1, toByteOffset: 32, as: SIMD8<Float>.self)
    p.storeBytes(of: v2, toByteOffset: 64, as: SIMD8<Float>.self)
    p.storeBytes(of: v3, toByteOffset: 96, as: SIMD8<Float>.self)
    p.storeBytes(of: v4, toByteOffset: 128, as: SIMD8<Float>.self)
    p.storeBytes(of: v5, toByteOffset: 160, as: SIMD8<Float>.self)
    p.storeBytes(of: v6, toByteOffset: 192, as: SIMD8<Float>.self)
    p.storeBytes(of: v7, toByteOffset: 224, as: SIMD8<Float>.self)
}

@inline(__always)
private func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// The 8x8 transpose of rows `r0 ... r7`. Viewing the 64 floats as one array indexed by
/// `(row, column)` bits, taking the even elements and then the odd ones rotates the index bits
/// by one; three such rounds swap the row and column bits.
@inline(__always)
func transpose8(_ r0: SIMD8<Float>, _ r1: SIMD8<Float>, _ r2: SIMD8<Float>, _ r3: SIMD8<Float>,
                _ r4: SIMD8<Float>, _ r5: SIMD8<Float>, _ r6: SIMD8<Float>, _ r7: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    @inline(__always)
    func round(_ v: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>))
        -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        let p0 = SIMD16(lowHalf: v.0, highHalf: v.1), p1 = SIMD16(lowHalf: v.2, highHalf: v.3)
        let p2 = SIMD16(lowHalf: v.4, highHalf: v.5), p3 = SIMD16(lowHalf: v.6, highHalf: v.7)
        return (p0.evenHalf, p1.evenHalf, p2.evenHalf, p3.evenHalf, p0.oddHalf, p1.oddHalf, p2.oddHalf, p3.oddHalf)
    }
    return round(round(round((r0, r1, r2, r3, r4, r5, r6, r7))))
}
