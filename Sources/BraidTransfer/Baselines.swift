import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

extension Graph {
    /// Like `trainingSetup(freezeDepth:)`, but freezes exactly the backbone layer units whose
    /// indices are in `frozenUnits` (ALS's bitmask) and trains every other unit and the head.
    /// A frozen unit's batch normalisation runs in inference mode; a trained one in training
    /// mode. `frozenDepth` of the result is the number of frozen units.
    public func trainingSetup(frozenUnits: Set<Int>, bnMomentum: Float = 0.1) throws -> TrainingSetup {
        let units = layerUnits.filter { !$0.parameters.contains { $0.hasPrefix("head.") } }
        if let bad = frozenUnits.first(where: { $0 < 0 || $0 >= units.count }) {
            throw GraphError(node: nil, "frozen unit \(bad) is outside 0..<\(units.count) (the model has \(units.count) layer units)")
        }
        let trained = units.filter { !frozenUnits.contains($0.index) }
        let (g, trainable) = training(units: trained, from: trained.first, bnMomentum: bnMomentum)
        var setup = try trainingSetup(freezeDepth: units.count)
        setup.graph = g
        setup.trainable = trainable
        setup.frozenDepth = frozenUnits.count
        return setup
    }
}

/// L2-SP: the penalty alpha/2 ||w - w0||^2 on trained backbone parameters (w0: their
/// pretrained values) and beta/2 ||w||^2 on the head's (`head.*`).
public final class L2SPPenalty {
    public let alpha: Float
    public let beta: Float
    /// Pretrained values of the penalised backbone parameters.
    let reference: [String: Tensor]

    /// Snapshots the current values of the non-head parameters in `params` as w0.
    public init(params: [String: Tensor], alpha: Float, beta: Float) {
        self.alpha = alpha; self.beta = beta
        reference = params.filter { !$0.key.hasPrefix("head.") }.mapValues { $0.copy() }
    }

    /// The penalty's value at the current parameters.
    public func value(params: [String: Tensor]) -> Float {
        var total: Double = 0
        for (name, p) in params {
            let w = p.floats
            var sum: Double = 0
            if let w0 = reference[name]?.floats {
                for i in 0..<p.count { let d = Double(w[i] - w0[i]); sum += d * d }
                total += Double(alpha) / 2 * sum
            } else {
                for i in 0..<p.count { sum += Double(w[i]) * Double(w[i]) }
                total += Double(beta) / 2 * sum
            }
        }
        return Float(total)
    }

    /// Adds the penalty's gradient to `grads`: alpha (w - w0) on the backbone, beta w on the head.
    public func addGradient(params: [String: Tensor], grads: [String: Tensor]) {
        for (name, p) in params {
            guard let g = grads[name] else { continue }
            let w = p.floats, dw = g.floats
            if let w0 = reference[name]?.floats {
                let a = alpha
                for i in 0..<p.count { dw[i] += a * (w[i] - w0[i]) }
            } else {
                let b = beta
                for i in 0..<p.count { dw[i] += b * w[i] }
            }
        }
    }
}

/// Child-Tuning's gradient mask on the backbone parameters (the head is always updated).
///
/// `D` (task-free): every step draws a Bernoulli(p) mask per element and scales kept
/// gradients by 1/p. `F` (task-driven): a fixed mask keeps the elements whose accumulated
/// squared gradient (Fisher information, from `accumulateFisher`) is in the top p fraction
/// over all backbone parameters together; kept gradients are not rescaled.
public final class ChildTuningMask {
    public enum Mode: String, Codable, Sendable, CaseIterable { case d, f }
    public let mode: Mode
    public let p: Float
    /// Mode D's masks are drawn from a stream keyed by this and the step, so a resumed run
    /// draws the same masks as an uninterrupted one.
    let seed: UInt64
    /// Fisher information sums (mode F), then the 0/1 masks after `freezeFisherMask()`.
    var fisher: [String: Tensor] = [:]
    var masks: [String: Tensor] = [:]

    public init(mode: Mode, p: Float, seed: UInt64) throws {
        guard p > 0 && p <= 1 else { throw TrainingError("the kept fraction of Child-Tuning must be in (0, 1], got \(p)", setting: "childP") }
        self.mode = mode; self.p = p
        self.seed = seed ^ 0xC41D
    }

    /// Mode F: adds the squares of the backbone gradients of one batch.
    public func accumulateFisher(grads: [String: Tensor]) {
        for (name, g) in grads where !name.hasPrefix("head.") {
            if fisher[name] == nil { fisher[name] = Tensor(zeros: g.shape) }
            let f = fisher[name]!.floats, d = g.floats
            for i in 0..<g.count { f[i] += d[i] * d[i] }
        }
    }

    /// Mode F: turns the accumulated Fisher information into the fixed top-p masks.
    public func freezeFisherMask() {
        var all: [Float] = []
        for t in fisher.values { all += UnsafeBufferPointer(start: t.floats, count: t.count) }
        guard !all.isEmpty else { return }
        let keep = max(1, Int((Float(all.count) * p).rounded()))
        all.sort(by: >)
        let threshold = all[keep - 1]
        for (name, t) in fisher {
            let m = Tensor(zeros: t.shape)
            for i in 0..<t.count where t.floats[i] >= threshold { m.floats[i] = 1 }
            masks[name] = m
        }
        fisher = [:]
    }

    /// Fraction of backbone elements the fixed mask keeps (mode F).
    public var keptFraction: Double {
        let total = masks.values.reduce(0) { $0 + $1.count }
        let kept = masks.values.reduce(0.0) { s, m in s + (0..<m.count).reduce(0.0) { $0 + Double(m.floats[$1]) } }
        return total == 0 ? 0 : kept / Double(total)
    }

    /// Masks the backbone gradients in place for training step `step`. Parameter names are
    /// visited in sorted order so the same seed and step give the same masks.
    public func apply(grads: [String: Tensor], step: Int) {
        var rng = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: step) &* 0x9E37_79B9_7F4A_7C15))
        for name in grads.keys.sorted() where !name.hasPrefix("head.") {
            let g = grads[name]!, d = g.floats
            switch mode {
            case .d:
                let scale = 1 / p
                let cut = UInt64(Double(p) * 0x1p53)
                for i in 0..<g.count { d[i] = (rng.next() >> 11) < cut ? d[i] * scale : 0 }
            case .f:
                guard let m = masks[name]?.floats else { continue }
                for i in 0..<g.count { d[i] *= m[i] }
            }
        }
    }
}
