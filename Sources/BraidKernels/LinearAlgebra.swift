import BraidTensor

public enum LinearAlgebra {
    /// Determinants of `count` square matrices `[m, m]` (row-major, back to back) by LU
    /// decomposition with partial pivoting in Float64. `scratch` holds `m * m` doubles.
    public static func determinants(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, m: Int,
                                    scratch: UnsafeMutablePointer<Double>) {
        for k in 0..<count {
            for i in 0..<(m * m) { scratch[i] = Double(x[k * m * m + i]) }
            var det = 1.0
            for col in 0..<m {
                var pivot = col
                for r in (col + 1)..<max(col + 1, m) where abs(scratch[r * m + col]) > abs(scratch[pivot * m + col]) { pivot = r }
                if scratch[pivot * m + col] == 0 { det = 0; break }
                if pivot != col {
                    for c in 0..<m { let t = scratch[col * m + c]; scratch[col * m + c] = scratch[pivot * m + c]; scratch[pivot * m + c] = t }
                    det = -det
                }
                let p = scratch[col * m + col]
                det *= p
                for r in (col + 1)..<max(col + 1, m) {
                    let f = scratch[r * m + col] / p
                    if f != 0 { for c in col..<m { scratch[r * m + c] -= f * scratch[col * m + c] } }
                }
            }
            y[k] = Float(det)
        }
    }

    /// MaxUnpool: `y` of shape `outShape` zeroed, then each pooled value `x[i]` put at its
    /// flat index `indices[i]` into the pool's natural shape `shape` (which sits at the start
    /// of every axis of `outShape`); indices outside it are skipped.
    public static func unpool(_ x: UnsafePointer<Float>, _ indices: UnsafePointer<Int64>, count: Int,
                              _ y: UnsafeMutablePointer<Float>, shape: [Int], strides: [Int], outShape: [Int], outStrides: [Int]) {
        y.update(repeating: 0, count: outShape.reduce(1, *))
        let total = shape.reduce(1, *)
        for i in 0..<count {
            var at = Int(indices[i])
            guard at >= 0 && at < total else { continue }
            var off = 0, valid = true
            for d in 0..<shape.count {
                let c = at / strides[d]
                at %= strides[d]
                if c >= outShape[d] { valid = false; break }
                off += c * outStrides[d]
            }
            if valid { y[off] = x[i] }
        }
    }
}
