import BraidData
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// `--lr auto`'s recovery: a fine-tune at an automatically chosen rate that diverges starts
/// again from the initial weights at a third of the rate.
final class AutoRateRecoveryTests: XCTestCase {
    /// The rule on loss sequences whose answer is known.
    func testDivergenceRule() {
        // Two classes: the starting level is max(first loss, ln 2).
        var w = DivergenceWatch(classes: 2)
        for loss: Float in [0.7, 0.65, 0.6, 0.5, 0.45, 0.4, 0.3, 0.35, 0.2] { XCTAssertNil(w.observe(loss)) }
        XCTAssertEqual(w.start, 0.7)
        // A rise past twice the start is divergence, but not before the fifth batch.
        w = DivergenceWatch(classes: 2)
        XCTAssertNil(w.observe(0.7))
        XCTAssertNil(w.observe(5))
        XCTAssertNil(w.observe(5))
        XCTAssertNil(w.observe(5))
        XCTAssertNotNil(w.observe(5))
        // One noisy batch among ordinary ones is not.
        w = DivergenceWatch(classes: 2)
        for loss: Float in [0.7, 0.7, 0.69, 2.5, 0.7, 0.68, 0.6, 0.6] { XCTAssertNil(w.observe(loss), "\(loss)") }
        // A lucky first batch: the level is ln(classes), not 0.05.
        w = DivergenceWatch(classes: 10)
        XCTAssertEqual(w.observe(0.05), nil)
        XCTAssertEqual(try XCTUnwrap(w.start), Float(log(10.0)), accuracy: 1e-6)
        for _ in 0..<20 { XCTAssertNil(w.observe(3)) }
        // A large first loss (a random network's big logits) sets a large level.
        w = DivergenceWatch(classes: 2)
        for loss: Float in [8, 7, 9, 6, 10, 12] { XCTAssertNil(w.observe(loss)) }
        for _ in 0..<30 { _ = w.observe(40) }
        XCTAssertNotNil(w.observe(40))
    }

    /// A few batches with huge losses among ones that fall are not a divergence. The losses are
    /// `braid finetune`'s on efficientnet_b5 exported by TorchScript (batch norms folded, running
    /// statistics measured on other digits; tools/finetune-zoo's file) at 0.000864, clipped to the
    /// median gradient norm, mnist01, batch 8: it ends at 97.5% test accuracy, but the batches
    /// holding the few images with 1000x the usual features have losses of 11.6 to 521. The
    /// uncapped average passed twice the start at batch 26 and restarted a run that was learning.
    func testOutlierBatchesAreNotDivergence() {
        let losses: [Float] = [
            0.722, 0.661, 0.717, 0.715, 0.715, 0.662, 0.572, 0.686, 0.661, 0.726, 0.725, 0.68, 0.672, 0.725, 0.635,
            0.654, 0.691, 0.674, 0.693, 0.68, 0.714, 0.636, 0.61, 0.673, 0.522, 11.639, 0.668, 0.559, 0.488, 0.657,
            0.525, 0.513, 0.263, 7.018, 0.198, 0.203, 0.219, 0.338, 0.216, 0.267, 0.083, 0.172, 5.662, 0.158, 0.253,
            0.106, 2.869, 0.079, 0.103, 0.165, 0.289, 0.106, 0.125, 0.108, 0.085, 0.104, 0.085, 0.042, 0.25, 0.073,
            0.031, 0.064, 0.062, 0.035, 62.772, 0.048, 0.027, 0.041, 0.044, 0.019, 0.03, 0.18, 0.361, 0.352, 0.368,
            0.022, 0.037, 0.017, 0.034, 2.753, 0.028, 521.347, 0.036, 0.029, 0.016, 0.047, 0.024]
        var w = DivergenceWatch(classes: 2)
        for (i, loss) in losses.enumerated() { XCTAssertNil(w.observe(loss), "batch \(i + 1), loss \(loss)") }
        for i in 0..<losses.count { w.tally(label: i % 2) }
        XCTAssertNil(w.learnedNothing())
        // Every batch's loss between two and four times the start (under the cap) still diverges,
        // and so do losses far above it.
        w = DivergenceWatch(classes: 2)
        var fired = false
        for loss: Float in [0.7] + [Float](repeating: 1.8, count: 30) { fired = fired || w.observe(loss) != nil }
        XCTAssertTrue(fired)
        w = DivergenceWatch(classes: 2)
        for loss: Float in [0.7, 0.6, 0.65, 0.6] { XCTAssertNil(w.observe(loss)) }
        XCTAssertNil(w.observe(1e4))
        XCTAssertNotNil(w.observe(1e4), "two batches running far above: the capped average passes 1.39")
    }

    /// "Learned nothing": the loss's moving average no lower than the entropy of the labels
    /// seen (a model predicting the class frequencies).
    func testLearnedNothingRule() {
        var w = DivergenceWatch(classes: 2)
        XCTAssertNil(w.learnedNothing())
        // Balanced labels, a loss stuck at ln 2: a constant output.
        for i in 0..<40 { _ = w.observe(0.6932 + (i % 2 == 0 ? 0.01 : -0.005)); w.tally(label: i % 2) }
        XCTAssertNotNil(w.learnedNothing())
        // The same loss with 3:1 labels is above their entropy (0.562) too; a falling one is not.
        w = DivergenceWatch(classes: 2)
        for i in 0..<40 { _ = w.observe(0.7 - Float(i) * 0.01); w.tally(label: i % 4 == 0 ? 1 : 0) }
        XCTAssertNil(w.learnedNothing(), "ends at 0.31, below 0.562")
        w = DivergenceWatch(classes: 3)
        for i in 0..<30 { _ = w.observe(1.2); w.tally(label: i % 3) }
        XCTAssertNotNil(w.learnedNothing(), "1.2 >= ln 3 = 1.0986")
        w = DivergenceWatch(classes: 3)
        for i in 0..<30 { _ = w.observe(1.0); w.tally(label: i % 3) }
        XCTAssertNil(w.learnedNothing())
    }

    /// A small CNN on the digits at a rate its loss explodes at: without the recovery (one
    /// try) the fine-tune stops with an error; with it, it restarts at lower rates, completes
    /// with finite losses above chance, and ends exactly where a plain fine-tune at the rate
    /// that completed ends (so each restart really starts from the initial weights).
    func testDivergingRateIsLoweredAndTrainingCompletes() throws {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let model = try smallSource(dir: dir, classes: 10)
        let d = try digitsSplits()
        var o = TrainOptions()
        o.batch = 32; o.seed = 2; o.epochs = 1; o.prefixCache = false
        o.lr = 6

        let once = try Finetuner(models: [model.pristineCopy()], depths: [0], classes: d.classes, options: o, runDir: dir)
        XCTAssertThrowsError(try once.trainRecoveringRate(train: d.train, validation: d.validation, tries: 1)) { error in
            XCTAssertTrue("\(error)".contains("training diverged at every rate tried (6)"), "\(error)")
        }
        XCTAssertEqual(once.rateAttempts.count, 1)

        let tuner = try Finetuner(models: [model.pristineCopy()], depths: [0], classes: d.classes, options: o, runDir: dir)
        var told: [Float] = []
        try tuner.trainRecoveringRate(train: d.train, validation: d.validation) { told.append($0.lr) }
        let attempts = tuner.rateAttempts
        XCTAssertGreaterThanOrEqual(attempts.count, 2, "\(attempts)")
        XCTAssertTrue(attempts.dropLast().allSatisfy(\.diverged), "\(attempts)")
        XCTAssertEqual(attempts.last?.outcome, "completed")
        XCTAssertEqual(attempts[0].rate, 6)
        for (a, b) in zip(attempts, attempts.dropFirst()) { XCTAssertEqual(b.rate, a.rate / 3, accuracy: 1e-6) }
        XCTAssertEqual(told, attempts.dropFirst().map(\.rate))
        XCTAssertEqual(tuner.options.lr, attempts.last!.rate)
        let epoch = try XCTUnwrap(tuner.history.last)
        XCTAssertEqual(tuner.history.count, 1)
        XCTAssertTrue(epoch.trainLoss.isFinite)
        XCTAssertGreaterThan(try tuner.evaluateEnsemble(on: d.test).accuracy, 0.3)

        var plain = o
        plain.lr = attempts.last!.rate
        let direct = try Finetuner(models: [model.pristineCopy()], depths: [0], classes: d.classes, options: plain, runDir: dir)
        try direct.train(train: d.train, validation: d.validation, resume: false)
        XCTAssertEqual(direct.history.last?.trainLoss, epoch.trainLoss)
        XCTAssertEqual(direct.history.last?.validationAccuracy, epoch.validationAccuracy)
    }

    /// Restarts climb to their rate as the range test did; the ramp is part of the settings,
    /// so a plain fine-tune with them ends where the recovered one ends.
    func testRestartsClimbLikeTheRangeTest() throws {
        var o = TrainOptions()
        o.lr = 1e-3; o.rampFrom = 1e-5; o.rampGrowth = 2; o.schedule = .constant
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let model = try smallSource(dir: dir, classes: 10)
        let d = try digitsSplits()
        let probe = try Finetuner(models: [model.pristineCopy()], depths: [0], classes: d.classes, options: o, runDir: dir)
        XCTAssertEqual(probe.lr(epoch: 0, step: 0), 1e-5, accuracy: 1e-12)
        XCTAssertEqual(probe.lr(epoch: 0, step: 3), 8e-5, accuracy: 1e-10)
        XCTAssertEqual(probe.lr(epoch: 0, step: 7), 1e-3)
        XCTAssertEqual(probe.lr(epoch: 3, step: 500), 1e-3)

        let range = LearningRateRange(minLR: 1e-3, maxLR: 10, rates: [1e-3, 2e-3, 4e-3], losses: [2.3, 2.2, 2.1],
                                      smoothed: [2.3, 2.25, 2.2], suggested: 6, stoppedEarly: nil, key: "")
        XCTAssertEqual(range.ramp?.from, 1e-3)
        XCTAssertEqual(range.ramp?.growth, 2)
        var t = TrainOptions()
        t.batch = 32; t.seed = 2; t.epochs = 1; t.prefixCache = false; t.lr = 6
        let tuner = try Finetuner(models: [model.pristineCopy()], depths: [0], classes: d.classes, options: t, runDir: dir)
        var told: [TrainOptions] = []
        try tuner.trainRecoveringRate(train: d.train, validation: d.validation, range: range) { told.append($0) }
        XCTAssertGreaterThanOrEqual(tuner.rateAttempts.count, 2)
        XCTAssertEqual(told.last?.rampFrom, 1e-3)
        XCTAssertEqual(told.last?.rampGrowth, 2)
        let epoch = try XCTUnwrap(tuner.history.last)
        XCTAssertTrue(epoch.trainLoss.isFinite)
        let direct = try Finetuner(models: [model.pristineCopy()], depths: [0], classes: d.classes, options: tuner.options, runDir: dir)
        try direct.train(train: d.train, validation: d.validation, resume: false)
        XCTAssertEqual(direct.history.last?.trainLoss, epoch.trainLoss)
    }

    /// The range test clips as the training will (`clipPercentile`): the same steps with and
    /// without it part from the first clipped step on, and the norms are recorded.
    func testRangeTestClipsLikeTheTraining() throws {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let model = try smallSource(dir: dir, classes: 10)
        let d = try digitsSplits()
        var o = TrainOptions()
        o.batch = 32; o.seed = 2; o.prefixCache = false
        let plain = try Finetuner(models: [model.pristineCopy()], depths: [0], classes: d.classes, options: o, runDir: dir)
            .learningRateRange(train: d.train, minLR: 1e-3, maxLR: 1, steps: 12)
        o.clipPercentile = 50
        let clipped = try Finetuner(models: [model.pristineCopy()], depths: [0], classes: d.classes, options: o, runDir: dir)
            .learningRateRange(train: d.train, minLR: 1e-3, maxLR: 1, steps: 12)
        let norms = try XCTUnwrap(clipped.gradientNorms)
        XCTAssertEqual(norms.count, clipped.rates.count)
        XCTAssertEqual(plain.losses[0], clipped.losses[0])
        // The first step whose norm is above the median of the norms so far is clipped: the
        // loss after it differs.
        let first = try XCTUnwrap((1..<norms.count).first { k in
            let seen = norms[0...k].sorted()
            return norms[k] > seen[Int((Double(seen.count) / 2).rounded(.up)) - 1]
        }, "no step above the median so far: \(norms)")
        XCTAssertEqual(Array(plain.losses[...first]), Array(clipped.losses[...first]))
        XCTAssertNotEqual(plain.losses[first + 1], clipped.losses[first + 1])
        XCTAssertTrue(clipped.summary().contains("gradient norm: median"), clipped.summary())
    }

    /// A new run at `--lr auto` with no clipping setting clips at the median
    /// (`TrainOptions.autoRateClipPercentile`), in its range test and its training, and records
    /// it in run.json (a resumption clips alike); a given `clipNorm` is kept instead.
    func testAutoRateRunClipsAtTheMedianUnlessToldOtherwise() throws {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        _ = try smallSource(dir: dir, classes: 10)
        var setup = FinetuneSetup(sources: [dir + "/small.onnx"], data: "digits")
        setup.options.epochs = 1; setup.options.batch = 32; setup.options.prefixCache = false
        setup.learningRateRangeSteps = 12
        _ = try FinetuneRun(setup, runDir: dir + "/auto", manifest: []).run()
        let record = try RunRecord.load(runDir: dir + "/auto")
        XCTAssertEqual(record.options.clipPercentile, TrainOptions.autoRateClipPercentile)
        XCTAssertEqual(record.options.clipNorm, 0)
        let range = try LearningRateRange(json: try Data(contentsOf: URL(fileURLWithPath: dir + "/auto/lr-range.json")))
        XCTAssertEqual(range.gradientNorms?.count, range.rates.count)
        XCTAssertTrue(range.key.hasSuffix("clip 0.0 50.0"), range.key)

        setup.options.clipNorm = 1
        _ = try FinetuneRun(setup, runDir: dir + "/fixed", manifest: []).run()
        let fixed = try RunRecord.load(runDir: dir + "/fixed")
        XCTAssertEqual(fixed.options.clipPercentile, 0)
        XCTAssertEqual(fixed.options.clipNorm, 1)

        // Both rules at once is a setting error naming the second.
        var both = TrainOptions()
        both.clipNorm = 1; both.clipPercentile = 50
        XCTAssertThrowsError(try both.validate()) { XCTAssertEqual(($0 as? TrainingError)?.setting, "clipPercentile") }
        // An experiment configuration spells it clip_percentile.
        let o = try TrainOptions.decode(json: Data(#"{"clip_percentile": 90}"#.utf8), place: "training")
        XCTAssertEqual(o.clipPercentile, 90)
        XCTAssertThrowsError(try TrainOptions.decode(json: Data(#"{"clip_percentile": 150}"#.utf8), place: "training"))
    }
}
