import CKernels

/// A 2-D convolution that sums in onnxruntime's CPU order, to the bit:
/// `y[N, M, OH, OW] = conv(x[N, C, H, W], w[M, C/group, kH, kW]) + b[M]`.
///
/// onnxruntime's float Conv (MLAS: a GEMM straight on the input for 1x1 stride-1 unpadded
/// kernels, else im2col + GEMM) computes each output as: the `K = C/group * kH * kW` products
/// in `[c, ky, kx]` order cut into slices of `sliceLength(outputs:depth:)` terms (the SGEMM's K
/// stride, which depends on the plane size and K); each slice a chain of fused multiply-adds
/// starting from zero; the slices added left to right into the output; then the bias added.
/// Checked bit for bit against onnxruntime 1.31.1 on pointwise, 3x3, strided, padded and
/// grouped convolutions with K up to 1152. Quantized graphs need it: their float
/// convolutions feed a QuantizeLinear, and a last-bit difference can move a value across a
/// rounding boundary (EfficientNet-Lite's int8 QDQ files flipped 4 labels of 200 with
/// OpenBLAS's order).
///
/// Not for one output channel per group (depthwise) or a 1x1 output plane: MLAS runs those
/// through its matrix-vector kernels, in another order (`handles`). The chains run over
/// columns at the CPU's vector width (`braid_fma_chain`), without GEMM blocking: this is not a
/// speed path. Scratch is allocated here, never during `forward`.
public final class MLASOrderConv2D: @unchecked Sendable {
    public let geometry: ConvGeometry
    /// Output columns per work item.
    let panel: Int
    /// Terms per slice of each output's sum.
    let slice: Int
    let pointwise: Bool
    /// Per worker: an im2col panel `[patch, panel]` (unless pointwise), then a slice's sums `[panel]`.
    private let scratch: UnsafeMutablePointer<Float>
    private let perWorker: Int
    private let xRanges: UnsafeMutablePointer<Int>

    /// True when this kernel sums convolution `g` as onnxruntime does.
    public static func handles(_ g: ConvGeometry) -> Bool {
        g.groupOut > 1 && g.outH * g.outW > 1
    }

    /// MLAS's K stride for a product with `outputs` columns and depth `depth`: 128, halved
    /// (while at least the depth) when the columns are at least the depth, else doubled while
    /// the column stride (128, halved alongside, not below 16) stays at least the columns.
    public static func sliceLength(outputs n: Int, depth k: Int) -> Int {
        var strideN = 128, strideK = 128
        if n >= k {
            while strideK / 2 >= k { strideN *= 2; strideK /= 2 }
        } else {
            while strideN > 16 && strideN / 2 >= n { strideK *= 2; strideN /= 2 }
        }
        return strideK
    }

    public init(_ g: ConvGeometry) {
        precondition(MLASOrderConv2D.handles(g), "MLASOrderConv2D: one output channel per group or a 1x1 plane")
        geometry = g
        let outPlane = g.outH * g.outW
        pointwise = Conv2D.methodOf(g) == .pointwise
        panel = min(outPlane, 256)
        slice = MLASOrderConv2D.sliceLength(outputs: outPlane, depth: g.patch)
        perWorker = (pointwise ? 0 : g.patch * panel) + panel
        scratch = .allocate(capacity: perWorker * NNParallel.workers)
        xRanges = g.columnRanges()
    }

    deinit {
        scratch.deallocate()
        xRanges.deallocate()
    }

    /// Runs the convolution. `x` `[N, C, H, W]`, `weight` `[M, C/group, kH, kW]`, `bias` `[M]`
    /// or nil, `y` `[N, M, OH, OW]` (fully overwritten).
    public func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        y: UnsafeMutablePointer<Float>) {
        let g = geometry
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW, panel = self.panel
        let panels = (outPlane + panel - 1) / panel
        let items = g.batch * g.group * panels
        let w = min(items, NNParallel.workers)
        NNParallel.run(w) { worker in
            let base = scratch + worker * perWorker
            let col: UnsafeMutablePointer<Float>? = pointwise ? nil : base
            let acc = base + (pointwise ? 0 : g.patch * panel)
            for item in (items * worker / w)..<(items * (worker + 1) / w) {
                let n = item / (g.group * panels), grp = (item / panels) % g.group, q0 = (item % panels) * panel
                let cols = min(panel, outPlane - q0)
                let xg = x + (n * g.inChannels + grp * g.groupIn) * inPlane
                let (b, ldb) = g.panelOperand(xg, q0, cols, col, xRanges)
                for m in (grp * g.groupOut)..<((grp + 1) * g.groupOut) {
                    let out = y + (n * g.outChannels + m) * outPlane + q0
                    sumRow(weight + m * g.patch, b, ldb, cols, acc, out)
                    if let bias {
                        let bm = bias[m]
                        for j in 0..<cols { out[j] = out[j] + bm }
                    }
                }
            }
        }
    }

    /// `out[j] = w · b[:, j]` for `j < cols`, in slices of `slice` terms (see the type).
    @inline(__always)
    private func sumRow(_ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ ldb: Int, _ cols: Int,
                        _ acc: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
        let depth = geometry.patch
        var k0 = 0
        while k0 < depth {
            let k1 = min(depth, k0 + slice)
            let into = k0 == 0 ? out : acc
            into.update(repeating: 0, count: cols)
            braid_fma_chain(into, b + k0 * ldb, ldb, w + k0, k1 - k0, cols)
            if k0 > 0 { for j in 0..<cols { out[j] = out[j] + acc[j] } }
            k0 = k1
        }
    }
}
