
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
/// (depthwise), a plain GEMM for unpadded stride-1 1x1 kernels, otherwise im2col + GEMM per
/// group. The im2col scratch is allocated here, never during `forward`.
public final class Conv2D: @unchecked Sendable {
    public enum Method: Sendable { case depthwise, pointwise, im2col }

    public let geometry: ConvGeometry
    public let method: Method
    /// Images processed concurrently, each with single-threaded GEMMs, instead of one image at
    /// a time with OpenBLAS threading each GEMM.
    public let parallelBatch: Bool
    private let workers: Int
    private let colStride: Int
    private let col: UnsafeMutablePointer<Float>?
    private let xRanges: UnsafeMutablePointer<Int>
    private let depthwise: DepthwiseConv2D?

    public init(_ g: ConvGeometry, parallelBatch: Bool? = nil) {
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
        let usesGEMM = method != .depthwise
        self.parallelBatch = usesGEMM && g.batch > 1 && NNParallel.workers > 1 && (parallelBatch ?? Conv2D.defaultParallelBatch)
        workers = self.parallelBatch ? min(g.batch, NNParallel.workers) : 1
        _ = NNParallel.blasDefaultThreads
        colStride = g.patch * g.outH * g.outW
        col = method == .im2col ? .allocate(capacity: max(1, colStride * workers)) : nil
        xRanges = .allocate(capacity: 2 * max(1, g.kernelW))
        for kx in 0..<g.kernelW {
            let (lo, hi) = ConvGeometry.validOutputs(offset: kx * g.dilationW - g.padLeft, stride: g.strideW,
                                        size: g.inW, count: g.outW)
            xRanges[2 * kx] = lo; xRanges[2 * kx + 1] = hi
        }
    }

    /// Whether batches use `parallelBatch` unless a kernel says otherwise.
    nonisolated(unsafe) public static var defaultParallelBatch = true

    deinit {
        col?.deallocate()
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
        if parallelBatch {
            setBLASThreads(1)
            let w = workers
            NNParallel.run(w) { worker in
                var n = worker
                while n < g.batch {
                    image(n, scratch: col.map { $0 + worker * colStride }, x: x, weight: weight, bias: bias,
                          y: y, parallelIm2col: false)
                    n += w
                }
            }
            // Restores the process default rather than the value read before: two convolutions
            // running at once would otherwise leave OpenBLAS single-threaded for good.
            setBLASThreads(NNParallel.blasDefaultThreads)
        } else {
            for n in 0..<g.batch {
                image(n, scratch: col, x: x, weight: weight, bias: bias, y: y, parallelIm2col: true)
            }
        }
    }

    private func image(_ n: Int, scratch: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                       weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                       y: UnsafeMutablePointer<Float>, parallelIm2col: Bool) {
        let g = geometry
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
        let xn = x + n * g.inChannels * inPlane
        let yn = y + n * g.outChannels * outPlane
        if let bias {
            for m in 0..<g.outChannels { (yn + m * outPlane).update(repeating: bias[m], count: outPlane) }
        }
        let beta: Float = bias == nil ? 0 : 1
        for grp in 0..<g.group {
            let xg = xn + grp * g.groupIn * inPlane
            let b: UnsafePointer<Float>
            if let scratch {
                im2col(xg, channels: g.groupIn, col: scratch, parallel: parallelIm2col)
                b = UnsafePointer(scratch)
            } else {
                b = xg
            }
            gemm(transA: false, transB: false, m: g.groupOut, n: outPlane, k: g.patch, alpha: 1,
                 a: weight + grp * g.groupOut * g.patch, lda: g.patch, b: b, ldb: outPlane,
                 beta: beta, c: yn + grp * g.groupOut * outPlane, ldc: outPlane)
        }
    }

    /// `col[(c * kH + ky) * kW + kx, oy * OW + ox] = x[c, oy*sH + ky*dH - padTop, ox*sW + kx*dW - padLeft]`
    /// (0 outside), for `channels` channels of one image.
    private func im2col(_ x: UnsafePointer<Float>, channels: Int, col: UnsafeMutablePointer<Float>, parallel: Bool) {
        let g = geometry
        let rows = channels * g.kernelH * g.kernelW
        let chunks = parallel && NNParallel.workers > 1 && colStride >= 1 << 16 ? NNParallel.workers : 1
        if chunks == 1 {
            im2colRows(x, 0, rows, col)
        } else {
            NNParallel.run(chunks) { i in
                im2colRows(x, rows * i / chunks, rows * (i + 1) / chunks, col)
            }
        }
    }

    private func im2colRows(_ x: UnsafePointer<Float>, _ first: Int, _ end: Int, _ col: UnsafeMutablePointer<Float>) {
        let g = geometry
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW, ow = g.outW, sw = g.strideW
        for r in first..<end {
            let kx = r % g.kernelW, ky = (r / g.kernelW) % g.kernelH, c = r / (g.kernelW * g.kernelH)
            let row = col + r * outPlane
            let lo = xRanges[2 * kx], hi = xRanges[2 * kx + 1]
            let offX = kx * g.dilationW - g.padLeft
            for oy in 0..<g.outH {
                let iy = oy * g.strideH + ky * g.dilationH - g.padTop
                let dst = row + oy * ow
                if iy < 0 || iy >= g.inH {
                    dst.update(repeating: 0, count: ow)
                    continue
                }
                let src = x + c * inPlane + iy * g.inW + offX
                if lo > 0 { dst.update(repeating: 0, count: lo) }
                if sw == 1 {
                    (dst + lo).update(from: src + lo, count: hi - lo)
                } else {
                    for ox in lo..<hi { dst[ox] = src[ox * sw] }
                }
                if hi < ow { (dst + hi).update(repeating: 0, count: ow - hi) }
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
