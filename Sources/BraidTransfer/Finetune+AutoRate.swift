import BraidData
import BraidTensor
import BraidTraining
import Foundation

/// Tells a fine-tune at an automatically chosen rate that it diverges, from its batch losses.
///
/// The rule: the training loss's moving average (weight 0.9, bias-corrected, as the range
/// test smooths its curve) passes `factor` (2) times its starting level, from the fifth batch
/// on. The starting level is the first batch's loss (the initial weights' loss, before any
/// update), or ln(classes) when that is higher: a new head's loss at chance, so that one
/// lucky first batch does not make ordinary noise look like a rise. A run that averages twice
/// the loss of guessing is worse than a guesser, which a working rate never makes it; the
/// rates that diverge in the range tests go from there to NaN within a few batches.
/// Non-finite losses and gradients are caught by the training loop itself. At the end of the
/// first epoch, `learnedNothing` asks whether the run got anywhere at all.
///
/// Each loss enters the average capped at `2 * factor` times the starting level, so one batch
/// cannot move it by more than a tenth of that: a batch holding an image the network puts out
/// huge logits for has a loss of tens or hundreds while the others train well. On
/// batch-norm-folded exports (running variances measured on other images multiply what those
/// images lack by up to 1/sqrt(eps)) such images are a few in a thousand: efficientnet_b5
/// (TorchScript) at 0.00086, clipped, trains to 97.5% test accuracy with batch losses of 11.6,
/// 62.8 and 521 among ones falling to 0.02, and the uncapped average called each of those
/// batches a divergence. A run that really diverges raises every batch's loss, and the capped
/// average still climbs past `factor` times the level.
struct DivergenceWatch {
    let floor: Float
    let factor: Float
    private(set) var start: Float?
    private var average = 0.0
    private var count = 0
    private var labels: [Int] = []

    init(classes: Int, factor: Float = 2) {
        floor = Float(log(Double(max(classes, 2))))
        self.factor = factor
    }

    /// Takes one batch's (finite) loss; returns why the run counts as diverged, or nil.
    mutating func observe(_ loss: Float) -> String? {
        let level = start ?? max(loss, floor)
        start = level
        count += 1
        average = 0.9 * average + 0.1 * Double(min(loss, 2 * factor * level))
        let smooth = average / (1 - pow(0.9, Double(count)))
        guard count >= 5, smooth > Double(factor * level) else { return nil }
        return String(format: "the training loss's moving average %.4g passed %g times its starting level %.4g",
                      smooth, factor, level)
    }

    /// Counts a trained image's label (for `learnedNothing`).
    mutating func tally(label: Int) {
        if label >= labels.count { labels += [Int](repeating: 0, count: label + 1 - labels.count) }
        labels[label] += 1
    }

    /// Why the run so far learned nothing, or nil: the loss's moving average is no lower than
    /// the entropy of the labels counted, which is the loss of a model that predicts the class
    /// frequencies whatever the image. A network that a too-high rate has pushed into a
    /// constant output (dead ReLUs, saturated units) sits exactly there.
    func learnedNothing() -> String? {
        let total = Double(labels.reduce(0, +))
        guard count > 0, total > 0 else { return nil }
        let entropy = labels.filter { $0 > 0 }.reduce(0.0) { h, c in h - Double(c) / total * log(Double(c) / total) }
        let smooth = average / (1 - pow(0.9, Double(count)))
        guard smooth >= entropy else { return nil }
        return String(format: "the training loss's moving average %.4g is no lower than %.4g, the loss of predicting the class frequencies",
                      smooth, entropy)
    }
}

/// `train` stopped because the run diverged while `Finetuner.watchDivergence` was set.
struct TrainingDiverged: Error {
    var rate: Float
    var at: String
    var reason: String
}

/// One rate a fine-tune at an automatically chosen rate trained with, and how it ended.
public struct RateAttempt: Codable, Sendable, Equatable {
    public var rate: Float
    /// `completed`, or `stopped at epoch E, batch B: <reason>` (or `at the end of epoch 1`).
    public var outcome: String

    public var diverged: Bool { outcome != "completed" }
}

extension Finetuner {
    /// Trains at `options.lr`, a rate chosen automatically (by a range test), and recovers
    /// when it proves too high: when the run diverges (a NaN or infinite loss or gradient,
    /// or the loss rising to twice its starting level: `DivergenceWatch`) or its first epoch
    /// learned nothing (the loss no lower than predicting the class frequencies; not checked
    /// at the last rate, which trains on), the members go back
    /// to their initial weights, running statistics and optimiser state, and training starts
    /// again from the first batch with the same seed at `1 / factor` of the rate, up to
    /// `tries` rates in all. With the range test that chose the rate (`range`), a restart also
    /// climbs to its rate the way the test did, geometrically from the test's first rate by
    /// its growth per step (`TrainOptions.rampFrom`): on batch-norm-folded exports the first
    /// steps at full rate are what diverges (efficientnet_b0 diverged within ten batches at
    /// each of four constant rates from 0.0094 down to 0.00035, while its range test, climbing
    /// from 1e-5, reached a loss of 0.009 at 0.028). Each restart sends one warning to `events`. The rates tried
    /// and their outcomes are in `rateAttempts`; `options.lr` ends as the rate that completed.
    /// `onRestart` is told each attempt's settings before it starts (to record them for a resume).
    ///
    /// - Throws: `TrainingError` naming every rate tried when the last one diverges too;
    ///   `TrainingInterrupted` and other errors of `train` as they come.
    public func trainRecoveringRate(train: any ImageDataset, validation: any ImageDataset, tries: Int = 4,
                                    factor: Float = 3, range: LearningRateRange? = nil,
                                    onRestart: ((TrainOptions) throws -> Void)? = nil) throws {
        precondition(tries >= 1 && factor > 1)
        let initial = members.map { m in m.setup.graph.initializers.filter { $0.value.dtype.isFloat }.mapValues { $0.copy() } }
        watchDivergence = true
        defer { watchDivergence = false; watchProgress = false }
        rateAttempts = []
        while true {
            // The last rate gets no "learned nothing" check: with no lower rate left, it trains on.
            watchProgress = rateAttempts.count + 1 < tries
            do {
                try self.train(train: train, validation: validation, resume: false)
                rateAttempts.append(RateAttempt(rate: options.lr, outcome: "completed"))
                return
            } catch let stop as TrainingDiverged {
                rateAttempts.append(RateAttempt(rate: stop.rate, outcome: "stopped at \(stop.at): \(stop.reason)"))
                let tried = rateAttempts.map { String(format: "%.3g", $0.rate) }.joined(separator: ", ")
                guard rateAttempts.count < tries else {
                    throw TrainingError("training diverged at every rate tried (\(tried)); the last, at \(stop.at): "
                                        + "\(stop.reason); give a lower learning rate", setting: "lr")
                }
                let next = stop.rate / factor
                events?(.warning(String(format: "learning rate %.3g, %@: %@; ", stop.rate, stop.at, stop.reason)
                    + String(format: "restarting from the initial weights at %.3g (rate %d of at most %d)",
                             next, rateAttempts.count + 1, tries)))
                for (j, m) in members.enumerated() {
                    for (name, t) in m.setup.graph.initializers where t.dtype.isFloat {
                        if let old = initial[j][name] { t.buffer.raw.copyMemory(from: old.buffer.raw, byteCount: t.count * 4) }
                    }
                    m.optimizer.state = [:]
                    m.optimizer.stepCount = 0
                    m.resetClipping()
                }
                history = []
                stepLosses = []
                options.lr = next
                if let ramp = range?.ramp {
                    options.rampFrom = ramp.from
                    options.rampGrowth = ramp.growth
                }
                try onRestart?(options)
            }
        }
    }
}

extension LearningRateRange {
    /// The test's climb: its first rate and its growth per step (nil with fewer than two steps).
    public var ramp: (from: Float, growth: Float)? {
        guard rates.count >= 2, rates[0] > 0, rates[1] > rates[0] else { return nil }
        return (rates[0], rates[1] / rates[0])
    }
}
