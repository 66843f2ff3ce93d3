/// Branch-free exp, sigmoid and tanh for the hot activations. libm's `expf` and `tanhf` are
/// calls the loop vectoriser cannot see through; these are written so that `map` loops over
/// them vectorise. Relative error stays below about 2e-7 (Cephes polynomials), well inside
/// ONNX's tolerances.

/// e^v; overflow gives +inf, results below the smallest normal float flush to 0, NaN stays.
@inline(__always)
func fastExp(_ v: Float) -> Float {
    // e^x = 2^n * e^r with n = round(x / ln2), |r| <= ln2 / 2, e^r by a degree-6 polynomial.
    let x = Swift.min(Swift.max(v, -87.336_544), 88.722_83)
    // Adding 1.5 * 2^23 rounds to an integer and leaves it in the low mantissa bits.
    let t = Swift.min(Swift.max(x * 1.442_695_04, -126), 127) + 12_582_912
    let n = t - 12_582_912
    let r = x - n * 0.693_359_375 - n * -2.121_944_4e-4
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    let er = p * r * r + r + 1
    let scale = Float(bitPattern: (t.bitPattern &- 0x4B40_0000 &+ 127) &<< 23)
    var out = er * scale
    out = v > 88.722_83 ? .infinity : out
    out = v < -87.336_544 ? 0 : out
    return v != v ? v : out
}

@inline(__always)
func fastSigmoid(_ v: Float) -> Float {
    1 / (1 + fastExp(-v))
}

@inline(__always)
func fastTanh(_ v: Float) -> Float {
    let a = Swift.abs(v)
    // Small |x|: Cephes tanhf polynomial, free of the cancellation in 1 - 2 / (e^2x + 1).
    let z = v * v
    var p: Float = -5.704_988_727_45e-3
    p = p * z + 2.063_908_879_54e-2
    p = p * z - 5.373_971_555_31e-2
    p = p * z + 1.333_144_220_36e-1
    p = p * z - 3.333_328_194_22e-1
    let small = p * z * v + v
    let large = 1 - 2 / (fastExp(2 * a) + 1)
    let out = a < 0.625 ? small : (v < 0 ? -large : large)
    return v != v ? v : out
}
