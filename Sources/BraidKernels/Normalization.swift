import Foundation

/// Folds inference batch-norm parameters (each `[C]`) into `y = x * scale' + shift'`:
/// `scale' = scale / sqrt(var + epsilon)`, `shift' = bias - mean * scale'`.
public func batchNormCoefficients(channels: Int, scale: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                  mean: UnsafePointer<Float>, variance: UnsafePointer<Float>, epsilon: Float,
                                  outScale: UnsafeMutablePointer<Float>, outShift: UnsafeMutablePointer<Float>) {
    for c in 0..<channels {
        let s = scale[c] / (variance[c] + epsilon).squareRoot()
        outScale[c] = s
        outShift[c] = bias[c] - mean[c] * s
    }
}

/// Per-channel affine map `y[n, c, i] = x[n, c, i] * scale[c] + shift[c]` over `x` `[N, C, S]`
/// (S the product of spatial dims): batch-norm at inference after `batchNormCoefficients`.
public func channelAffine(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                          scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
    let planes = batch * channels
    let chunks = planes * spatial >= 1 << 16 ? min(planes, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
            let c = p % channels
            NNVec.affine(x + p * spatial, y + p * spatial, spatial, scale[c], shift[c])
        }
    }
}

/// Instance normalisation over `x` `[N, C, S]`: each `(n, c)` row is normalised by its own
/// mean and (biased) variance, then `* scale[c] + bias[c]`.
public func instanceNorm(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                         scale: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float,
                         y: UnsafeMutablePointer<Float>) {
    let planes = batch * channels
    let chunks = planes * spatial >= 1 << 16 ? min(planes, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
            let c = p % channels
            let row = x + p * spatial
            let mean = spatial == 0 ? 0 : NNVec.sum(row, spatial) / Float(spatial)
            let variance = spatial == 0 ? 0 : NNVec.squaredDeviation(row, spatial, mean) / Float(spatial)
            let s = scale[c] / (variance + epsilon).squareRoot()
            NNVec.affine(row, y + p * spatial, spatial, s, bias[c] - mean * s)
        }
    }
}

/// Layer normalisation of `x` `[outer, inner]` over `inner`:
/// `y = (x - mean) / sqrt(var + epsilon) * scale + bias`, `scale` and `bias` `[inner]`
/// (`bias` optional). `mean` and `invStdDev` `[outer]`, when given, receive the statistics.
public func layerNorm(outer: Int, inner: Int, x: UnsafePointer<Float>, scale: UnsafePointer<Float>,
                      bias: UnsafePointer<Float>?, epsilon: Float, y: UnsafeMutablePointer<Float>,
                      mean: UnsafeMutablePointer<Float>? = nil, invStdDev: UnsafeMutablePointer<Float>? = nil) {
    let chunks = outer * inner >= 1 << 16 ? min(outer, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for r in (outer * i / chunks)..<(outer * (i + 1) / chunks) {
            let row = x + r * inner, out = y + r * inner
            let mu = inner == 0 ? 0 : NNVec.sum(row, inner) / Float(inner)
            let variance = inner == 0 ? 0 : NNVec.squaredDeviation(row, inner, mu) / Float(inner)
            let inv = 1 / (variance + epsilon).squareRoot()
            mean?[r] = mu
            invStdDev?[r] = inv
            if let bias {
                for j in 0..<inner { out[j] = (row[j] - mu) * inv * scale[j] + bias[j] }
            } else {
                for j in 0..<inner { out[j] = (row[j] - mu) * inv * scale[j] }
            }
        }
    }
}

/// Local response normalisation across channels of `x` `[N, C, S]` (ONNX LRN):
/// `y = x / (bias + alpha / size * sum(x[c']^2))^beta` with `c'` from
/// `c - floor((size - 1) / 2)` to `c + ceil((size - 1) / 2)`, clipped to the channels.
public func lrn(batch: Int, channels: Int, spatial: Int, size: Int, alpha: Float, beta: Float, bias: Float,
                x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
    let before = (size - 1) / 2, after = size - 1 - before
    let a = alpha / Float(size)
    let planes = batch * channels
    let chunks = planes * spatial * size >= 1 << 16 ? min(planes, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
            let n = p / channels, c = p % channels
            let xn = x + n * channels * spatial
            let out = y + p * spatial
            // The output row first holds the window's sum of squares, then the result.
            out.update(repeating: 0, count: spatial)
            for k in max(0, c - before)...min(channels - 1, c + after) {
                let row = xn + k * spatial
                for j in 0..<spatial { out[j] += row[j] * row[j] }
            }
            let xc = xn + c * spatial
            if beta == 0.75 {
                for j in 0..<spatial {
                    let base = bias + a * out[j]
                    out[j] = xc[j] / (base * base.squareRoot()).squareRoot()
                }
            } else {
                for j in 0..<spatial { out[j] = xc[j] / powf(bias + a * out[j], beta) }
            }
        }
    }
}
