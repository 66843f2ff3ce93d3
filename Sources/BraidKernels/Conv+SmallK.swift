import CKernels

/// The convolution product for few input channels per output (`patch <= limit`: a pointwise
/// convolution from 16 channels) or few output channels (a first 3x3 convolution over RGB to
/// 16 channels; see `prefers`), computed
/// directly instead of through `cblas_sgemm`. With so short an inner dimension OpenBLAS spends
/// most of its time packing (16x12544x27: 39 GFLOP/s here, against about 80 for square
/// products); this kernel keeps a 4-channel x 16-column tile of the output in registers, reads
/// each input vector once per tile, adds bias and residual before the only store, and applies
/// the activation to each 4-channel strip while it is in cache.
enum SmallPatchConv {
    /// The longest inner dimension (`C/group * kH * kW`) sent here whatever the output channels.
    static let limit = 16

    /// Whether a product of `m` output channels over inner dimension `k` runs here: a short
    /// inner dimension, or few output channels (fer's 8-channel 3x3 convolutions and its
    /// 7-class 3x3 head, where OpenBLAS's packing dominates a GEMM with 7 or 8 rows). From 17
    /// to 32 with more than 16 outputs, GEMM won (best of 50, both on 2 cores: SqueezeNet's
    /// 3x3/s2 3->64 at 224x224 0.95 against 0.56 ms, a 1x1 32->64 at 56x56 230 against 109 us;
    /// a 1x1 16->32 at 112x112 stays here, 141 against 273 us).
    static func prefers(m: Int, k: Int) -> Bool { k <= limit || (m <= 16 && k <= 2048) }

    /// `y[m, q] = f(sum_k w[m, k] * b[k, q] + bias[m] + r[m, q])` for `m < rows`, `q < cols`.
    /// `w` `[rows, k]` (row stride `k`); row `j` of `b` starts at `b + rowOffsets[j]` (rows
    /// `ldb` apart for a matrix, or shifted rows of a padded image for a direct convolution);
    /// `y` and `residual` `[rows, cols]` (row stride `ldy`), `bias` `[rows]` or nil.
    @inline(__always)
    static func product<F: EpilogueFunction>(_ f: F, rows: Int, cols: Int, k: Int, w: UnsafePointer<Float>,
                                             b: UnsafePointer<Float>, rowOffsets: UnsafePointer<Int>,
                                             bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                             y: UnsafeMutablePointer<Float>, ldy: Int) {
        var m = 0
        while m < rows {
            // A last tile of fewer than four channels repeats its last channel in the spare
            // rows of the tile and stores only the real ones.
            let valid = min(4, rows - m)
            let r1 = m + min(1, valid - 1), r2 = m + min(2, valid - 1), r3 = m + min(3, valid - 1)
            let w0 = w + m * k, w1 = w + r1 * k, w2 = w + r2 * k, w3 = w + r3 * k
            var b4 = (bias?[m] ?? 0, bias?[r1] ?? 0, bias?[r2] ?? 0, bias?[r3] ?? 0)
            // The strip's products, bias and residual are CKernels' `braid_smallk_strip`, built
            // for each instruction set (the last 16 columns step back to end at `cols`); the
            // activation is then applied to its rows while they are in cache.
            if cols >= 16 {
                withUnsafePointer(to: &b4) { bp in
                    bp.withMemoryRebound(to: Float.self, capacity: 4) { b4p in
                        braid_smallk_strip(b, rowOffsets, k, w0, w1, w2, w3, b4p, cols, y + m * ldy, ldy,
                                           residual.map { $0 + m * ldy }, valid)
                    }
                }
            } else {
                for r in m..<(m + valid) { tail(r, cols, k, w, b, rowOffsets, bias, residual, y, ldy) }
            }
            applyEpilogue(f, y + m * ldy, rows: valid, cols: cols, stride: ldy)
            m += 4
        }
    }

    /// Output channel `m` when there are fewer than 16 columns, before the activation: eight
    /// at a time (the last eight stepping back to end at `cols`), one at a time when fewer
    /// than eight.
    @inline(__always)
    private static func tail(_ m: Int, _ cols: Int, _ k: Int, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                             _ rowOffsets: UnsafePointer<Int>, _ bias: UnsafePointer<Float>?,
                             _ residual: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let wm = w + m * k, bm = bias?[m] ?? 0
        let yrow = y + m * ldy, rrow = residual.map { $0 + m * ldy }
        var q = 0
        while q < cols && cols >= 8 {
            if q + 8 > cols { q = cols - 8 }
            var a = SIMD8<Float>(repeating: bm)
            let braw = UnsafeRawPointer(b + q)
            for j in 0..<k {
                a += braw.loadUnaligned(fromByteOffset: rowOffsets[j] * 4, as: SIMD8<Float>.self) * wm[j]
            }
            if let rrow { a += UnsafeRawPointer(rrow + q).loadUnaligned(as: SIMD8<Float>.self) }
            UnsafeMutableRawPointer(yrow + q).storeBytes(of: a, as: SIMD8<Float>.self)
            q += 8
        }
        while q < cols {
            var a = bm
            for j in 0..<k { a += wm[j] * b[rowOffsets[j] + q] }
            if let rrow { a += rrow[q] }
            yrow[q] = a
            q += 1
        }
    }
}

/// A stride-1 convolution whose product `SmallPatchConv` computes, read straight from a
/// zero-padded copy of the input instead of an im2col matrix: with stride 1, row
/// `(c, ky, kx)` of the im2col matrix restricted to one output row is a contiguous run of
/// padded input row `oy + ky * dH` of channel `c`, starting at column `kx * dW`. The copy is
/// the size of the input; im2col would be `kH * kW` times that.
final class DirectSmallConv: EpilogueKernel, @unchecked Sendable {
    let geometry: ConvGeometry
    let epilogue: ConvEpilogue
    /// Padded row width, bands, rows per band, padded rows one band reads, floats per chunk.
    private let paddedW, bands, bandRows, paddedRows, chunkFloats: Int
    private let scratch: UnsafeMutablePointer<Float>
    private let offsets: UnsafeMutablePointer<Int>

    /// Stride 1 and a product `SmallPatchConv` prefers, or one of at most 64 output channels
    /// over at most 160 (SqueezeNet's 3x3 16->64 at 55x55: 1.06 -> 0.77 ms here; with 128 and
    /// 256 channels over 288 and 576, im2col + GEMM was as fast or faster), or of at most 32
    /// over at most 1152 (DenseNet-121's 3x3 128->32: 0.50 -> 0.28 ms at 14x14, 0.24 -> 0.08
    /// at 7x7, even at 56x56).
    static func handles(_ g: ConvGeometry) -> Bool {
        g.strideH == 1 && g.strideW == 1 && Conv2D.methodOf(g) == .im2col
            && (SmallPatchConv.prefers(m: g.groupOut, k: g.patch) || (g.groupOut <= 64 && g.patch <= 160)
                || (g.groupOut <= 32 && g.patch <= 1152))
    }

    /// Output rows narrower than a register tile (fer's 4x4 head) are computed as one run over
    /// the padded plane, `(OH - 1) * paddedW + OW` positions of which the `paddedW - OW` at the
    /// end of each row are thrown away, into `flatOut` and then copied out.
    private let flatCols: Int
    private let flatOut: UnsafeMutablePointer<Float>?

    init(_ g: ConvGeometry, epilogue: ConvEpilogue) {
        geometry = g
        self.epilogue = epilogue
        let workers = NNParallel.workers, images = g.batch * g.group
        paddedW = g.outW + (g.kernelW - 1) * g.dilationW
        // One image per core, or one image cut into row bands across the cores.
        bands = images < workers && g.outW >= 16 ? min(g.outH, workers) : 1
        bandRows = (g.outH + bands - 1) / bands
        paddedRows = bandRows + (g.kernelH - 1) * g.dilationH
        chunkFloats = max(1, g.groupIn * paddedRows * paddedW)
        scratch = .allocate(capacity: chunkFloats * workers)
        scratch.initialize(repeating: 0, count: chunkFloats * workers)
        flatCols = (g.outH - 1) * paddedW + g.outW
        if g.outW < 16 {
            flatOut = .allocate(capacity: max(1, g.groupOut * flatCols * workers))
        } else {
            flatOut = nil
        }
        offsets = .allocate(capacity: max(1, g.patch))
        for r in 0..<g.patch {
            let kx = r % g.kernelW, ky = (r / g.kernelW) % g.kernelH, c = r / (g.kernelW * g.kernelH)
            offsets[r] = (c * paddedRows + ky * g.dilationH) * paddedW + kx * g.dilationW
        }
    }

    deinit {
        scratch.deallocate()
        offsets.deallocate()
        flatOut?.deallocate()
    }


    func run<F: EpilogueFunction>(_ f: F, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                          bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                          y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let items = g.batch * g.group * bands, w = min(items, NNParallel.workers)
        let outPlane = g.outH * g.outW, inPlane = g.inH * g.inW
        NNParallel.run(w) { worker in
            let pad = self.scratch + worker * self.chunkFloats
            for item in (items * worker / w)..<(items * (worker + 1) / w) {
                let band = item % self.bands, image = item / self.bands
                let n = image / g.group, grp = image % g.group
                let oy0 = band * self.bandRows, oy1 = min(g.outH, oy0 + self.bandRows)
                if oy0 >= oy1 { continue }
                self.fill(x + (n * g.inChannels + grp * g.groupIn) * inPlane, oy0, oy1, pad)
                let first = grp * g.groupOut
                if let flatOut = self.flatOut {
                    let out = flatOut + worker * g.groupOut * self.flatCols
                    SmallPatchConv.product(IdentityEpilogue(), rows: g.groupOut, cols: self.flatCols, k: g.patch,
                                           w: weight + first * g.patch, b: pad, rowOffsets: self.offsets,
                                           bias: bias.map { $0 + first }, residual: nil, y: out, ldy: self.flatCols)
                    let at = (n * g.outChannels + first) * outPlane
                    for m in 0..<g.groupOut {
                        for oy in 0..<g.outH {
                            let src = out + m * self.flatCols + oy * self.paddedW
                            let o = at + m * outPlane + oy * g.outW
                            if let residual {
                                for ox in 0..<g.outW { y[o + ox] = src[ox] + residual[o + ox] }
                            } else {
                                (y + o).update(from: src, count: g.outW)
                            }
                        }
                    }
                    applyEpilogue(f, y + at, rows: g.groupOut, cols: outPlane, stride: outPlane)
                    continue
                }
                for oy in oy0..<oy1 {
                    let at = (n * g.outChannels + first) * outPlane + oy * g.outW
                    SmallPatchConv.product(IdentityEpilogue(), rows: g.groupOut, cols: g.outW, k: g.patch,
                                           w: weight + first * g.patch, b: pad + (oy - oy0) * self.paddedW,
                                           rowOffsets: self.offsets, bias: bias.map { $0 + first },
                                           residual: residual.map { $0 + at }, y: y + at, ldy: outPlane)
                }
                // The activation once over the band's rows of each channel (one run each).
                applyEpilogue(f, y + (n * g.outChannels + first) * outPlane + oy0 * g.outW, rows: g.groupOut,
                              cols: (oy1 - oy0) * g.outW, stride: outPlane)
            }
        }
    }

    /// Copies the input rows that output rows `oy0 ..< oy1` read into `pad`
    /// `[C/group, paddedRows, paddedW]`, zero outside the input.
    private func fill(_ src: UnsafePointer<Float>, _ oy0: Int, _ oy1: Int, _ pad: UnsafeMutablePointer<Float>) {
        let g = geometry
        let rows = oy1 - oy0 + (g.kernelH - 1) * g.dilationH
        let lo = min(paddedW, g.padLeft), hi = max(lo, min(paddedW, g.padLeft + g.inW))
        for c in 0..<g.groupIn {
            for r in 0..<rows {
                let dst = pad + (c * paddedRows + r) * paddedW
                let iy = oy0 + r - g.padTop
                guard iy >= 0 && iy < g.inH else {
                    dst.update(repeating: 0, count: paddedW)
                    continue
                }
                if lo > 0 { dst.update(repeating: 0, count: lo) }
                (dst + lo).update(from: src + c * g.inH * g.inW + iy * g.inW + lo - g.padLeft, count: hi - lo)
                if hi < paddedW { (dst + hi).update(repeating: 0, count: paddedW - hi) }
            }
        }
    }
}
