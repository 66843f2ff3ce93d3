/// A 3x3 stride-1 convolution with constant weights by Winograd's minimal filtering F(2x2, 3x3)
/// (Lavin and Gray, 2016): each 2x2 output tile comes from a 4x4 input tile through 16
/// element-wise products instead of 36 multiply-adds, so the GEMM work is 2.25 times smaller.
///
/// With `U = G g Gᵀ` per (output, input) channel pair (done once, here), `V = Bᵀ d Bᵀᵀ` per
/// (input channel, tile) and `Y = Aᵀ [Σ_c U ⊙ V] A`, the sum over channels is 16 GEMMs
/// `M[ξ] = U[ξ] · V[ξ]`, `[M, C] x [C, tiles]`, one per position ξ of the 4x4 tile.
///
/// Tiles are taken in blocks of whole tile rows so that one block's transformed input
/// (`16 x C x tiles` floats) stays in L2; blocks are spread over the cores, and when there are
/// fewer blocks than cores (one small image) the output channels are split instead.
public final class WinogradConv3x3: EpilogueKernel, @unchecked Sendable {
    public let geometry: ConvGeometry
    public let epilogue: ConvEpilogue
    /// Transformed weights `[16, M, C]`.
    private let u: UnsafeMutablePointer<Float>
    private let tilesH: Int, tilesW: Int
    /// Tile rows per block, the row stride of `V` and of the products (the tiles of a block plus
    /// slack), blocks over all images, output-channel slices.
    private let rowsPerBlock: Int, blockTiles: Int, blocks: Int, slices: Int
    /// Floats per row of a padded 4-row input strip.
    private let stripW: Int
    /// Per worker: the padded strip, `V` `[16, C, blockTiles]` and the products `[16, M, blockTiles]`.
    private let scratch: UnsafeMutablePointer<Float>
    private let scratchPerWorker: Int, workerCount: Int

    /// Whether this kernel computes `g`: 3x3, stride 1, no dilation, one group, enough
    /// channels for the GEMMs to pay, and either a plane of at least 64 outputs or at least
    /// 64K channel pairs (DenseNet's 128->32 at 7x7 is faster through im2col: 61 against 105 us).
    public static func handles(_ g: ConvGeometry) -> Bool {
        g.kernelH == 3 && g.kernelW == 3 && g.strideH == 1 && g.strideW == 1 && g.dilationH == 1
            && g.dilationW == 1 && g.group == 1 && g.inChannels >= 32 && g.outChannels >= 16
            && g.outH >= 2 && g.outW >= 2 && g.padTop <= 2 && g.padLeft <= 2
            && (g.outH * g.outW >= 64 || g.inChannels * g.outChannels >= 65_536)
    }

    /// `weight` `[M, C, 3, 3]` is read once, here; the kernel ignores the weight passed to `forward`.
    public init(_ g: ConvGeometry, weight: UnsafePointer<Float>, epilogue: ConvEpilogue = .none) {
        precondition(WinogradConv3x3.handles(g), "WinogradConv3x3: unsupported geometry \(g)")
        geometry = g
        self.epilogue = epilogue
        let m = g.outChannels, c = g.inChannels
        u = .allocate(capacity: 16 * m * c)
        tilesH = (g.outH + 1) / 2
        tilesW = (g.outW + 1) / 2
        let workers = NNParallel.workers
        // About 768 KB of transformed input per block, at least 16 tiles; whole rounds of
        // blocks over the cores.
        let target = max(16, 12_288 / c)
        let tileRows = g.batch * tilesH
        var rows = min(tileRows, max(1, target / tilesW))
        var count = (tileRows + rows - 1) / rows
        if count > 1 && count % workers != 0 {
            count = (count + workers - 1) / workers * workers
            rows = (tileRows + count - 1) / count
        }
        rowsPerBlock = rows
        // Eight floats of slack per row: whole-vector stores of a row's last tiles stay in it.
        blockTiles = rowsPerBlock * tilesW + 8
        blocks = (tileRows + rowsPerBlock - 1) / rowsPerBlock
        slices = blocks < workers && m >= 16 * workers ? workers : 1
        stripW = max(g.padLeft + g.inW, 2 * ((tilesW + 7) / 8 * 8) + 2)
        workerCount = workers
        // 8 floats of slack: the last group of a row loads a whole vector.
        scratchPerWorker = 4 * stripW + 16 * c * blockTiles + 16 * m * blockTiles + 8
        scratch = .allocate(capacity: scratchPerWorker * workers)
        scratch.initialize(repeating: 0, count: scratchPerWorker * workers)
        transformWeights(weight)
    }

    /// `x` `[N, C, H, W]`, `bias` `[M]` or nil, `residual` `[N, M, OH, OW]` (read when the
    /// epilogue has one), `y` `[N, M, OH, OW]` (overwritten), with the weights given to `init`.
    public func forward(x: UnsafePointer<Float>, bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil,
                        y: UnsafeMutablePointer<Float>) {
        let g = geometry
        if g.batch == 0 { return }
        precondition(!epilogue.residual || residual != nil, "WinogradConv3x3: the epilogue adds a residual but none was given")
        forward(x: x, weight: u, bias: bias, residual: epilogue.residual ? residual : nil, y: y)
    }

    deinit {
        u.deallocate()
        scratch.deallocate()
    }

    /// `U[ξ = 4i + j, m, c] = (G g Gᵀ)[i, j]` with `G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]`.
    private func transformWeights(_ w: UnsafePointer<Float>) {
        let m = geometry.outChannels, c = geometry.inChannels, plane = m * c
        // G applied to a column of three: its four results.
        @inline(__always) func gColumn(_ a: Float, _ b: Float, _ d: Float) -> (Float, Float, Float, Float) {
            (a, 0.5 * (a + b + d), 0.5 * (a - b + d), d)
        }
        for o in 0..<m {
            for i in 0..<c {
                let g = w + (o * c + i) * 9
                // t = G g, by columns.
                let c0 = gColumn(g[0], g[3], g[6]), c1 = gColumn(g[1], g[4], g[7]), c2 = gColumn(g[2], g[5], g[8])
                let rows = ((c0.0, c1.0, c2.0), (c0.1, c1.1, c2.1), (c0.2, c1.2, c2.2), (c0.3, c1.3, c2.3))
                // (t Gᵀ) row by row: G applied to each row of t.
                @inline(__always) func put(_ row: Int, _ t: (Float, Float, Float)) {
                    let r = gColumn(t.0, t.1, t.2)
                    let out = u + (row * 4) * plane + o * c + i
                    out[0] = r.0
                    out[plane] = r.1
                    out[2 * plane] = r.2
                    out[3 * plane] = r.3
                }
                put(0, rows.0); put(1, rows.1); put(2, rows.2); put(3, rows.3)
            }
        }
    }

    func run<F: EpilogueFunction>(_ f: F, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                  bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                  y: UnsafeMutablePointer<Float>) {
        let c = geometry.inChannels
        if slices > 1 {
            // Fewer blocks than cores: the cores share each block's transformed input (in the first
            // worker's scratch), then each multiplies its slice of the output channels.
            setBLASThreads(1)
            let shared = scratch + 4 * stripW
            for b in 0..<blocks {
                NNParallel.run(slices) { worker in
                    let strip = self.scratch + worker * self.scratchPerWorker
                    self.transformInput(b, channels: (c * worker / self.slices)..<(c * (worker + 1) / self.slices),
                                        x: x, strip: strip, v: shared)
                }
                NNParallel.run(slices) { worker in
                    let products = self.scratch + worker * self.scratchPerWorker + 4 * self.stripW + 16 * c * self.blockTiles
                    self.multiply(f, b, slice: worker, v: shared, products: products, bias: bias, residual: residual, y: y)
                }
            }
            setBLASThreads(NNParallel.blasDefaultThreads)
            return
        }
        let w = min(blocks, workerCount)
        if w > 1 { setBLASThreads(1) }
        NNParallel.run(w) { worker in
            let strip = self.scratch + worker * self.scratchPerWorker
            let v = strip + 4 * self.stripW, products = v + 16 * c * self.blockTiles
            for b in (self.blocks * worker / w)..<(self.blocks * (worker + 1) / w) {
                self.transformInput(b, channels: 0..<c, x: x, strip: strip, v: v)
                self.multiply(f, b, slice: 0, v: v, products: products, bias: bias, residual: residual, y: y)
            }
        }
        if w > 1 { setBLASThreads(NNParallel.blasDefaultThreads) }
    }

    /// Tile rows of block `b`: the first and how many.
    @inline(__always)
    private func tileRows(of b: Int) -> (first: Int, count: Int) {
        let first = b * rowsPerBlock
        return (first, min(rowsPerBlock, geometry.batch * tilesH - first))
    }

    /// `V` `[16, C, blockTiles]` of block `b` for input channels `channels`.
    private func transformInput(_ b: Int, channels: Range<Int>, x: UnsafePointer<Float>,
                                strip: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>) {
        let g = geometry, c = g.inChannels
        let (firstRow, rowCount) = tileRows(of: b)
        for ch in channels {
            for r in 0..<rowCount {
                let tileRow = firstRow + r, n = tileRow / tilesH, ty = tileRow % tilesH
                fillStrip(strip, x + (n * c + ch) * g.inH * g.inW, top: 2 * ty - g.padTop)
                transformStrip(strip, v + ch * blockTiles + r * tilesW, stride: c * blockTiles)
            }
        }
    }

    /// The 16 products of block `b` for one slice of the output channels, then the output transform.
    private func multiply<F: EpilogueFunction>(_ f: F, _ b: Int, slice: Int, v: UnsafePointer<Float>,
                                               products: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?,
                                               residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let g = geometry, c = g.inChannels, m = g.outChannels
        let (firstRow, rowCount) = tileRows(of: b)
        let tiles = rowCount * tilesW
        let m0 = m * slice / slices, rows = m * (slice + 1) / slices - m0
        for xi in 0..<16 {
            gemm(transA: false, transB: false, m: rows, n: tiles, k: c, alpha: 1, a: u + xi * m * c + m0 * c, lda: c,
                 b: v + xi * c * blockTiles, ldb: blockTiles, beta: 0, c: products + xi * rows * blockTiles,
                 ldc: blockTiles)
        }
        for o in 0..<rows {
            let bo = bias?[m0 + o] ?? 0
            for r in 0..<rowCount {
                let tileRow = firstRow + r, n = tileRow / tilesH, ty = tileRow % tilesH
                let offset = ((n * m + m0 + o) * g.outH + 2 * ty) * g.outW
                transformOutput(f, products + o * blockTiles + r * tilesW, stride: rows * blockTiles, bias: bo,
                                residual: residual.map { $0 + offset }, y: y + offset,
                                secondRow: 2 * ty + 1 < g.outH)
            }
        }
    }

    /// Input rows `top ..< top + 4` of one channel plane, zero outside the plane, each shifted
    /// right by the left pad into a row of `stripW` floats. Only columns `[padLeft, padLeft + W)`
    /// are ever written, so the rest of the strip keeps the zeros it was allocated with.
    @inline(__always)
    private func fillStrip(_ strip: UnsafeMutablePointer<Float>, _ plane: UnsafePointer<Float>, top: Int) {
        let g = geometry, width = g.inW
        for i in 0..<4 {
            let row = UnsafeMutableRawPointer(strip + i * stripW + g.padLeft), iy = top + i
            if iy < 0 || iy >= g.inH {
                var j = 0
                while j + 8 <= width { row.storeBytes(of: SIMD8<Float>(), toByteOffset: 4 * j, as: SIMD8<Float>.self); j += 8 }
                while j < width { row.storeBytes(of: 0, toByteOffset: 4 * j, as: Float.self); j += 1 }
                continue
            }
            let src = UnsafeRawPointer(plane + iy * width)
            var j = 0
            while j + 8 <= width {
                row.storeBytes(of: src.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self), toByteOffset: 4 * j,
                               as: SIMD8<Float>.self)
                j += 8
            }
            while j < width {
                row.storeBytes(of: src.load(fromByteOffset: 4 * j, as: Float.self), toByteOffset: 4 * j, as: Float.self)
                j += 1
            }
        }
    }

    /// `V = Bᵀ d B` for every tile of one strip, eight tiles at a time, with
    /// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`; `V[ξ]` of tile `t`
    /// goes to `out[ξ * stride + t]`, and up to seven floats past the last tile are overwritten.
    @inline(__always)
    private func transformStrip(_ strip: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, stride: Int) {
        let raw = UnsafeRawPointer(strip), rowBytes = stripW * 4
        // One strip row's Bᵀ combinations of its columns, for eight tiles two columns apart.
        @inline(__always) func row(_ at: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
            let d0 = NNVec.even(raw, at), d1 = NNVec.even(raw, at + 4)
            let d2 = NNVec.even(raw, at + 8), d3 = NNVec.even(raw, at + 12)
            return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
        }
        var t0 = 0
        while t0 < tilesW {
            let at = 8 * t0
            let w0 = row(at), w1 = row(at + rowBytes), w2 = row(at + 2 * rowBytes), w3 = row(at + 3 * rowBytes)
            // Lanes past the row's last tile land in the next row's columns, which are written
            // after this one, or in the row's slack.
            @inline(__always) func store(_ xi: Int, _ v: SIMD8<Float>) {
                UnsafeMutableRawPointer(out + xi * stride + t0).storeBytes(of: v, as: SIMD8<Float>.self)
            }
            store(0, w0.0 - w2.0); store(1, w0.1 - w2.1); store(2, w0.2 - w2.2); store(3, w0.3 - w2.3)
            store(4, w1.0 + w2.0); store(5, w1.1 + w2.1); store(6, w1.2 + w2.2); store(7, w1.3 + w2.3)
            store(8, w2.0 - w1.0); store(9, w2.1 - w1.1); store(10, w2.2 - w1.2); store(11, w2.3 - w1.3)
            store(12, w1.0 - w3.0); store(13, w1.1 - w3.1); store(14, w1.2 - w3.2); store(15, w1.3 - w3.3)
            t0 += 8
        }
    }

    /// `Y = Aᵀ m A` with `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]` for the tiles of one tile row of one
    /// output channel (`m[ξ]` of tile `t` at `p[ξ * stride + t]`), plus bias and residual, then
    /// `f`, written to the output rows at `y` (the second only when `secondRow`).
    @inline(__always)
    private func transformOutput<F: EpilogueFunction>(_ f: F, _ p: UnsafePointer<Float>, stride: Int, bias: Float,
                                                      residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                                                      secondRow: Bool) {
        let outW = geometry.outW
        let raw = UnsafeRawPointer(p)
        @inline(__always) func at(_ xi: Int, _ t0: Int) -> SIMD8<Float> {
            raw.loadUnaligned(fromByteOffset: (xi * stride + t0) * 4, as: SIMD8<Float>.self)
        }
        var t0 = 0
        while t0 < tilesW {
            // Column sums over the tile's rows (Aᵀ on the left), then over columns.
            @inline(__always) func column(_ j: Int) -> (SIMD8<Float>, SIMD8<Float>) {
                let m0 = at(j, t0), m1 = at(4 + j, t0), m2 = at(8 + j, t0), m3 = at(12 + j, t0)
                return (m0 + m1 + m2, m1 - m2 - m3)
            }
            let c0 = column(0), c1 = column(1), c2 = column(2), c3 = column(3)
            let b = SIMD8<Float>(repeating: bias)
            var y00 = c0.0 + c1.0 + c2.0 + b, y01 = c1.0 - c2.0 - c3.0 + b
            var y10 = c0.1 + c1.1 + c2.1 + b, y11 = c1.1 - c2.1 - c3.1 + b
            if residual == nil {
                y00 = f(y00); y01 = f(y01); y10 = f(y10); y11 = f(y11)
            }
            if 2 * t0 + 16 <= outW {
                // Eight whole tiles: each output row is the two columns' vectors interleaved.
                storeInterleaved(f, y00, y01, residual: residual.map { $0 + 2 * t0 }, y + 2 * t0)
                if secondRow {
                    storeInterleaved(f, y10, y11, residual: residual.map { $0 + outW + 2 * t0 },
                                     y + outW + 2 * t0)
                }
                t0 += 8
                continue
            }
            let count = min(8, tilesW - t0)
            for lane in 0..<count {
                let ox = 2 * (t0 + lane)
                let right = ox + 1 < outW
                if let residual {
                    y[ox] = f(y00[lane] + residual[ox])
                    if right { y[ox + 1] = f(y01[lane] + residual[ox + 1]) }
                    if secondRow {
                        y[outW + ox] = f(y10[lane] + residual[outW + ox])
                        if right { y[outW + ox + 1] = f(y11[lane] + residual[outW + ox + 1]) }
                    }
                } else {
                    y[ox] = y00[lane]
                    if right { y[ox + 1] = y01[lane] }
                    if secondRow {
                        y[outW + ox] = y10[lane]
                        if right { y[outW + ox + 1] = y11[lane] }
                    }
                }
            }
            t0 += 8
        }
    }

    /// `a[0], b[0], a[1], b[1], ...` to `y[0 ..< 16]`, plus the residual and then `f` when there is
    /// a residual (without one, `f` was applied before).
    @inline(__always)
    private func storeInterleaved<F: EpilogueFunction>(_ f: F, _ a: SIMD8<Float>, _ b: SIMD8<Float>,
                                                       residual: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
        var lo = SIMD8<Float>(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3])
        var hi = SIMD8<Float>(a[4], b[4], a[5], b[5], a[6], b[6], a[7], b[7])
        let out = UnsafeMutableRawPointer(y)
        if let residual {
            let r = UnsafeRawPointer(residual)
            lo = f(lo + r.loadUnaligned(as: SIMD8<Float>.self))
            hi = f(hi + r.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
        }
        out.storeBytes(of: lo, as: SIMD8<Float>.self)
        out.storeBytes(of: hi, toByteOffset: 32, as: SIMD8<Float>.self)
    }
}
