/// Batch statistics shared by the processes of a data-parallel fine-tune (synchronised batch
/// normalisation): while `allReduce` is set, training-mode batch norms normalise each
/// process's shard with the mean and variance of the whole global batch, and differentiate
/// through them, as one process holding the whole batch would (up to float summation order).
/// Set only around a data-parallel training loop; nil (the default): each batch normalises
/// with its own statistics.
public enum BatchStatisticsSync {
    /// Sums the floats element-wise over the processes, in place; every process calls it for
    /// every training-mode batch norm in the same order. It cannot fail: on a communication
    /// error it ends the process.
    nonisolated(unsafe) public static var allReduce: ((UnsafeMutableBufferPointer<Float>) -> Void)?
    /// How many processes hold an equal shard of the global batch.
    nonisolated(unsafe) public static var processes = 1

    nonisolated(unsafe) private static var buffer = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    nonisolated(unsafe) private static var capacity = 0

    /// A reused buffer of at least `count` floats for the backward's reductions (grown,
    /// never shrunk; batch norms run one at a time).
    static func scratch(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            buffer.deallocate()
            buffer = .allocate(capacity: count)
            capacity = count
        }
        return buffer
    }
}

/// `batchNormTraining` (which calls this while `BatchStatisticsSync.allReduce` is set) over `x` `[N, C, S]`, one shard of a global batch of
/// `processes * N` rows spread over processes: per channel, the sums of the shards' values
/// are added with `allReduce` to give the global mean, then the sums of squared deviations
/// from it to give the global biased variance; `y`, `mean`, `invStd` and the running
/// statistics (variance unbiased over `processes * N * S` values) are what the whole batch
/// gives. `mean` and `invStd` serve as the reductions' buffers.
public func batchNormTrainingSynced(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                                    scale: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float,
                                    momentum: Float, runningMean: UnsafeMutablePointer<Float>,
                                    runningVar: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>,
                                    mean: UnsafeMutablePointer<Float>, invStd: UnsafeMutablePointer<Float>,
                                    processes: Int, allReduce: (UnsafeMutableBufferPointer<Float>) -> Void) {
    let local = batch * spatial, count = local * processes
    let chunks = channels * local >= 1 << 16 ? min(channels, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            var s: Float = 0
            for n in 0..<batch { s += NNVec.sum(x + (n * channels + c) * spatial, spatial) }
            mean[c] = s
        }
    }
    allReduce(UnsafeMutableBufferPointer(start: mean, count: channels))
    for c in 0..<channels { mean[c] = count == 0 ? 0 : mean[c] / Float(count) }
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            var ss: Float = 0
            for n in 0..<batch { ss += NNVec.squaredDeviation(x + (n * channels + c) * spatial, spatial, mean[c]) }
            invStd[c] = ss
        }
    }
    allReduce(UnsafeMutableBufferPointer(start: invStd, count: channels))
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            normalizeTrainingChannel(c, mean: mean[c], variance: count == 0 ? 0 : invStd[c] / Float(count),
                                     count: count, batch: batch, channels: channels, spatial: spatial, x: x, y: y,
                                     scale: scale, bias: bias, epsilon: epsilon, momentum: momentum,
                                     runningMean: runningMean, runningVar: runningVar, invStd: invStd)
        }
    }
}

/// Backward of `batchNormTrainingSynced` for this process's shard: `sum(dy)` and
/// `sum(dy * xhat)` per channel are added over the processes (through `scratch`, `2 * C`
/// floats) for `dx`, which is then what the whole batch's backward gives its rows;
/// `dScale` and `dBias` get this shard's sums alone (averaging the processes' gradients,
/// as data-parallel training does, gives the whole batch's).
public func batchNormTrainingSyncedBackward(batch: Int, channels: Int, spatial: Int, x: UnsafePointer<Float>,
                                            scale: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                                            invStd: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                            dx: UnsafeMutablePointer<Float>?, dScale: UnsafeMutablePointer<Float>?,
                                            dBias: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>,
                                            processes: Int, allReduce: (UnsafeMutableBufferPointer<Float>) -> Void) {
    let local = batch * spatial, count = local * processes
    let chunks = channels * local >= 1 << 16 ? min(channels, NNParallel.workers) : 1
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            var sdy: Float = 0, sdyx: Float = 0
            for n in 0..<batch {
                let o = (n * channels + c) * spatial
                sdy += NNVec.sum(dy + o, spatial)
                sdyx += centeredDot(x + o, dy + o, spatial, mean[c])
            }
            dBias?[c] += sdy
            dScale?[c] += sdyx * invStd[c]
            scratch[c] = sdy
            scratch[channels + c] = sdyx
        }
    }
    guard let dx, count > 0 else { return }
    allReduce(UnsafeMutableBufferPointer(start: scratch, count: 2 * channels))
    NNParallel.run(chunks) { i in
        for c in (channels * i / chunks)..<(channels * (i + 1) / chunks) {
            let mu = mean[c], inv = invStd[c], sdy = scratch[c], sdyx = scratch[channels + c]
            let a = scale[c] * inv, m = Float(count)
            let b = -a * inv * inv * sdyx / m, shift = -a * sdy / m
            for n in 0..<batch {
                let o = (n * channels + c) * spatial
                normInputGrad(dy + o, x + o, dx + o, spatial, a, b, mu, shift)
            }
        }
    }
}
