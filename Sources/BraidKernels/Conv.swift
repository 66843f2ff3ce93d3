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
/// (depthwise), a plain GEMM for unpadded stride-1 1x1 kernels, otherwise im2col + GEMM.
/// GEMM work is cut into (image, group, column panel) items spread over the cores, each with
/// a single-threaded GEMM; an im2col panel is sized to stay in L2 and is built just before its
/// GEMM. Scratch is allocated here, never during `forward`.
public final class Conv2D: @unchecked Sendable {
    public enum Method: Sendable { case depthwise, pointwise, im2col }

    public let geometry: ConvGeometry
    public let method: Method
    /// Output columns per GEMM item.
    public let panel: Int
    private let scratch: UnsafeMutablePointer<Float>?
    private let xRanges: UnsafeMutablePointer<Int>
    private let depthwise: DepthwiseConv2D?

    public init(_ g: ConvGeometry) {
        geometry = g
        if g.groupIn == 1 && g.group > 1 {
            method = .depthwise
        } else if g.kernelH == 1 && g.kernelW == 1 && g.strideH == 1 && g.strideW == 1
                    && g.padTop == 0 && g.padLeft == 0 && g.outH == g.inH && g.outW == g.inW {
            method = .pointwise
        } else {
            method = .im2col
        }
        depthwise = method == .depthwise ? DepthwiseConv2D(g) : nil
        let outPlane = max(1, g.outH * g.outW)
        var p = method == .im2col ? min(outPlane, max(128, 131_072 / max(1, g.patch) / 16 * 16)) : outPlane
        let images = g.batch * g.group, workers = NNParallel.workers
        if images < workers {
            let share = (outPlane * images + workers - 1) / workers
            p = min(p, max(16, (share + 15) / 16 * 16))
        } else if images % workers != 0 && images < 4 * workers {
            // A few whole images per core would leave one core idle at the end: cut them finer.
            let perImage = (4 * workers + images - 1) / images
            p = min(p, max(256, ((outPlane + perImage - 1) / perImage + 15) / 16 * 16))
        }
        panel = p
        _ = NNParallel.blasDefaultThreads
        scratch = method == .im2col ? .allocate(capacity: max(1, panel * g.patch * NNParallel.workers)) : nil
        xRanges = .allocate(capacity: 2 * max(1, g.kernelW))
        for kx in 0..<g.kernelW {
            let (lo, hi) = ConvGeometry.validOutputs(offset: kx * g.dilationW - g.padLeft, stride: g.strideW,
                                                     size: g.inW, count: g.outW)
            xRanges[2 * kx] = lo; xRanges[2 * kx + 1] = hi
        }
    }

    deinit {
        scratch?.deallocate()
        xRanges.deallocate()
    }

    /// Runs the convolution. `x` `[N, C, H, W]`, `weight` `[M, C/group, kH, kW]`, `bias` `[M]`
    /// or nil, `y` `[N, M, OH, OW]` (fully overwritten).
    public func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        y: UnsafeMutablePointer<Float>) {
        let g = geometry
        if g.batch == 0 || g.outChannels == 0 || g.outH * g.outW == 0 { return }
        if let depthwise {
            depthwise.forward(x: x, weight: weight, bias: bias, y: y)
            return
        }
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
        let panel = self.panel, scratchBase = scratch
        let panels = (outPlane + panel - 1) / panel
        let perImage = g.group * panels
        let items = g.batch * perImage
        let w = min(items, NNParallel.workers)
        // Our threads already fill the cores; OpenBLAS threads on top would only contend.
        if w > 1 { setBLASThreads(1) }
        NNParallel.run(w) { worker in
            let col = scratchBase.map { $0 + worker * panel * g.patch }
            for item in (items * worker / w)..<(items * (worker + 1) / w) {
                let n = item / perImage, grp = (item / panels) % g.group, q0 = (item % panels) * panel
                let cols = min(panel, outPlane - q0)
                let xg = x + (n * g.inChannels + grp * g.groupIn) * inPlane
                let yc = y + (n * g.outChannels + grp * g.groupOut) * outPlane + q0
                if let bias {
                    for m in 0..<g.groupOut { (yc + m * outPlane).update(repeating: bias[grp * g.groupOut + m], count: cols) }
                }
                let b: UnsafePointer<Float>, ldb: Int
                if let col {
                    im2colPanel(xg, q0, cols, col)
                    b = UnsafePointer(col); ldb = cols
                } else {
                    b = xg + q0; ldb = outPlane
                }
                gemm(transA: false, transB: false, m: g.groupOut, n: cols, k: g.patch, alpha: 1,
                     a: weight + grp * g.groupOut * g.patch, lda: g.patch, b: b, ldb: ldb,
                     beta: bias == nil ? 0 : 1, c: yc, ldc: outPlane)
            }
        }
        // Restores the process default rather than the value read before: two convolutions
        // running at once would otherwise leave OpenBLAS single-threaded for good.
        if w > 1 { setBLASThreads(NNParallel.blasDefaultThreads) }
    }

    /// Columns `[q0, q0 + cols)` of one group's im2col matrix, stored `[patch, cols]`:
    /// `col[(c * kH + ky) * kW + kx, q - q0] = x[c, oy*sH + ky*dH - padTop, ox*sW + kx*dW - padLeft]`
    /// with `q = oy * OW + ox` (0 outside the input).
    private func im2colPanel(_ x: UnsafePointer<Float>, _ q0: Int, _ cols: Int, _ col: UnsafeMutablePointer<Float>) {
        let g = geometry
        let inPlane = g.inH * g.inW, ow = g.outW, sw = g.strideW
        for r in 0..<g.patch {
            let kx = r % g.kernelW, ky = (r / g.kernelW) % g.kernelH, c = r / (g.kernelW * g.kernelH)
            let lo = xRanges[2 * kx], hi = xRanges[2 * kx + 1]
            let offX = kx * g.dilationW - g.padLeft
            let row = col + r * cols
            var q = q0
            let end = q0 + cols
            while q < end {
                let oy = q / ow, ox0 = q % ow
                let run = min(ow - ox0, end - q)
                let dst = row + (q - q0) - ox0
                let iy = oy * g.strideH + ky * g.dilationH - g.padTop
                if iy < 0 || iy >= g.inH {
                    (dst + ox0).update(repeating: 0, count: run)
                } else {
                    let src = x + c * inPlane + iy * g.inW + offX
                    let a = min(max(lo, ox0), ox0 + run), b = max(a, min(hi, ox0 + run))
                    if a > ox0 { (dst + ox0).update(repeating: 0, count: a - ox0) }
                    if sw == 1 {
                        (dst + a).update(from: src + a, count: b - a)
                    } else {
                        for ox in a..<b { dst[ox] = src[ox * sw] }
                    }
                    if b < ox0 + run { (dst + b).update(repeating: 0, count: ox0 + run - b) }
                }
                q += run
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
