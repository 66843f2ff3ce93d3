/// Depthwise convolution (one output channel per input channel) computed eight channels at a
/// time: `y[N, C, OH, OW]`, channel `c` convolved with its own `kH x kW` filter.
///
/// Each work item (image, block of eight channels, band of output rows) first interleaves the
/// band's input rows into a zero-padded scratch laid out `[row, column, 8 channels]`, so every
/// tap of an output pixel is one aligned 8-float load and one multiply-add whatever the plane
/// width, stride, dilation or padding. Four neighbouring output pixels are computed together.
/// Each output row is then spread back to the eight planes, with the epilogue (residual add and
/// activation) applied on the way out. Small planes such as 7x7 and 14x14, where a row of
/// outputs fills less than two vectors, are where this wins over a per-plane kernel.
final class BlockedDepthwiseConv2D: @unchecked Sendable {
    let geometry: ConvGeometry
    let epilogue: ConvEpilogue
    private let blocks: Int
    /// Padded columns a band reads: `(OW - 1) * sW + (kW - 1) * dW + 1`.
    private let paddedCols: Int
    private let bandRows: Int
    private let bands: Int
    private let chunks: Int
    /// Floats of one chunk's scratch: the interleaved band, one output row, the taps and bias.
    private let scratchSize: Int
    private let scratch: UnsafeMutablePointer<Float>

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
        scratchSize = bandFloats(bandRows) + g.outW * 8 + kArea * 8 + 8
        scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchSize * chunks * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: scratchSize * chunks)
        scratch.initialize(repeating: 0, count: scratchSize * chunks)
    }

    deinit { scratch.deallocate() }

    /// `x` `[N, C, H, W]`, `weight` `[C, 1, kH, kW]`, `bias` `[C]` or nil, `residual`
    /// `[N, C, OH, OW]` (read when the epilogue has one), `y` `[N, C, OH, OW]` (overwritten).
    func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 residual: UnsafePointer<Float>? = nil, y: UnsafeMutablePointer<Float>) {
        epilogue.activation.dispatch(Run(conv: self, x: x, weight: weight, bias: bias, residual: residual, y: y))
    }

    private struct Run: EpilogueVisitor {
        let conv: BlockedDepthwiseConv2D
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
        let items = g.batch * blocks * bands, chunks = self.chunks
        NNParallel.run(chunks) { i in
            let band = self.scratch + i * self.scratchSize
            let row = band + (self.scratchSize - g.outW * 8 - g.kernelH * g.kernelW * 8 - 8)
            let taps = row + g.outW * 8
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
                for oy in oy0..<oy1 {
                    self.computeRow(f, band, oy - oy0, taps, b8, row, fused: residual == nil)
                    let out = (n * g.outChannels + c0) * g.outH * g.outW + oy * g.outW
                    self.spread(f, row, lanes, y + out, residual.map { $0 + out })
                }
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
                for c in lo..<hi {
                    out.storeBytes(of: SIMD8<Float>(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c], s7[c]),
                                   toByteOffset: c * 32, as: SIMD8<Float>.self)
                }
            } else {
                for c in lo..<hi {
                    for l in 0..<8 { dst[c * 8 + l] = l < lanes ? src[l * inPlane + c] : 0 }
                }
            }
        }
    }

    /// One output row of eight channels, `row[ox * 8 + lane]`, from band row `r = oyLocal * sH`.
    /// The activation is applied here when no residual is added afterwards.
    @inline(__always)
    private func computeRow<F: EpilogueFunction>(_ f: F, _ band: UnsafePointer<Float>, _ oyLocal: Int,
                                                 _ taps: UnsafePointer<Float>, _ b8: UnsafePointer<Float>,
                                                 _ row: UnsafeMutablePointer<Float>, fused: Bool) {
        let g = geometry
        let kh = g.kernelH, kw = g.kernelW, ow = g.outW
        let rowBytes = paddedCols * 32
        let tapStep = g.dilationW * 32, pixelStep = g.strideW * 32, rowStep = g.dilationH * rowBytes
        let top = UnsafeRawPointer(band) + oyLocal * g.strideH * rowBytes
        let w = UnsafeRawPointer(taps), out = UnsafeMutableRawPointer(row)
        let bias = UnsafeRawPointer(b8).loadUnaligned(as: SIMD8<Float>.self)
        var ox = 0
        while ox + 4 <= ow {
            var a0 = bias, a1 = bias, a2 = bias, a3 = bias
            var src = top + ox * pixelStep, wk = w
            for _ in 0..<kh {
                var p = src
                for _ in 0..<kw {
                    let t = wk.loadUnaligned(as: SIMD8<Float>.self)
                    a0.addProduct(p.loadUnaligned(as: SIMD8<Float>.self), t)
                    a1.addProduct(p.loadUnaligned(fromByteOffset: pixelStep, as: SIMD8<Float>.self), t)
                    a2.addProduct(p.loadUnaligned(fromByteOffset: 2 * pixelStep, as: SIMD8<Float>.self), t)
                    a3.addProduct(p.loadUnaligned(fromByteOffset: 3 * pixelStep, as: SIMD8<Float>.self), t)
                    p += tapStep; wk += 32
                }
                src += rowStep
            }
            if fused { a0 = f(a0); a1 = f(a1); a2 = f(a2); a3 = f(a3) }
            out.storeBytes(of: a0, toByteOffset: ox * 32, as: SIMD8<Float>.self)
            out.storeBytes(of: a1, toByteOffset: ox * 32 + 32, as: SIMD8<Float>.self)
            out.storeBytes(of: a2, toByteOffset: ox * 32 + 64, as: SIMD8<Float>.self)
            out.storeBytes(of: a3, toByteOffset: ox * 32 + 96, as: SIMD8<Float>.self)
            ox += 4
        }
        while ox < ow {
            var a = bias
            var src = top + ox * pixelStep, wk = w
            for _ in 0..<kh {
                var p = src
                for _ in 0..<kw {
                    a.addProduct(p.loadUnaligned(as: SIMD8<Float>.self), wk.loadUnaligned(as: SIMD8<Float>.self))
                    p += tapStep; wk += 32
                }
                src += rowStep
            }
            out.storeBytes(of: fused ? f(a) : a, toByteOffset: ox * 32, as: SIMD8<Float>.self)
            ox += 1
        }
    }

    /// Writes one interleaved output row to its `lanes` planes (`OH * OW` apart), adding the
    /// residual and applying the activation when there is a residual.
    @inline(__always)
    private func spread<F: EpilogueFunction>(_ f: F, _ row: UnsafePointer<Float>, _ lanes: Int,
                                             _ y: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>?) {
        let g = geometry
        let ow = g.outW, plane = g.outH * g.outW
        if let residual {
            for l in 0..<lanes {
                let d = y + l * plane, r = residual + l * plane
                for ox in 0..<ow { d[ox] = f(row[ox * 8 + l] + r[ox]) }
            }
        } else {
            for l in 0..<lanes {
                let d = y + l * plane
                for ox in 0..<ow { d[ox] = row[ox * 8 + l] }
            }
        }
    }
}
