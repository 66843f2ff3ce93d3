import CKernels

/// Depthwise convolution (one output channel per input channel) computed eight channels at a
/// time: `y[N, C, OH, OW]`, channel `c` convolved with its own `kH x kW` filter.
///
/// Each work item (image, block of eight channels, band of output rows) first interleaves the
/// band's input rows into a zero-padded scratch laid out `[row, column, 8 channels]`, so every
/// tap of an output pixel is one aligned 8-float load and one multiply-add whatever the plane
/// width, stride, dilation or padding. Eight output pixels are computed together. Each output
/// row is then spread back to the eight planes, with the residual added on the way out and
/// the activation applied to the runs just written. Small planes such as 7x7 and 14x14, where a row of
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
                // The eight rows interleaved by CKernels at the CPU's vector width.
                braid_interleave8(src + lo, inPlane, hi - lo, dst + lo * 8)
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
    /// residual if there is one, then applies the activation to those runs while they are in
    /// cache (both in CKernels at the CPU's vector width).
    @inline(__always)
    private func spread<F: EpilogueFunction>(_ f: F, _ outs: UnsafePointer<Float>, _ pixels: Int, _ lanes: Int,
                                             _ y: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>?) {
        let plane = geometry.outH * geometry.outW
        if lanes == 8 {
            braid_deinterleave8(outs, pixels, y, plane, residual)
        } else {
            for l in 0..<lanes {
                let d = y + l * plane, r = residual.map { $0 + l * plane }
                for q in 0..<pixels { d[q] = outs[q * 8 + l] + (r?[q] ?? 0) }
            }
        }
        applyEpilogue(f, y, rows: lanes, cols: pixels, stride: plane)
    }
}
