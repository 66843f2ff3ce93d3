/// The convolution product for few input channels per output (`patch <= limit`: a pointwise
/// convolution from 16 or 32 channels, a first 3x3 convolution over RGB) or few output
/// channels (see `prefers`), computed
/// directly instead of through `cblas_sgemm`. With so short an inner dimension OpenBLAS spends
/// most of its time packing (16x12544x27: 39 GFLOP/s here, against about 80 for square
/// products); this kernel keeps a 4-channel x 16-column tile of the output in registers, reads
/// each input vector once per tile, and applies bias, residual and activation before the only
/// store.
enum SmallPatchConv {
    /// The longest inner dimension (`C/group * kH * kW`) sent here rather than to GEMM.
    static let limit = 32

    /// Whether a product of `m` output channels over inner dimension `k` runs here: a short
    /// inner dimension, or few output channels (fer's 8-channel 3x3 convolutions and its
    /// 7-class 3x3 head, where OpenBLAS's packing dominates a GEMM with 7 or 8 rows).
    static func prefers(m: Int, k: Int) -> Bool { k <= limit || (m <= 16 && k <= 2048) }

    /// `y[m, q] = f(sum_k w[m, k] * b[k, q] + bias[m] + r[m, q])` for `m < rows`, `q < cols`.
    /// `w` `[rows, k]` (row stride `k`), `b` `[k, cols]` (row stride `ldb`), `y` and
    /// `residual` `[rows, cols]` (row stride `ldy`), `bias` `[rows]` or nil.
    @inline(__always)
    static func product<F: EpilogueFunction>(_ f: F, rows: Int, cols: Int, k: Int, w: UnsafePointer<Float>,
                                             b: UnsafePointer<Float>, ldb: Int, bias: UnsafePointer<Float>?,
                                             residual: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                                             ldy: Int) {
        let braw = UnsafeRawPointer(b), rowBytes = ldb * 4
        var m = 0
        while m + 4 <= rows {
            let w0 = w + m * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k
            let b0 = SIMD8<Float>(repeating: bias?[m] ?? 0), b1 = SIMD8<Float>(repeating: bias?[m + 1] ?? 0)
            let b2 = SIMD8<Float>(repeating: bias?[m + 2] ?? 0), b3 = SIMD8<Float>(repeating: bias?[m + 3] ?? 0)
            var q = 0
            while q + 16 <= cols {
                var a0 = b0, a1 = b1, a2 = b2, a3 = b3, c0 = b0, c1 = b1, c2 = b2, c3 = b3
                var p = braw + q * 4
                for j in 0..<k {
                    let lo = p.loadUnaligned(as: SIMD8<Float>.self)
                    let hi = p.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                    let v0 = SIMD8<Float>(repeating: w0[j]), v1 = SIMD8<Float>(repeating: w1[j])
                    let v2 = SIMD8<Float>(repeating: w2[j]), v3 = SIMD8<Float>(repeating: w3[j])
                    a0.addProduct(lo, v0); c0.addProduct(hi, v0)
                    a1.addProduct(lo, v1); c1.addProduct(hi, v1)
                    a2.addProduct(lo, v2); c2.addProduct(hi, v2)
                    a3.addProduct(lo, v3); c3.addProduct(hi, v3)
                    p += rowBytes
                }
                let at = m * ldy + q
                put(f, a0, c0, y + at, residual.map { $0 + at })
                put(f, a1, c1, y + at + ldy, residual.map { $0 + at + ldy })
                put(f, a2, c2, y + at + 2 * ldy, residual.map { $0 + at + 2 * ldy })
                put(f, a3, c3, y + at + 3 * ldy, residual.map { $0 + at + 3 * ldy })
                q += 16
            }
            if q < cols {
                for r in m..<(m + 4) { tail(f, r, q, cols, k, w, b, ldb, bias, residual, y, ldy) }
            }
            m += 4
        }
        while m < rows {
            tail(f, m, 0, cols, k, w, b, ldb, bias, residual, y, ldy)
            m += 1
        }
    }

    @inline(__always)
    private static func put<F: EpilogueFunction>(_ f: F, _ lo: SIMD8<Float>, _ hi: SIMD8<Float>,
                                                 _ y: UnsafeMutablePointer<Float>, _ r: UnsafePointer<Float>?) {
        let out = UnsafeMutableRawPointer(y)
        if let r {
            let rr = UnsafeRawPointer(r)
            out.storeBytes(of: f(lo + rr.loadUnaligned(as: SIMD8<Float>.self)), as: SIMD8<Float>.self)
            out.storeBytes(of: f(hi + rr.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)),
                           toByteOffset: 32, as: SIMD8<Float>.self)
        } else {
            out.storeBytes(of: f(lo), as: SIMD8<Float>.self)
            out.storeBytes(of: f(hi), toByteOffset: 32, as: SIMD8<Float>.self)
        }
    }

    /// Output channel `m`, columns `q0 ..< cols`: eight at a time, then one at a time.
    @inline(__always)
    private static func tail<F: EpilogueFunction>(_ f: F, _ m: Int, _ q0: Int, _ cols: Int, _ k: Int,
                                                  _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ ldb: Int,
                                                  _ bias: UnsafePointer<Float>?, _ residual: UnsafePointer<Float>?,
                                                  _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let wm = w + m * k, bm = bias?[m] ?? 0
        let yrow = y + m * ldy, rrow = residual.map { $0 + m * ldy }
        var q = q0
        while q + 8 <= cols {
            var a = SIMD8<Float>(repeating: bm)
            let braw = UnsafeRawPointer(b + q)
            for j in 0..<k {
                a.addProduct(braw.loadUnaligned(fromByteOffset: j * ldb * 4, as: SIMD8<Float>.self),
                             SIMD8(repeating: wm[j]))
            }
            if let rrow { a += UnsafeRawPointer(rrow + q).loadUnaligned(as: SIMD8<Float>.self) }
            UnsafeMutableRawPointer(yrow + q).storeBytes(of: f(a), as: SIMD8<Float>.self)
            q += 8
        }
        while q < cols {
            var a = bm
            for j in 0..<k { a += wm[j] * b[j * ldb + q] }
            if let rrow { a += rrow[q] }
            yrow[q] = f(a)
            q += 1
        }
    }
}
