import BraidTensor
import Foundation

/// Softmax cross-entropy over logits `[N, K]` with integer labels `[N]`, averaged over the
/// batch, with optional label smoothing `eps` (target 1 - eps on the label, eps / K spread
/// over all classes, PyTorch's rule).
///
/// Returns the loss and writes d loss / d logits into `grad` (`[N, K]`, overwritten).
public func softmaxCrossEntropy(logits: Tensor, labels: [Int], smoothing eps: Float = 0,
                                grad: Tensor?) -> Float {
    let n = logits.shape[0], k = logits.shape[1]
    precondition(labels.count == n, "\(labels.count) labels for \(n) rows")
    var total: Double = 0
    let z = logits.floats
    for r in 0..<n {
        let row = z + r * k
        var mx = -Float.infinity
        for c in 0..<k { mx = max(mx, row[c]) }
        var sum: Float = 0
        for c in 0..<k { sum += expf(row[c] - mx) }
        let logSum = logf(sum) + mx
        let y = labels[r]
        var rowLoss = (1 - eps) * (logSum - row[y])
        if eps > 0 {
            var mean: Float = 0
            for c in 0..<k { mean += logSum - row[c] }
            rowLoss += eps * mean / Float(k)
        }
        total += Double(rowLoss)
        if let grad {
            let g = grad.floats + r * k
            for c in 0..<k {
                let p = expf(row[c] - logSum)
                let target = (c == y ? 1 - eps : 0) + eps / Float(k)
                g[c] = (p - target) / Float(n)
            }
        }
    }
    return Float(total / Double(n))
}

/// AMCF's consistency term over the members' logits z_j, each `[N, K]`:
/// (1/N_members) * sum_j mean_batch || z_j - mean_i z_i ||_2 (plain L2 norm per sample, not
/// squared), scaled by `weight`.
///
/// Returns the term and adds its gradient into `grads[j]` (same shapes as the logits).
public func logitConsistency(_ logits: [Tensor], weight: Float, grads: [Tensor]?) -> Float {
    let m = logits.count
    guard m > 1 else { return 0 }
    let n = logits[0].shape[0], k = logits[0].shape[1]
    var mean = [Float](repeating: 0, count: k)
    var diffs = [Float](repeating: 0, count: m * k)
    var total: Double = 0
    for r in 0..<n {
        for c in 0..<k {
            var s: Float = 0
            for j in 0..<m { s += logits[j].floats[r * k + c] }
            mean[c] = s / Float(m)
        }
        var norms = [Float](repeating: 0, count: m)
        for j in 0..<m {
            var ss: Float = 0
            for c in 0..<k {
                let d = logits[j].floats[r * k + c] - mean[c]
                diffs[j * k + c] = d
                ss += d * d
            }
            norms[j] = ss.squareRoot()
            total += Double(norms[j])
        }
        guard let grads else { continue }
        // d/dz_j of sum_i ||z_i - mean||: u_j - (1/M) sum_i u_i, with u_i = d_i / ||d_i||.
        let scale = weight / Float(m) / Float(n)
        var usum = [Float](repeating: 0, count: k)
        for j in 0..<m where norms[j] > 1e-12 {
            for c in 0..<k { usum[c] += diffs[j * k + c] / norms[j] }
        }
        for j in 0..<m {
            for c in 0..<k {
                let u = norms[j] > 1e-12 ? diffs[j * k + c] / norms[j] : 0
                grads[j].floats[r * k + c] += scale * (u - usum[c] / Float(m))
            }
        }
    }
    return weight * Float(total / Double(n)) / Float(m)
}

/// AMCF's KL consistency variant over the members' logits z_j, each `[N, K]`: with
/// p_j = softmax(z_j) and m = (1/M) sum_i p_i, the term (1/M) sum_j mean_batch KL(p_j || m),
/// scaled by `weight`.
///
/// Returns the term and adds its gradient into `grads[j]`. The gradient runs through m as
/// well: d/dp_j of the term is (1/M)(log p_j - log m) (the +1 of each KL's own derivative
/// cancels against m's share), then through each softmax.
public func softmaxConsistency(_ logits: [Tensor], weight: Float, grads: [Tensor]?) -> Float {
    let members = logits.count
    guard members > 1 else { return 0 }
    let n = logits[0].shape[0], k = logits[0].shape[1]
    var p = [Float](repeating: 0, count: members * k)
    var logP = [Float](repeating: 0, count: members * k)
    var logMean = [Float](repeating: 0, count: k)
    var total: Double = 0
    let scale = weight / Float(members) / Float(n)
    for r in 0..<n {
        for j in 0..<members {
            let z = logits[j].floats + r * k
            var top = z[0]
            for c in 1..<k { top = max(top, z[c]) }
            var sum: Float = 0
            for c in 0..<k { sum += expf(z[c] - top) }
            let logSum = logf(sum)
            for c in 0..<k {
                logP[j * k + c] = z[c] - top - logSum
                p[j * k + c] = expf(logP[j * k + c])
            }
        }
        for c in 0..<k {
            var s: Float = 0
            for j in 0..<members { s += p[j * k + c] }
            logMean[c] = logf(max(s / Float(members), Float.leastNormalMagnitude))
        }
        for j in 0..<members {
            var kl: Float = 0
            for c in 0..<k { kl += p[j * k + c] * (logP[j * k + c] - logMean[c]) }
            total += Double(kl)
            guard let grads else { continue }
            // g_c = log p_c - log m_c; through softmax: p_c (g_c - sum_l p_l g_l).
            var dot: Float = 0
            for c in 0..<k { dot += p[j * k + c] * (logP[j * k + c] - logMean[c]) }
            let g = grads[j].floats + r * k
            for c in 0..<k { g[c] += scale * p[j * k + c] * (logP[j * k + c] - logMean[c] - dot) }
        }
    }
    return weight * Float(total / Double(n)) / Float(members)
}
