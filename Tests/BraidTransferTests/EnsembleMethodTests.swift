import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer
import BraidTestSupport

/// The multi-source baselines and ablations (`ensemble`, `ensemble-searched`, `collab`),
/// amcf-weighted's vote, and the paired bootstrap behind the reports' intervals.
final class EnsembleMethodTests: XCTestCase {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "braid-ensm-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Two tiny classifiers ([N, 3, 8, 8] in) in a temporary folder, for runs on the digits
    /// (skipped when tools/fetch-data has not fetched them).
    func twoTinySourcesOnDigits() throws -> (dir: String, sources: [String]) {
        try TestCache.require("data/digits.csv.gz", madeBy: "tools/fetch-data")
        let dir = try tempDir()
        for name in ["a", "b"] {
            try writeTinyClassifier(to: dir + "/\(name).onnx", input: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)])
        }
        return (dir, [dir + "/a.onnx", dir + "/b.onnx"])
    }

    func testMethodsResolveDepthsAndLoss() throws {
        let dir = try tempDir()
        try writeTinyClassifier(to: dir + "/a.onnx", input: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)])
        let m = try SourceModel.load(path: dir + "/a.onnx", classes: 2, seed: 0, manifest: [])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .ensemble, freeze: [], models: [m, m]), [0, 0])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .collab, freeze: [], models: [m, m]), [0, 0])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .amcfWeighted, freeze: [], models: [m, m]), [0, 0])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .collab, freeze: [1, 0], models: [m, m]), [1, 0])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .ensembleSearched, freeze: [], models: [m, m]), [-1, -1])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .ensembleSearched, freeze: [], models: [m, m], chosen: [1, 1]), [1, 1])

        var o = TrainOptions()
        o.lambda = 0.2
        for method in TrainOptions.Method.allCases {
            o.method = method
            let expected: Float = [.ensemble, .ensembleSearched].contains(method) ? 0 : 0.2
            XCTAssertEqual(o.forMethod.lambda, expected, method.rawValue)
        }
        XCTAssertFalse(TrainOptions.Method.ensemble.isSingleSource)
        XCTAssertTrue(TrainOptions.Method.ensembleSearched.searchesDepths)
        XCTAssertFalse(TrainOptions.Method.collab.searchesDepths)
        for name in ["ensemble", "ensemble-searched", "collab", "amcf-weighted"] {
            XCTAssertTrue(ExperimentConfig.ensembleMethods.contains(name), name)
            XCTAssertTrue(ExperimentConfig.availableMethods.contains(name), name)
        }
    }

    /// Two images, three classes, logits given by hand.
    func logits(_ members: [[Float]], labels: [Int]) -> MemberLogits {
        MemberLogits(classes: 3, labels: labels, logits: members)
    }

    func testWeightedPredictionsMatchANaiveSum() {
        var rng = SplitMix64(seed: 3)
        let n = 40, k = 3
        let ls = (0..<3).map { _ in (0..<(n * k)).map { _ in rng.uniform(-2, 2) } }
        let labels = (0..<n).map { $0 % k }
        let v = MemberLogits(classes: k, labels: labels, logits: ls)
        let w = [0.5, 0, 2.0]
        let p = v.predictions(weights: w)
        for i in 0..<n {
            let sums = (0..<k).map { c in (0..<3).map { w[$0] * Double(ls[$0][i * k + c]) }.reduce(0, +) }
            XCTAssertEqual(p[i], sums.firstIndex(of: sums.max()!)!, "image \(i)")
        }
        XCTAssertEqual(v.predictions(weights: [1, 1, 1]), v.predictions())
        XCTAssertEqual(v.predictions(weights: [0, 1, 0]), MemberLogits(classes: k, labels: labels, logits: [ls[1]]).predictions())
        let e = v.evaluation(weights: w)
        let text = v.correctness(weights: w)
        XCTAssertEqual(text.count, n)
        XCTAssertEqual(text.filter { $0 == "1" }.count, e.correct)
        XCTAssertEqual(e.total, n)
    }

    /// Members 0 and 1 are each right on three images with small margins; member 2 is right
    /// on one with large logits, so it decides the plain and the weighted sum: the vote
    /// drops it, and the other two are right everywhere together.
    func testVoteDropsAMemberThatLowersValidationAccuracy() {
        let labels = [0, 1, 2, 0]
        let good0: [Float] = [2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1, 0]  // right on 0, 1, 2
        let good1: [Float] = [1, 0, 0, 0, 1, 0, 1, 0, 0, 2, 0, 0]  // right on 0, 1, 3
        let bad: [Float] = [0, 20, 0, 0, 0, 20, 20, 0, 0, 20, 0, 0]  // right on 3
        let v = logits([good0, good1, bad], labels: labels)
        XCTAssertEqual(v.evaluation().accuracy, 0.25, "the bad member decides the plain sum")
        XCTAssertEqual(v.evaluation(weights: [0.75, 0.75, 0.25]).accuracy, 0.25, "and the weighted one")
        let vote = WeightedVote.choose(validation: v, softmax: false)
        XCTAssertEqual(vote.memberValidationAccuracy, [0.75, 0.75, 0.25])
        XCTAssertEqual(vote.dropped, [2])
        XCTAssertFalse(vote.byAccuracy, "accuracy weights score no better than the plain sum")
        XCTAssertEqual(vote.weights, [1, 1, 0])
        XCTAssertEqual(vote.unweightedValidationAccuracy, 0.25)
        XCTAssertEqual(vote.validationAccuracy, 1)

        // Nothing to gain: the plain sum.
        let same = logits([good0, good0], labels: labels)
        let kept = WeightedVote.choose(validation: same, softmax: false)
        XCTAssertEqual(kept.dropped, [])
        XCTAssertEqual(kept.weights, [1, 1])

        // A right everywhere by 1, B wrong on two images by 1.5: the plain sum follows B
        // there; weighted by accuracy (1 and 0.5) A decides, and nothing is dropped.
        let a: [Float] = [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0]
        let b: [Float] = [1, 0, 0, 0, 1, 0, 1.5, 0, 0, 0, 1.5, 0]
        let both = logits([a, b], labels: labels)
        XCTAssertEqual(both.evaluation().accuracy, 0.5)
        let w = WeightedVote.choose(validation: both, softmax: false)
        XCTAssertTrue(w.byAccuracy)
        XCTAssertEqual(w.weights, [1, 0.5])
        XCTAssertEqual(w.dropped, [])
        XCTAssertEqual(w.validationAccuracy, 1)
        let data = try! JSONEncoder().encode(vote)
        XCTAssertEqual(try JSONDecoder().decode(WeightedVote.self, from: data), vote)
    }

    func testPairedBootstrap() {
        // No difference at all: a point interval at 0.
        let zero = pairedBootstrap([[Int8](repeating: 0, count: 50), [Int8](repeating: 0, count: 60)])
        XCTAssertEqual(zero.difference, 0)
        XCTAssertEqual(zero.low, 0)
        XCTAssertEqual(zero.high, 0)
        // Always better: +1 exactly.
        let one = pairedBootstrap([[Int8](repeating: 1, count: 30)])
        XCTAssertEqual(one.difference, 1)
        XCTAssertEqual(one.low, 1)
        // Seed means 0.1 and 0.3 (10 of 100 and 30 of 100 images better): the statistic is
        // their mean, the interval holds it and spreads over both seeds' variation.
        let a = [Int8](repeating: 1, count: 10) + [Int8](repeating: 0, count: 90)
        let b = [Int8](repeating: 1, count: 30) + [Int8](repeating: 0, count: 70)
        let r = pairedBootstrap([a, b])
        XCTAssertEqual(r.difference, 0.2, accuracy: 1e-12)
        XCTAssertTrue(r.low < 0.2 && r.high > 0.2, "\(r)")
        XCTAssertTrue(r.low >= 0.05 && r.high <= 0.35, "\(r)")
        // Seeded: the same interval every time; NaN without data.
        let again = pairedBootstrap([a, b])
        XCTAssertEqual(again.low, r.low)
        XCTAssertEqual(again.high, r.high)
        XCTAssertTrue(pairedBootstrap([]).difference.isNaN)
        // A wider spread between seeds widens the interval.
        let c = [Int8](repeating: 0, count: 100)
        let d = [Int8](repeating: 1, count: 40) + [Int8](repeating: 0, count: 60)
        let wide = pairedBootstrap([c, d])
        XCTAssertGreaterThan(wide.high - wide.low, r.high - r.low)
    }

    /// ensemble-searched through the library: the search and the training both run without
    /// the collaborative loss, whatever lambda was asked for.
    func testEnsembleSearchedTrainsAndSearchesWithoutTheCollaborativeLoss() throws {
        let (dir, sources) = try twoTinySourcesOnDigits()
        var setup = FinetuneSetup(sources: sources, data: "digits")
        setup.options.method = .ensembleSearched
        setup.options.lambda = 0.5
        setup.options.epochs = 1
        setup.options.batch = 32
        setup.search.swarm.particles = 2
        setup.search.swarm.iterations = 1
        setup.search.epochs = 1
        setup.search.subset = 0.3
        let result = try FinetuneRun(setup, runDir: dir + "/run", manifest: []).run()
        let search = try LayerSearch.loadRecord(runDir: dir + "/run")
        XCTAssertEqual(search.training.lambda, 0)
        XCTAssertEqual(search.chosenScheme, result.depths)
        XCTAssertEqual(try RunRecord.load(runDir: dir + "/run").options.lambda, 0)
    }

    /// amcf-weighted through the library on the digits: vote.json is written, and the run
    /// read back (the chosen members, heads scaled by the weights) tests as the run did.
    func testAMCFWeightedRunRoundTrips() throws {
        let (dir, sources) = try twoTinySourcesOnDigits()
        var setup = FinetuneSetup(sources: sources, data: "digits")
        setup.options.method = .amcfWeighted
        setup.options.epochs = 1
        setup.options.batch = 32
        setup.options.lr = 0.05
        let result = try FinetuneRun(setup, runDir: dir + "/run", manifest: []).run()
        XCTAssertEqual(result.depths, [0, 0])
        let vote = try JSONDecoder().decode(WeightedVote.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/run/vote.json")))
        XCTAssertEqual(vote.weights.count, 2)
        XCTAssertTrue(vote.weights.allSatisfy { $0 >= 0 && $0 <= 1 } && vote.weights.contains { $0 > 0 }, "\(vote)")
        // The collaborative members or the independent ones, whichever voted better on validation.
        let collaborative = try XCTUnwrap(vote.collaborative)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/independent/checkpoint.bin"))
        XCTAssertEqual(try RunRecord.load(runDir: dir + "/run").options.lambda, collaborative ? setup.options.lambda : 0)
        let trained = try TrainedRun.load(runDir: dir + "/run", manifest: [])
        XCTAssertEqual(trained.vote, vote)
        let test = try trained.evaluate(on: try trained.images(of: try DataCatalog.open("digits"), split: .test))
        XCTAssertEqual(test.correct, result.test.correct, "scaled heads vote as the weights did")
        let members = try trained.ensemble(image: EnsembleImage(channels: 1, height: 8, width: 8)).info.members
        XCTAssertEqual(members.count, vote.weights.filter { $0 != 0 }.count)
    }
}
