import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

final class BaselineTests: XCTestCase {
    func randomTensor(_ shape: [Int], _ rng: inout SplitMix64) -> Tensor {
        Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-1, 1) })
    }

    /// The gradient L2-SP adds matches a central difference of its value, on the backbone
    /// (alpha, around w0) and on the head (beta, around 0).
    func testL2SPGradientMatchesFiniteDifference() {
        var rng = SplitMix64(seed: 1)
        let params = ["conv.w": randomTensor([3, 4], &rng), "head.weight": randomTensor([2, 5], &rng)]
        let penalty = L2SPPenalty(params: params, alpha: 0.3, beta: 0.7)
        XCTAssertEqual(penalty.value(params: ["conv.w": params["conv.w"]!]), 0, "zero at the pretrained weights")
        for (_, t) in params { for i in 0..<t.count { t.floats[i] += rng.uniform(-0.5, 0.5) } }
        let grads = params.mapValues { Tensor(zeros: $0.shape) }
        grads["conv.w"]!.floats[0] = 2
        penalty.addGradient(params: params, grads: grads)
        let h: Float = 1e-2
        for (name, t) in params {
            for i in 0..<t.count {
                let keep = t.floats[i]
                t.floats[i] = keep + h
                let up = Double(penalty.value(params: params))
                t.floats[i] = keep - h
                let down = Double(penalty.value(params: params))
                t.floats[i] = keep
                let numeric = (up - down) / Double(2 * h)
                let added = Double(grads[name]!.floats[i]) - (name == "conv.w" && i == 0 ? 2 : 0)
                XCTAssertEqual(added, numeric, accuracy: 2e-3, "\(name)[\(i)]")
            }
        }
        // By hand: alpha/2 * sum (w - w0)^2 + beta/2 * sum w^2.
        let w0 = penalty.reference["conv.w"]!
        var expected = 0.0
        for i in 0..<12 { let d = Double(params["conv.w"]!.floats[i] - w0.floats[i]); expected += 0.15 * d * d }
        for i in 0..<10 { let w = Double(params["head.weight"]!.floats[i]); expected += 0.35 * w * w }
        XCTAssertEqual(Double(penalty.value(params: params)), expected, accuracy: 1e-4)
    }

    func testChildTuningBernoulliMaskKeepsAboutPAndRescales() throws {
        let mask = try ChildTuningMask(mode: .d, p: 0.3, seed: 4)
        let n = 100_000
        let grads = ["conv.w": Tensor(shape: [n], floats: Array(repeating: 1, count: n)),
                     "head.weight": Tensor(shape: [10], floats: Array(repeating: 1, count: 10))]
        mask.apply(grads: grads, step: 7)
        let g = grads["conv.w"]!.floatArray
        let kept = g.filter { $0 != 0 }
        XCTAssertEqual(Double(kept.count) / Double(n), 0.3, accuracy: 0.01)
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.3) < 1e-5 }, "kept gradients are scaled by 1/p")
        XCTAssertEqual(grads["head.weight"]!.floatArray, Array(repeating: 1, count: 10), "the head is never masked")
        // A fresh draw each step; the same draw for the same step, as after a resume, even
        // from a new mask object.
        let again = ["conv.w": Tensor(shape: [n], floats: Array(repeating: 1, count: n))]
        mask.apply(grads: again, step: 8)
        XCTAssertNotEqual(again["conv.w"]!.floatArray, g)
        let resumed = ["conv.w": Tensor(shape: [n], floats: Array(repeating: 1, count: n))]
        try ChildTuningMask(mode: .d, p: 0.3, seed: 4).apply(grads: resumed, step: 7)
        XCTAssertEqual(resumed["conv.w"]!.floatArray, g)
        XCTAssertThrowsError(try ChildTuningMask(mode: .d, p: 0, seed: 0))
    }

    func testChildTuningFisherMaskKeepsTheLargestAccumulatedGradients() throws {
        let mask = try ChildTuningMask(mode: .f, p: 0.25, seed: 0)
        // Two batches; element i of "a" gets i and -i, so its Fisher value is 2 i^2; "b" gets 0.5.
        for sign: Float in [1, -1] {
            mask.accumulateFisher(grads: ["a": Tensor(shape: [12], floats: (0..<12).map { sign * Float($0) }),
                                          "b": Tensor(shape: [4], floats: Array(repeating: 0.5, count: 4)),
                                          "head.bias": Tensor(shape: [2], floats: [100, 100])])
        }
        mask.freezeFisherMask()
        XCTAssertEqual(mask.keptFraction, 0.25, accuracy: 1e-9)
        let grads = ["a": Tensor(shape: [12], floats: Array(repeating: 2, count: 12)),
                     "b": Tensor(shape: [4], floats: Array(repeating: 2, count: 4)),
                     "head.bias": Tensor(shape: [2], floats: [3, 3])]
        mask.apply(grads: grads, step: 0)
        // 16 backbone elements, top 4 by Fisher: a[8...11]; no rescaling.
        XCTAssertEqual(grads["a"]!.floatArray, Array(repeating: 0, count: 8) + Array(repeating: 2, count: 4))
        XCTAssertEqual(grads["b"]!.floatArray, [0, 0, 0, 0])
        XCTAssertEqual(grads["head.bias"]!.floatArray, [3, 3])
    }

    /// On a fitness with one best mask (agreement with a target pattern), the genetic
    /// search improves monotonically, evaluates each mask once and is reproducible.
    func testGeneticSearchMechanics() throws {
        let target: [Bool] = (0..<16).map { $0 % 3 == 0 }
        func score(_ m: [Bool]) -> Double { Double(zip(m, target).filter { $0 == $1 }.count) / 16 }
        var o = GeneticOptions()
        o.population = 10; o.generations = 15; o.seed = 7
        let ga = try GeneticSearch(bits: 16, options: o)
        var calls = 0
        let r = try ga.run { calls += 1; return score($0) }
        XCTAssertEqual(calls, r.evaluations.count)
        XCTAssertEqual(Set(r.evaluations.map(\.mask)).count, r.evaluations.count, "no mask is evaluated twice")
        XCTAssertEqual(r.evaluations.count + r.cacheHits, o.population * (o.generations + 1))
        XCTAssertEqual(r.bestPerGeneration.count, o.generations + 1)
        XCTAssertEqual(r.bestPerGeneration, r.bestPerGeneration.sorted(), "elitism: the best never gets worse")
        XCTAssertEqual(r.bestFitness, r.evaluations.map(\.fitness).max())
        XCTAssertEqual(score(r.bestMask), r.bestFitness)
        XCTAssertGreaterThan(r.bestFitness, r.bestPerGeneration[0])
        XCTAssertGreaterThanOrEqual(r.bestFitness, 0.9)
        let again = try ga.run { score($0) }
        XCTAssertEqual(again.evaluations.map(\.mask), r.evaluations.map(\.mask))

        // No crossover and no mutation: children are copies of parents, so nothing new is
        // ever evaluated after the first generation.
        o.crossover = 0; o.mutation = 0
        let frozen = try GeneticSearch(bits: 16, options: o).run { score($0) }
        XCTAssertTrue(frozen.evaluations.allSatisfy { $0.generation == 0 })
        XCTAssertThrowsError(try GeneticSearch(bits: 16, options: { var b = o; b.mutation = 2; return b }()))
    }

    /// A freeze bitmask trains exactly the units left out of it, with their batch
    /// normalisation in training mode; a leading mask equals a freeze depth.
    func testFrozenUnitSetSetup() throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try smallSource(dir: dir, classes: 10)
        let byDepth = try m.graph.trainingSetup(freezeDepth: 1)
        let bySet = try m.graph.trainingSetup(frozenUnits: [0])
        XCTAssertEqual(byDepth.trainable, bySet.trainable)
        let second = try m.graph.trainingSetup(frozenUnits: [1])
        XCTAssertEqual(second.trainable, ["w1", "b1", "s1", "o1", "head.weight", "head.bias"])
        XCTAssertTrue(second.graph.nodes.contains { if case .batchNormTraining = $0.op { return $0.name == "bn1" } else { return false } })
        XCTAssertEqual(second.frozenDepth, 1)
        XCTAssertThrowsError(try m.graph.trainingSetup(frozenUnits: [2]))
    }

    /// Each baseline trains end to end on digits and learns well past chance.
    func testBaselinesLearnDigits() throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let d = try digitsSplits()
        let m = try smallSource(dir: dir, classes: d.classes.count)
        for (method, mode) in [(TrainOptions.Method.l2sp, ChildTuningMask.Mode.d), (.childTuning, .d), (.childTuning, .f)] {
            var o = TrainOptions()
            o.method = method; o.childMode = mode; o.epochs = 2; o.batch = 32; o.lr = 0.05; o.seed = 9
            let tuner = try Finetuner(models: [m.pristineCopy()], depths: [0], classes: d.classes, options: o, runDir: dir + "/" + method.rawValue + mode.rawValue)
            tuner.scoringOnly = true
            try tuner.train(train: d.train, validation: d.validation, resume: false)
            let acc = try XCTUnwrap(tuner.history.last?.validationAccuracy)
            XCTAssertGreaterThan(acc, 0.5, "\(method) \(mode)")
        }
    }
}
