import BraidData
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

final class LearningRateRangeTests: XCTestCase {
    func testRangeTestSuggestsARateAndLeavesTheModelAsItWas() throws {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let model = try smallSource(dir: dir, classes: 10)
        let d = try digitsSplits()
        var o = TrainOptions()
        o.batch = 32; o.seed = 2; o.prefixCache = false
        let tuner = try Finetuner(models: [model], depths: [0], classes: d.classes, options: o, runDir: dir)
        let before = model.graph.initializers.filter { $0.value.dtype.isFloat }.mapValues(\.floatArray)
        let found = try tuner.learningRateRange(train: d.train, minLR: 1e-4, maxLR: 10, steps: 60)
        for (name, values) in before {
            XCTAssertEqual(model.graph.initializers[name]?.floatArray, values, "\(name) changed by the range test")
        }
        XCTAssertGreaterThan(found.rates.count, 10)
        XCTAssertEqual(found.rates.count, found.losses.count)
        XCTAssertTrue(zip(found.rates, found.rates.dropFirst()).allSatisfy { $0 < $1 }, "rates must grow")
        let s = try XCTUnwrap(found.suggested, found.summary())
        XCTAssertTrue(s >= 1e-4 && s <= 1, "suggested \(s)")
        // The curve fell: its minimum is below the first loss.
        let best = try XCTUnwrap(found.bestIndex)
        XCTAssertLessThan(found.smoothed[best], found.smoothed[0])
        XCTAssertTrue(found.svg().contains("<polyline"))
        // Training at the suggestion learns: validation accuracy above chance after one epoch.
        var t = o
        t.lr = s; t.epochs = 1
        let train = try Finetuner(models: [model], depths: [0], classes: d.classes, options: t, runDir: dir)
        try train.train(train: d.train, validation: d.validation, resume: false)
        XCTAssertGreaterThan(try XCTUnwrap(train.history.last).validationAccuracy, 0.3)
    }

    /// A range test that diverged holds NaN and infinite losses; lr-range.json must still be
    /// written and read back (JSON itself has no NaN).
    func testDivergedCurveRoundTripsThroughJSON() throws {
        let r = LearningRateRange(minLR: 1e-5, maxLR: 1, rates: [1e-5, 1e-3, 1e-1], losses: [2.3, .infinity, .nan],
                                  smoothed: [2.3, 2.1, .nan], suggested: nil, stoppedEarly: "diverged (non-finite loss)", key: "k")
        let data = try r.json()
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("\"nan\""))
        let back = try LearningRateRange(json: data)
        XCTAssertEqual(back.rates, r.rates)
        XCTAssertEqual(back.losses[0], 2.3)
        XCTAssertEqual(back.losses[1], .infinity)
        XCTAssertTrue(back.losses[2].isNaN && back.smoothed[2].isNaN)
        XCTAssertEqual(back.stoppedEarly, r.stoppedEarly)
    }

    /// The rule on curves whose answer is known: a third of the last rate within 5% of the
    /// minimum, counted from the minimum on.
    func testSuggestionIsAThirdOfTheEdgeRate() {
        let rates: [Float] = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1]
        // Flat, then up: the edge is 1e-2 (0.70 is within 5% of 0.69; 0.90 is not).
        XCTAssertEqual(LearningRateRange.suggestion(rates: rates, smoothed: [0.71, 0.70, 0.69, 0.70, 0.90, 3.0], minLR: 1e-5)!,
                       1e-2 / 3, accuracy: 1e-7)
        // A valley: the minimum at 1e-2, the loss leaves the band at once.
        XCTAssertEqual(LearningRateRange.suggestion(rates: rates, smoothed: [2.3, 2.0, 1.5, 1.0, 1.2, .nan], minLR: 1e-5)!,
                       1e-2 / 3, accuracy: 1e-7)
        // The band is left for good at its first exit even if the loss comes back.
        XCTAssertEqual(LearningRateRange.suggestion(rates: rates, smoothed: [1.1, 1.0, 1.02, 1.2, 1.0, 1.0], minLR: 1e-5)!,
                       1e-3 / 3, accuracy: 1e-9)
        // A low first step is one batch's noise: the minimum is looked for from the second
        // step on here (a quarter of six), from the sixth on longer tests.
        XCTAssertEqual(LearningRateRange.suggestion(rates: rates, smoothed: [0.5, 0.75, 0.7, 0.72, 0.74, 2.0], minLR: 1e-5)!,
                       1e-2 / 3, accuracy: 1e-9)
        let long = (0..<30).map { Float(1e-5) * pow(10, Float($0) / 29 * 5) }
        let noisy: [Float] = [0.69, 0.76, 0.73, 0.73, 0.72] + [Float](repeating: 0.71, count: 20) + [0.8, 2, 3, 4, 5]
        XCTAssertEqual(LearningRateRange.suggestion(rates: long, smoothed: noisy, minLR: 1e-5)!, long[24] / 3, accuracy: 1e-7)
        // Never below minLR; nothing from fewer than three steps.
        XCTAssertEqual(LearningRateRange.suggestion(rates: rates, smoothed: [0.5, 0.9, 2.0], minLR: 1e-5), 1e-5)
        XCTAssertNil(LearningRateRange.suggestion(rates: [1e-5, 1e-4], smoothed: [0.5, .nan], minLR: 1e-5))
    }
}
