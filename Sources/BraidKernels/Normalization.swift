import Foundation
import BraidTensor

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

/// `y = activation(x * scale[c] + shift[c])` over `x` `[N, C, S]` in one pass.
public func channelAffine(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                          scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, activation: ConvActivation?,
                          y: UnsafeMutablePointer<Float>) {
    activation.dispatch(AffineRun(batch: batch, channels: channels, spatial: spatial, x: x, scale: scale, shift: shift, y: y))
}

private struct AffineRun: EpilogueVisitor {
    let batch: Int, channels: Int, spatial: Int
    let x: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>

    func visit<F: EpilogueFunction>(_ f: F) {
        let planes = batch * channels, spatial = self.spatial
        let chunks = planes * spatial >= 1 << 16 ? min(planes, NNParallel.workers) : 1
        let x = self.x, y = self.y, scale = self.scale, shift = self.shift, channels = self.channels
        NNParallel.run(chunks) { i in
            for p in (planes * i / chunks)..<(planes * (i + 1) / chunks) {
                let c = p % channels, s = scale[c], t = shift[c]
                let src = UnsafeRawPointer(x + p * spatial), dst = UnsafeMutableRawPointer(y + p * spatial)
                let s8 = SIMD8<Float>(repeating: s), t8 = SIMD8<Float>(repeating: t)
                var j = 0
                while j + 8 <= spatial {
                    let v = src.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
                    dst.storeBytes(of: f(v * s8 + t8), toByteOffset: 4 * j, as: SIMD8<Float>.self)
                    j += 8
                }
                while j < spatial {
                    dst.storeBytes(of: f(src.load(fromByteOffset: 4 * j, as: Float.self) * s + t), toByteOffset: 4 * j,
                                   as: Float.self)
                    j += 1
                }
            }
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

// MARK: - Backward and training mode

/// `sum((x[i] - mean) * d[i])` over `count` floats.
@inline(__always)
func centeredDot(_ x: UnsafePointer<Float>, _ d: UnsafePointer<Float>, _ count: Int, _ mean: Float) -> Float {
    var acc = SIMD8<Float>()
    let m = SIMD8<Float>(repeating: mean)
    var i = 0
    let xr = UnsafeRawPointer(x), dr = UnsafeRawPointer(d)
    while i + 8 <= count {
        let xv = xr.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        acc += (xv - m) * dr.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    var s = acc.sum()
    while i < count { s += (x[i] - mean) * d[i]; i += 1 }
    return s
}

/// `dx[i] += a * dy[i] + b * (x[i] - mean) + c`.
@inline(__always)
func normInputGrad(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                           _ count: Int, _ a: Float, _ b: Float, _ mean: Float, _ c: Float) {
    for i in 0..<count { dx[i] += a * dy[i] + b * (x[i] - mean) + c }
}

/// Training-mode batch normalisation of `x` `[N, C, S]` with the batch's statistics per
/// channel: `mean[c]`, biased variance `v`, `invStd[c] = 1 / sqrt(v + epsilon)`, and
/// `y = (x - mean) * invStd * scale + bias`. Updates `runningMean` and `runningVar` (each `[C]`)
/// in place as `r = (1 - momentum) * r + momentum * batch`, the variance unbiased
/// (`v * M / (M - 1)`, `M = N * S`) as PyTorch does. `mean` and `invStd` `[C]` are what
/// `batchNormTrainingBackward` needs.
public func batchNormTraining(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                              scale: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float, momentum: Float,
                              runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
                              y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                              invStd: UnsafeMutablePointer<Float>) {
    if let reduce = BatchStatisticsSync.allReduce {
        return batchNormTrainingSynced(batch: batch, channels: channels, spatial: spatial, x: x, scale: scale, bias: bias,
                                       epsilon: epsilon, momentum: momentum, runningMean: runningMean,
                                       runningVar: runningVar, y: y, mean: mean, invStd: invStd,
                                       processes: BatchStatisticsSync.processes, allReduce: reduce)
    }
    let count = batch * spatial
    let chunks = channels * count >= 1 << 16 ? min(channels, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            var s: Float = 0
            for n in 0..<batch { s += NNVec.sum(x + (n * channels + c) * spatial, spatial) }
            let mu = count == 0 ? 0 : s / Float(count)
            var ss: Float = 0
            for n in 0..<batch { ss += NNVec.squaredDeviation(x + (n * channels + c) * spatial, spatial, mu) }
            mean[c] = mu
            normalizeTrainingChannel(c, mean: mu, variance: count == 0 ? 0 : ss / Float(count), count: count,
                                     batch: batch, channels: channels, spatial: spatial, x: x, y: y, scale: scale,
                                     bias: bias, epsilon: epsilon, momentum: momentum, runningMean: runningMean,
                                     runningVar: runningVar, invStd: invStd)
        }
    }
}

/// Channel `c` of a training batch norm over `[N, C, S]`, given its batch mean and biased
/// variance over `count` values: `invStd[c] = 1 / sqrt(variance + epsilon)`,
/// `y = scale * (x - mean) * invStd + bias`, and the running statistics moved by `momentum`
/// (the variance unbiased: `variance * count / (count - 1)`). Shared by `batchNormTraining`
/// and its synchronised form, whose `count` spans every process's shard.
@inline(__always)
func normalizeTrainingChannel(_ c: Int, mean mu: Float, variance: Float, count: Int, batch: Int, channels: Int,
                              spatial: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                              scale: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float,
                              momentum: Float, runningMean: UnsafeMutablePointer<Float>,
                              runningVar: UnsafeMutablePointer<Float>, invStd: UnsafeMutablePointer<Float>) {
    let inv = 1 / (variance + epsilon).squareRoot()
    invStd[c] = inv
    let k = scale[c] * inv, shift = bias[c] - mu * k
    for n in 0..<batch {
        let o = (n * channels + c) * spatial
        NNVec.affine(x + o, y + o, spatial, k, shift)
    }
    let unbiased = count > 1 ? variance * Float(count) / Float(count - 1) : variance
    runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mu
    runningVar[c] = (1 - momentum) * runningVar[c] + momentum * unbiased
}

/// Backward of `batchNormTraining`: from `dy` `[N, C, S]`, the batch `mean` and `invStd`
/// `[C]`, adds `dx` `[N, C, S]`, `dScale` and `dBias` `[C]` (each skipped when nil), the
/// batch statistics differentiated through:
/// `dx = scale * invStd / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))`.
public func batchNormTrainingBackward(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                                      scale: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                                      invStd: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                      dx: UnsafeMutablePointer<Float>?, dScale: UnsafeMutablePointer<Float>?,
                                      dBias: UnsafeMutablePointer<Float>?) {
    if let reduce = BatchStatisticsSync.allReduce {
        return batchNormTrainingSyncedBackward(batch: batch, channels: channels, spatial: spatial, x: x, scale: scale,
                                               mean: mean, invStd: invStd, dy: dy, dx: dx, dScale: dScale, dBias: dBias,
                                               scratch: BatchStatisticsSync.scratch(2 * channels),
                                               processes: BatchStatisticsSync.processes, allReduce: reduce)
    }
    let count = batch * spatial
    let chunks = channels * count >= 1 << 16 ? min(channels, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            let mu = mean[c], inv = invStd[c]
            let (sdy, sdyx) = channelGradientSums(batch, channels, spatial, c, x, dy, mu)
            dBias?[c] += sdy
            dScale?[c] += sdyx * inv
            guard let dx, count > 0 else { continue }
            let a = scale[c] * inv, m = Float(count)
            let b = -a * inv * inv * sdyx / m, shift = -a * sdy / m
            for n in 0..<batch {
                let o = (n * channels + c) * spatial
                normInputGrad(dy + o, x + o, dx + o, spatial, a, b, mu, shift)
            }
        }
    }
}

/// Channel `c`'s sums over batch and space of `dy` and of `(x - mu) * dy`, `x` and `dy`
/// `[N, C, S]`: what every batch-norm backward needs for its scale, bias and input gradients.
@inline(__always)
private func channelGradientSums(_ batch: Int, _ channels: Int, _ spatial: Int, _ c: Int, _ x: UnsafePointer<Float>,
                                 _ dy: UnsafePointer<Float>, _ mu: Float) -> (Float, Float) {
    var sdy: Float = 0, sdyx: Float = 0
    for n in 0..<batch {
        let o = (n * channels + c) * spatial
        sdy += NNVec.sum(dy + o, spatial)
        sdyx += centeredDot(x + o, dy + o, spatial, mu)
    }
    return (sdy, sdyx)
}

/// Backward of inference batch normalisation `y = (x - mean) / sqrt(var + eps) * scale + bias`
/// over `x` `[N, C, S]` with fixed statistics: adds `dx`, `dScale`, `dBias`, `dMean` and `dVar`
/// (each skipped when nil).
public func batchNormBackward(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                              scale: UnsafePointer<Float>, mean: UnsafePointer<Float>, variance: UnsafePointer<Float>,
                              epsilon: Float, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
                              dScale: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
                              dMean: UnsafeMutablePointer<Float>?, dVar: UnsafeMutablePointer<Float>?) {
    let count = batch * spatial
    let chunks = channels * count >= 1 << 16 ? min(channels, NNParallel.workers) : 1
    let needSums = dScale != nil || dBias != nil || dMean != nil || dVar != nil
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            let mu = mean[c], inv = 1 / (variance[c] + epsilon).squareRoot(), a = scale[c] * inv
            if needSums {
                let (sdy, sdyx) = channelGradientSums(batch, channels, spatial, c, x, dy, mu)
                dBias?[c] += sdy
                dScale?[c] += sdyx * inv
                dMean?[c] += -a * sdy
                dVar?[c] += -0.5 * a * inv * inv * sdyx
            }
            if let dx {
                for n in 0..<batch {
                    let o = (n * channels + c) * spatial
                    normInputGrad(dy + o, x + o, dx + o, spatial, a, 0, mu, 0)
                }
            }
        }
    }
}

/// Backward of `instanceNorm` over `x` `[N, C, S]`: adds `dx`, `dScale` and `dBias` `[C]`
/// (each skipped when nil), recomputing each row's statistics.
public func instanceNormBackward(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                                 scale: UnsafePointer<Float>, epsilon: Float, dy: UnsafePointer<Float>,
                                 dx: UnsafeMutablePointer<Float>?, dScale: UnsafeMutablePointer<Float>?,
                                 dBias: UnsafeMutablePointer<Float>?) {
    let chunks = batch * channels * spatial >= 1 << 16 ? min(channels, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            for n in 0..<batch {
                let o = (n * channels + c) * spatial
                if spatial == 0 { continue }
                let mu = NNVec.sum(x + o, spatial) / Float(spatial)
                let inv = 1 / (NNVec.squaredDeviation(x + o, spatial, mu) / Float(spatial) + epsilon).squareRoot()
                let sdy = NNVec.sum(dy + o, spatial), sdyx = centeredDot(x + o, dy + o, spatial, mu)
                dBias?[c] += sdy
                dScale?[c] += sdyx * inv
                if let dx {
                    let a = scale[c] * inv, m = Float(spatial)
                    normInputGrad(dy + o, x + o, dx + o, spatial, a, -a * inv * inv * sdyx / m, mu, -a * sdy / m)
                }
            }
        }
    }
}

/// Backward of `layerNorm` over `x` `[outer, inner]` with `scale` `[inner]`: adds `dx`
/// `[outer, inner]`, `dScale` and `dBias` `[inner]` (each skipped when nil). `stats` is
/// scratch for `2 * outer` floats.
public func layerNormBackward(outer: Int, inner: Int, x: UnsafePointer<Float>, scale: UnsafePointer<Float>,
                              epsilon: Float, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
                              dScale: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
                              stats: UnsafeMutablePointer<Float>) {
    if inner == 0 { return }
    let chunks = outer * inner >= 1 << 16 ? min(outer, NNParallel.workers) : 1
    let m = Float(inner)
    NNParallel.run(chunks) { i in
        for r in (outer * i / chunks)..<(outer * (i + 1) / chunks) {
            let row = x + r * inner, g = dy + r * inner
            let mu = NNVec.sum(row, inner) / m
            let inv = 1 / (NNVec.squaredDeviation(row, inner, mu) / m + epsilon).squareRoot()
            stats[2 * r] = mu; stats[2 * r + 1] = inv
            guard let dx else { continue }
            var sg: Float = 0, sgx: Float = 0
            for j in 0..<inner {
                let gs = g[j] * scale[j]
                sg += gs
                sgx += gs * (row[j] - mu)
            }
            let out = dx + r * inner
            let b = -inv * inv * inv * sgx / m, c = -inv * sg / m
            for j in 0..<inner { out[j] += inv * g[j] * scale[j] + b * (row[j] - mu) + c }
        }
    }
    if dScale == nil && dBias == nil { return }
    for r in 0..<outer {
        let row = x + r * inner, g = dy + r * inner, mu = stats[2 * r], inv = stats[2 * r + 1]
        if let dScale { for j in 0..<inner { dScale[j] += g[j] * (row[j] - mu) * inv } }
        if let dBias { for j in 0..<inner { dBias[j] += g[j] } }
    }
}
