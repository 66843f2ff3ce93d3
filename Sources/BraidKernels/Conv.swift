import CKernels

/// Geometry of a 2-D convolution over `[N, C, H, W]`; a 1-D convolution is `H = 1, kernelH = 1`.
///
/// For `Conv2D`, `(inH, inW)` is the input and `(outH, outW)` the output. For
/// `ConvTranspose2D` the same fields keep their names: `(inH, inW)` is the transposed
/// convolution's input and `(outH, outW)` its (larger) output. Pads are the leading pads;
/// trailing pads are implied by the output size.
public struct ConvGeometry: Sendable, Equatable {
    public var batch: Int
    public var inChannels: Int
    public var inH: Int
    public var inW: Int
    public var outChannels: Int
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
    public var group: Int

    public init(batch: Int, inChannels: Int, inH: Int, inW: Int, outChannels: Int, outH: Int, outW: Int,
                kernelH: Int, kernelW: Int, strideH: Int = 1, strideW: Int = 1,
                dilationH: Int = 1, dilationW: Int = 1, padTop: Int = 0, padLeft: Int = 0, group: Int = 1) {
        self.batch = batch; self.inChannels = inChannels; self.inH = inH; self.inW = inW
        self.outChannels = outChannels; self.outH = outH; self.outW = outW
        self.kernelH = kernelH; self.kernelW = kernelW; self.strideH = strideH; self.strideW = strideW
        self.dilationH = dilationH; self.dilationW = dilationW
        self.padTop = padTop; self.padLeft = padLeft; self.group = group
    }

    /// Input channels per group.
    public var groupIn: Int { inChannels / group }
    /// Output channels per group.
    public var groupOut: Int { outChannels / group }
    /// Weight elements per output channel (`C/group * kH * kW`).
    public var patch: Int { groupIn * kernelH * kernelW }
}

extension ConvGeometry {
    /// Range `[lo, hi)` of outputs whose tap at offset `off` lands inside `[0, size)`:
    /// the outputs `o` with `0 <= o * stride + off < size`, clamped to `[0, count)`.
    @inline(__always)
    static func validOutputs(offset off: Int, stride: Int, size: Int, count: Int) -> (Int, Int) {
        let lo = off >= 0 ? 0 : min(count, (-off + stride - 1) / stride)
        let hi = size - off <= 0 ? 0 : min(count, (size - off + stride - 1) / stride)
        return (lo, max(lo, hi))
    }
}

/// A convolution compiled for one geometry: `y[N, M, OH, OW] = conv(x[N, C, H, W], w[M, C/group, kH, kW]) + b[M]`.
///
/// Chooses its method once: a direct SIMD kernel when each group has one input channel
/// (depthwise), a plain GEMM for unpadded stride-1 1x1 kernels, otherwise im2col + GEMM. A
/// product with a short inner dimension `C/group * kH * kW` or few output channels is computed
/// directly rather than by GEMM (`SmallPatchConv.prefers`).
/// GEMM work is cut into (image, group, column panel[, channel slice]) items spread over the cores, each with
/// a single-threaded GEMM; an im2col panel is sized to stay in L2 and is built just before its
/// GEMM. The epilogue (residual add, activation) runs on each item's output tile right after
/// its GEMM, while the tile is in cache. Scratch is allocated here, never during `forward`.
public final class Conv2D: @unchecked Sendable {
    public enum Method: Sendable { case depthwise, pointwise, im2col }

    public let geometry: ConvGeometry
    public let method: Method
    public let epilogue: ConvEpilogue
    /// Output columns per GEMM item.
    public let panel: Int
    /// Slices of the output channels per (image, group, panel) item: more than 1 only for a
    /// pointwise convolution of one image on a small plane.
    public let rowBlocks: Int
    private let scratch: UnsafeMutablePointer<Float>?
    fileprivate let xRanges: UnsafeMutablePointer<Int>
    fileprivate var scratchBuffer: UnsafeMutablePointer<Float>? { scratch }
    private let depthwise: DepthwiseConv2D?
    private let blocked: BlockedDepthwiseConv2D?
    private let direct: DirectSmallConv?
    /// Per worker, the row offsets `j * ldb` `SmallPatchConv.product` reads its matrix by.
    private let rowOffsets: UnsafeMutablePointer<Int>?

    /// The method a convolution of geometry `g` uses.
    public static func methodOf(_ g: ConvGeometry) -> Method {
        if g.groupIn == 1 && g.group > 1 { return .depthwise }
        if g.kernelH == 1 && g.kernelW == 1 && g.strideH == 1 && g.strideW == 1
            && g.padTop == 0 && g.padLeft == 0 && g.outH == g.inH && g.outW == g.inW {
            return .pointwise
        }
        return .im2col
    }

    public init(_ g: ConvGeometry, epilogue: ConvEpilogue = .none) {
        geometry = g
        method = Conv2D.methodOf(g)
        self.epilogue = epilogue
        let useBlocked = method == .depthwise && BlockedDepthwiseConv2D.handles(g)
        blocked = useBlocked ? BlockedDepthwiseConv2D(g, epilogue: epilogue) : nil
        depthwise = method == .depthwise && !useBlocked ? DepthwiseConv2D(g, epilogue: epilogue) : nil
        let outPlane = max(1, g.outH * g.outW)
        var p: Int
        switch method {
        case .im2col: p = min(outPlane, max(128, 131_072 / max(1, g.patch) / 16 * 16))
        // Keeps an item's input panel and output tile in L2, so the epilogue reads the tile
        // from cache rather than memory (a 32-channel 112x112 output is 1.6 MB).
        case .pointwise: p = min(outPlane, max(256, 49_152 / max(1, max(g.groupOut, g.patch)) / 16 * 16))
        case .depthwise: p = outPlane
        }
        let images = g.batch * g.group, workers = NNParallel.workers
        var blocks = 1
        if images < workers && method == .im2col && outPlane <= 400 && g.groupOut >= 32 * workers && g.patch >= 256
            && !SmallPatchConv.prefers(m: g.groupOut, k: g.patch) {
            // The same for a deep im2col convolution on a small plane (ResNet-50's 3x3 256->256
            // at 14x14: two 112- and 84-column GEMMs each packing all 2.4 MB of weights): the
            // whole plane's im2col matrix is built once, by both cores, and each core
            // multiplies half the output channels by it.
            blocks = workers
            p = outPlane
        } else if images < workers && method == .pointwise && outPlane <= 1024 && g.groupOut >= 32 * workers {
            // A small plane cut into column panels leaves each GEMM a few dozen columns, where
            // OpenBLAS is slowest (512x17x512: 53 GFLOP/s against 67 for 256x49x512): cut the
            // output channels instead. A pointwise GEMM reads its input in place, so nothing is
            // packed twice.
            blocks = workers
            p = outPlane
        } else if images < workers {
            let share = (outPlane * images + workers - 1) / workers
            p = min(p, max(16, (share + 15) / 16 * 16))
            // Whole rounds of panels: 3 panels on 2 cores would leave one core idle a third of
            // the time.
            var panels = (outPlane + p - 1) / p
            if (images * panels) % workers != 0 {
                panels = ((images * panels + workers - 1) / workers * workers + images - 1) / images
                p = max(16, ((outPlane + panels - 1) / panels + 15) / 16 * 16)
            }
        } else if images % workers != 0 && images < 4 * workers {
            // A few whole images per core would leave one core idle at the end: cut them finer.
            let perImage = (4 * workers + images - 1) / images
            p = min(p, max(256, ((outPlane + perImage - 1) / perImage + 15) / 16 * 16))
        }
        panel = p
        rowBlocks = blocks
        _ = NNParallel.blasDefaultThreads
        direct = DirectSmallConv.handles(g) ? DirectSmallConv(g, epilogue: epilogue) : nil
        scratch = method == .im2col && direct == nil ? .allocate(capacity: max(1, panel * g.patch * NNParallel.workers)) : nil
        rowOffsets = method != .depthwise && SmallPatchConv.prefers(m: g.groupOut, k: g.patch)
            ? .allocate(capacity: max(1, g.patch * NNParallel.workers)) : nil
        xRanges = g.columnRanges()
    }

    deinit {
        scratch?.deallocate()
        rowOffsets?.deallocate()
        xRanges.deallocate()
    }

    /// Runs the convolution. `x` `[N, C, H, W]`, `weight` `[M, C/group, kH, kW]`, `bias` `[M]`
    /// or nil, `residual` `[N, M, OH, OW]` (required when the epilogue has one, else ignored),
    /// `y` `[N, M, OH, OW]` (fully overwritten): `y = act(conv(x, weight) + bias + residual)`.
    public func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        residual: UnsafePointer<Float>? = nil, y: UnsafeMutablePointer<Float>) {
        let g = geometry
        if g.batch == 0 || g.outChannels == 0 || g.outH * g.outW == 0 { return }
        let residual = epilogue.residual ? residual : nil
        precondition(!epilogue.residual || residual != nil, "Conv2D: the epilogue adds a residual but none was given")
        if let blocked {
            blocked.forward(x: x, weight: weight, bias: bias, residual: residual, y: y)
            return
        }
        if let depthwise {
            depthwise.forward(x: x, weight: weight, bias: bias, residual: residual, y: y)
            return
        }
        if let direct {
            direct.forward(x: x, weight: weight, bias: bias, residual: residual, y: y)
            return
        }
        if method == .pointwise && g.outH * g.outW == 1 && g.group == 1 {
            batchedVectors(x: x, weight: weight, bias: bias, residual: residual, y: y)
            return
        }
        epilogue.activation.dispatch(GemmRun(conv: self, x: x, weight: weight, bias: bias, residual: residual, y: y))
    }

    private struct GemmRun: EpilogueVisitor {
        let conv: Conv2D
        let x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?
        let residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>
        func visit<F: EpilogueFunction>(_ f: F) {
            conv.gemmForward(f, x: x, weight: weight, bias: bias, residual: residual, y: y)
        }
    }

    private func gemmForward<F: EpilogueFunction>(_ f: F, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                                  bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                                  y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
        let panel = self.panel, scratchBase = scratch
        let panels = (outPlane + panel - 1) / panel
        let perImage = g.group * panels, rowBlocks = self.rowBlocks
        if method == .im2col && rowBlocks > 1 {
            sharedColumnsForward(f, x: x, weight: weight, bias: bias, residual: residual, y: y)
            return
        }
        let items = g.batch * perImage * rowBlocks
        // A product this small (a squeeze-excitation convolution of one image) finishes before a
        // second thread would have woken up.
        let tiny = g.batch * g.outChannels * outPlane * g.patch < 1 << 18
        let w = tiny ? 1 : min(items, NNParallel.workers)
        // Our threads already fill the cores; OpenBLAS threads on top would only contend.
        if w > 1 { setBLASThreads(1) }
        NNParallel.run(w) { worker in
            let col = scratchBase.map { $0 + worker * panel * g.patch }
            for item in (items * worker / w)..<(items * (worker + 1) / w) {
                let block = item % rowBlocks, cell = item / rowBlocks
                let n = cell / perImage, grp = (cell / panels) % g.group, q0 = (cell % panels) * panel
                let cols = min(panel, outPlane - q0)
                let m0 = g.groupOut * block / rowBlocks, rows = g.groupOut * (block + 1) / rowBlocks - m0
                let xg = x + (n * g.inChannels + grp * g.groupIn) * inPlane
                let first = grp * g.groupOut + m0
                let offset = (n * g.outChannels + first) * outPlane + q0
                let yc = y + offset
                let (b, ldb) = g.panelOperand(xg, q0, cols, col, xRanges)
                if let table = rowOffsets.map({ $0 + worker * g.patch }) {
                    for j in 0..<g.patch { table[j] = j * ldb }
                    SmallPatchConv.product(f, rows: rows, cols: cols, k: g.patch, w: weight + first * g.patch, b: b,
                                           rowOffsets: table, bias: bias.map { $0 + first },
                                           residual: residual.map { $0 + offset }, y: yc, ldy: outPlane)
                    continue
                }
                gemmTile(f, rows: rows, cols: cols, weight: weight + first * g.patch, b: b, ldb: ldb,
                         bias: bias.map { $0 + first }, residual: residual.map { $0 + offset }, y: yc)
            }
        }
        // Restores the process default rather than the value read before: two convolutions
        // running at once would otherwise leave OpenBLAS single-threaded for good.
        if w > 1 { setBLASThreads(NNParallel.blasDefaultThreads) }
    }
}

extension Conv2D {
    /// One GEMM tile with its epilogue: `y[r, j] = f(w[r, :] · b[:, j] + bias[r] + residual[r, j])`
    /// for `r < rows`, `j < cols`, with `y` and `residual` rows one output plane apart and `b`
    /// rows `ldb` apart. Bias and residual are written first and the GEMM adds onto them.
    fileprivate func gemmTile<F: EpilogueFunction>(_ f: F, rows: Int, cols: Int, weight: UnsafePointer<Float>,
                                                   b: UnsafePointer<Float>, ldb: Int, bias: UnsafePointer<Float>?,
                                                   residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let g = geometry, outPlane = g.outH * g.outW
        if let residual {
            for m in 0..<rows {
                let dst = y + m * outPlane, src = residual + m * outPlane
                if let bias {
                    let bm = bias[m]
                    for j in 0..<cols { dst[j] = src[j] + bm }
                } else {
                    dst.update(from: src, count: cols)
                }
            }
        } else if let bias {
            for m in 0..<rows { (y + m * outPlane).update(repeating: bias[m], count: cols) }
        }
        gemm(transA: false, transB: false, m: rows, n: cols, k: g.patch, alpha: 1, a: weight, lda: g.patch, b: b, ldb: ldb,
             beta: bias == nil && residual == nil ? 0 : 1, c: y, ldc: outPlane)
        if !(f is IdentityEpilogue) { applyEpilogue(f, y, rows: rows, cols: cols, stride: outPlane) }
    }

    /// A pointwise convolution of 1x1 maps (squeeze-excitation blocks, classifier heads) over a
    /// batch: `y[n, M] = w[M, C] · x[n, C]` for each image `n`, one matrix-vector product per
    /// image with the same call, so an image's output is the same floats at any position in
    /// any batch. One GEMM over the batch is faster but not batch-invariant: OpenBLAS sums a
    /// row differently in its edge kernels, so moving an image within the batch changed its
    /// last bits, and a frozen prefix cached from one batch no longer matched the same prefix
    /// computed in a shuffled one (ppocr_cls's squeeze-excitations under AMCF's search).
    fileprivate func batchedVectors(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                    residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let m = g.outChannels, c = g.inChannels
        for n in 0..<g.batch {
            let row = y + n * m
            if let residual {
                for j in 0..<m { row[j] = residual[n * m + j] + (bias?[j] ?? 0) }
            } else if let bias {
                row.update(from: bias, count: m)
            }
        }
        // Work items are (image, block of output channels), each product on one OpenBLAS
        // thread. The blocks depend only on the layer's shape, never on the batch, so an
        // image's floats stay the same at any batch position; a large layer (a classifier's
        // 512 -> 1280 at batch 1, weights read once per image) is split so that both cores
        // stream its weights. A product this small (ppocr_cls's squeeze-excitations) finishes
        // before a second thread would wake.
        let parts = m * c >= 1 << 17 ? min(NNParallel.workers, max(1, m / 16)) : 1
        let items = g.batch * parts
        let w = g.batch * m * c < 1 << 18 ? 1 : min(items, NNParallel.workers)
        let beta: Float = bias == nil && residual == nil ? 0 : 1
        setBLASThreads(1)
        NNParallel.run(w) { worker in
            for item in (items * worker / w)..<(items * (worker + 1) / w) {
                let n = item / parts, part = item % parts
                let j0 = m * part / parts, j1 = m * (part + 1) / parts
                gemm(transA: false, transB: true, m: 1, n: j1 - j0, k: c, alpha: 1, a: x + n * c, lda: c,
                     b: weight + j0 * c, ldb: c, beta: beta, c: y + n * m + j0, ldc: m)
            }
        }
        setBLASThreads(NNParallel.blasDefaultThreads)
        epilogue.activation?.apply(y, rows: 1, cols: g.batch * m)
    }

    /// The im2col method with output channels split over the cores: per (image, group), all
    /// cores build slices of the whole plane's im2col matrix, then each multiplies its slice of
    /// the output channels by it.
    fileprivate func sharedColumnsForward<F: EpilogueFunction>(_ f: F, x: UnsafePointer<Float>,
                                                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                                               residual: UnsafePointer<Float>?,
                                                               y: UnsafeMutablePointer<Float>) {
        guard let col = scratchBuffer else { return }
        let g = geometry
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW, blocks = rowBlocks
        setBLASThreads(1)
        for image in 0..<(g.batch * g.group) {
            let n = image / g.group, grp = image % g.group
            let xg = x + (n * g.inChannels + grp * g.groupIn) * inPlane
            NNParallel.run(blocks) { b in
                g.im2colPanel(xg, 0, outPlane, col, xRanges, rows: (g.patch * b / blocks)..<(g.patch * (b + 1) / blocks))
            }
            NNParallel.run(blocks) { b in
                let m0 = g.groupOut * b / blocks, rows = g.groupOut * (b + 1) / blocks - m0
                let first = grp * g.groupOut + m0
                let yc = y + (n * g.outChannels + first) * outPlane
                self.gemmTile(f, rows: rows, cols: outPlane, weight: weight + first * g.patch, b: col, ldb: outPlane,
                              bias: bias.map { $0 + first },
                              residual: residual.map { $0 + (n * g.outChannels + first) * outPlane }, y: yc)
            }
        }
        setBLASThreads(NNParallel.blasDefaultThreads)
    }
}

extension ConvGeometry {
    /// Columns `[q0, q0 + cols)` of one group's im2col matrix (its rows `rows`, all by
    /// default), stored `[patch, cols]`:
    /// `col[(c * kH + ky) * kW + kx, q - q0] = x[c, oy*sH + ky*dH - padTop, ox*sW + kx*dW - padLeft]`
    /// with `q = oy * OW + ox` (0 outside the input). `xRanges` holds, per `kx`, the output
    /// columns `[lo, hi)` whose tap lands inside the row.
    func im2colPanel(_ x: UnsafePointer<Float>, _ q0: Int, _ cols: Int, _ col: UnsafeMutablePointer<Float>,
                     _ xRanges: UnsafePointer<Int>, rows: Range<Int>? = nil) {
        let sw = strideW
        forEachPanelRun(q0, cols, xRanges, rows: rows ?? 0..<patch) { colBase, xBase, ox0, run, a, b in
            let dst = col + colBase
            guard let xBase else {
                (dst + ox0).update(repeating: 0, count: run)
                return
            }
            let src = x + xBase
            if a > ox0 { (dst + ox0).update(repeating: 0, count: a - ox0) }
            if sw == 1 {
                (dst + a).update(from: src + a, count: b - a)
            } else if sw == 2 {
                if b > a { braid_gather_even(src + 2 * a, b - a, dst + a) }
            } else {
                for ox in a..<b { dst[ox] = src[ox * sw] }
            }
            if b < ox0 + run { (dst + b).update(repeating: 0, count: ox0 + run - b) }
        }
    }

    /// The GEMM operand for output columns `[q0, q0 + cols)` of one group and its leading
    /// dimension: the im2col panel written into `col` when there is one, else the group's input
    /// itself (a 1x1, stride-1, unpadded convolution reads it as the matrix).
    @inline(__always)
    func panelOperand(_ xg: UnsafePointer<Float>, _ q0: Int, _ cols: Int, _ col: UnsafeMutablePointer<Float>?,
                      _ xRanges: UnsafePointer<Int>) -> (UnsafePointer<Float>, Int) {
        guard let col else { return (xg + q0, outH * outW) }
        im2colPanel(xg, q0, cols, col, xRanges)
        return (UnsafePointer(col), cols)
    }

    /// The adjoint of `im2colPanel`: adds each `col[r, q - q0]` into the input element it was
    /// read from (taps in the padding are dropped).
    func col2imPanelAdd(_ col: UnsafePointer<Float>, _ q0: Int, _ cols: Int, _ dx: UnsafeMutablePointer<Float>,
                        _ xRanges: UnsafePointer<Int>) {
        let sw = strideW
        forEachPanelRun(q0, cols, xRanges, rows: 0..<patch) { colBase, xBase, _, _, a, b in
            guard let xBase else { return }
            let src = col + colBase, dst = dx + xBase
            if sw == 1 {
                for ox in a..<b { dst[ox] += src[ox] }
            } else {
                for ox in a..<b { dst[ox * sw] += src[ox] }
            }
        }
    }

    /// The walk `im2colPanel` and its adjoint share: for each panel row `r` in `rows` and each
    /// stretch of one output row within columns `[q0, q0 + cols)`, calls `body` with the panel
    /// offset of output column 0 of the stretch (`colBase + ox` is column `ox`'s entry), the
    /// input offset of column 0's tap (nil when the tap's input row lies in the padding), the
    /// stretch's first output column `ox0` and length `run`, and the columns `[a, b)` of it
    /// whose taps land inside the input row.
    @inline(__always)
    private func forEachPanelRun(_ q0: Int, _ cols: Int, _ xRanges: UnsafePointer<Int>, rows: Range<Int>,
                                 _ body: (_ colBase: Int, _ xBase: Int?, _ ox0: Int, _ run: Int, _ a: Int, _ b: Int) -> Void) {
        let g = self
        let inPlane = g.inH * g.inW, ow = g.outW
        for r in rows {
            let kx = r % g.kernelW, ky = (r / g.kernelW) % g.kernelH, c = r / (g.kernelW * g.kernelH)
            let lo = xRanges[2 * kx], hi = xRanges[2 * kx + 1]
            let offX = kx * g.dilationW - g.padLeft
            var q = q0
            let end = q0 + cols
            while q < end {
                let oy = q / ow, ox0 = q % ow
                let run = min(ow - ox0, end - q)
                let colBase = r * cols + (q - q0) - ox0
                let iy = oy * g.strideH + ky * g.dilationH - g.padTop
                if iy < 0 || iy >= g.inH {
                    body(colBase, nil, ox0, run, ox0, ox0)
                } else {
                    let a = min(max(lo, ox0), ox0 + run), b = max(a, min(hi, ox0 + run))
                    body(colBase, c * inPlane + iy * g.inW + offX, ox0, run, a, b)
                }
                q += run
            }
        }
    }

    /// Per `kx`, the output columns `[lo, hi)` whose tap lands inside the input row.
    func columnRanges() -> UnsafeMutablePointer<Int> {
        let ranges = UnsafeMutablePointer<Int>.allocate(capacity: 2 * max(1, kernelW))
        for kx in 0..<kernelW {
            let (lo, hi) = ConvGeometry.validOutputs(offset: kx * dilationW - padLeft, stride: strideW,
                                                     size: inW, count: outW)
            ranges[2 * kx] = lo; ranges[2 * kx + 1] = hi
        }
        return ranges
    }
}

/// The backward of `Conv2D` for one geometry: adds `dx` `[N, C, H, W]`, `dw`
/// `[M, C/group, kH, kW]` and `db` `[M]` from `dy` `[N, M, OH, OW]`.
///
/// Same method split as the forward. im2col: per (image, group) and column panel,
/// `dW_g += dY_g · colᵀ` and `dcol = W_gᵀ · dY_g` scattered back by col2im; (image, group)
/// items run on separate cores, each adding its weight gradient into its own partial buffer,
/// summed at the end. Depthwise: direct loops, split over input planes for `dx` and over
/// output channels for `dw`. Scratch is allocated here, never during `backward`.
public final class Conv2DBackward: @unchecked Sendable {
    public let geometry: ConvGeometry
    public let method: Conv2D.Method
    private let panel: Int
    private let workers: Int
    private let col: UnsafeMutablePointer<Float>?
    private let dcol: UnsafeMutablePointer<Float>?
    private let partials: UnsafeMutablePointer<Float>?
    private let xRanges: UnsafeMutablePointer<Int>
    private let depthwise: DepthwiseConv2D?

    public init(_ g: ConvGeometry) {
        geometry = g
        method = Conv2D.methodOf(g)
        depthwise = method == .depthwise ? DepthwiseConv2D(g) : nil
        let outPlane = max(1, g.outH * g.outW)
        panel = method == .im2col ? min(outPlane, max(128, 131_072 / max(1, g.patch) / 16 * 16)) : outPlane
        workers = method == .depthwise ? 1 : max(1, min(g.batch * g.group, NNParallel.workers))
        _ = NNParallel.blasDefaultThreads
        col = method == .im2col ? .allocate(capacity: max(1, panel * g.patch * workers)) : nil
        dcol = method == .im2col ? .allocate(capacity: max(1, panel * g.patch * workers)) : nil
        partials = workers > 1 ? .allocate(capacity: max(1, g.outChannels * g.patch * workers)) : nil
        xRanges = g.columnRanges()
    }

    deinit {
        col?.deallocate()
        dcol?.deallocate()
        partials?.deallocate()
        xRanges.deallocate()
    }

    /// Adds the gradients of `y = conv(x, weight) + bias` into `dx`, `dw` and `db` (each
    /// skipped when nil) from `dy`.
    public func backward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?,
                         db: UnsafeMutablePointer<Float>?) {
        let g = geometry
        let outPlane = g.outH * g.outW
        if g.batch == 0 || g.outChannels == 0 || outPlane == 0 { return }
        if let db {
            for n in 0..<g.batch {
                for m in 0..<g.outChannels { db[m] += NNVec.sum(dy + (n * g.outChannels + m) * outPlane, outPlane) }
            }
        }
        if let depthwise {
            if let dx { depthwise.backwardInput(dy: dy, weight: weight, dx: dx) }
            if let dw { depthwise.backwardWeight(x: x, dy: dy, dw: dw) }
            return
        }
        if dx == nil && dw == nil { return }
        let inPlane = g.inH * g.inW, panel = self.panel, patch = g.patch
        let items = g.batch * g.group, w = workers
        let wSize = g.outChannels * patch
        if let partials, dw != nil { partials.update(repeating: 0, count: wSize * w) }
        if w > 1 { setBLASThreads(1) }
        let colBase = col, dcolBase = dcol, partialBase = partials
        NNParallel.run(w) { worker in
            let colW = colBase.map { $0 + worker * panel * patch }
            let dcolW = dcolBase.map { $0 + worker * panel * patch }
            let dwW = dw == nil ? nil : partialBase.map { $0 + worker * wSize } ?? dw
            for item in (items * worker / w)..<(items * (worker + 1) / w) {
                let n = item / g.group, grp = item % g.group
                let xg = x + (n * g.inChannels + grp * g.groupIn) * inPlane
                let dyg = dy + (n * g.outChannels + grp * g.groupOut) * outPlane
                let wg = weight + grp * g.groupOut * patch
                var q0 = 0
                while q0 < outPlane {
                    let cols = min(panel, outPlane - q0)
                    if let dwW {
                        let (b, ldb) = g.panelOperand(xg, q0, cols, colW, xRanges)
                        gemm(transA: false, transB: true, m: g.groupOut, n: patch, k: cols, alpha: 1,
                             a: dyg + q0, lda: outPlane, b: b, ldb: ldb, beta: 1,
                             c: dwW + grp * g.groupOut * patch, ldc: patch)
                    }
                    if let dx {
                        let dxg = dx + (n * g.inChannels + grp * g.groupIn) * inPlane
                        if let dcolW {
                            gemm(transA: true, transB: false, m: patch, n: cols, k: g.groupOut, alpha: 1,
                                 a: wg, lda: patch, b: dyg + q0, ldb: outPlane, beta: 0, c: dcolW, ldc: cols)
                            g.col2imPanelAdd(dcolW, q0, cols, dxg, xRanges)
                        } else {
                            gemm(transA: true, transB: false, m: patch, n: cols, k: g.groupOut, alpha: 1,
                                 a: wg, lda: patch, b: dyg + q0, ldb: outPlane, beta: 1, c: dxg + q0, ldc: outPlane)
                        }
                    }
                    q0 += cols
                }
            }
        }
        if w > 1 { setBLASThreads(NNParallel.blasDefaultThreads) }
        if let dw, let partials {
            for worker in 0..<w {
                let src = partials + worker * wSize
                for i in 0..<wSize { dw[i] += src[i] }
            }
        }
    }
}

/// A transposed convolution compiled for one geometry:
/// `y[N, M, OH, OW] = convTranspose(x[N, C, H, W], w[C, M/group, kH, kW]) + b[M]`.
///
/// Per image and group: `col = w_gᵀ · x_g` (`[M/group * kH * kW, H * W]`) by GEMM, then
/// col2im scatters `col` into `y`. Scratch is allocated here.
public final class ConvTranspose2D: @unchecked Sendable {
    public let geometry: ConvGeometry
    private let col: UnsafeMutablePointer<Float>

    public init(_ g: ConvGeometry) {
        geometry = g
        col = .allocate(capacity: max(1, g.groupOut * g.kernelH * g.kernelW * g.inH * g.inW))
    }

    deinit { col.deallocate() }

    /// `x` `[N, C, H, W]`, `weight` `[C, M/group, kH, kW]`, `bias` `[M]` or nil,
    /// `y` `[N, M, OH, OW]` (fully overwritten).
    public func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
        let kArea = g.kernelH * g.kernelW, rows = g.groupOut * kArea
        for n in 0..<g.batch {
            let yn = y + n * g.outChannels * outPlane
            for m in 0..<g.outChannels { (yn + m * outPlane).update(repeating: bias?[m] ?? 0, count: outPlane) }
            for grp in 0..<g.group {
                gemm(transA: true, transB: false, m: rows, n: inPlane, k: g.groupIn, alpha: 1,
                     a: weight + grp * g.groupIn * rows, lda: rows,
                     b: x + (n * g.inChannels + grp * g.groupIn) * inPlane, ldb: inPlane,
                     beta: 0, c: col, ldc: inPlane)
                col2im(yn + grp * g.groupOut * outPlane)
            }
        }
    }

    private func col2im(_ y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
        for m in 0..<g.groupOut {
            let ym = y + m * outPlane
            for ky in 0..<g.kernelH {
                for kx in 0..<g.kernelW {
                    let row = col + ((m * g.kernelH + ky) * g.kernelW + kx) * inPlane
                    let offX = kx * g.dilationW - g.padLeft
                    for iy in 0..<g.inH {
                        let oy = iy * g.strideH + ky * g.dilationH - g.padTop
                        if oy < 0 || oy >= g.outH { continue }
                        let src = row + iy * g.inW, dst = ym + oy * g.outW
                        for ix in 0..<g.inW {
                            let ox = ix * g.strideW + offX
                            if ox >= 0 && ox < g.outW { dst[ox] += src[ix] }
                        }
                    }
                }
            }
        }
    }
}
