import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// A deeper frozen prefix derived from a shallower cached one, and schemes scored through
/// the validation split's prefix cache: the same floats and the same accuracies as without.
final class PrefixBridgeTests: XCTestCase {
    func stage(_ m: SourceModel, depth: Int, cache: PrefixCache, batch: Int = 32) throws -> PrefixStage {
        let setup = try m.graph.trainingSetup(freezeDepth: depth)
        let split = try XCTUnwrap(PrefixSplit.find(graph: setup.graph, input: m.inputName, trainable: setup.trainable))
        return try PrefixStage(member: m.name, split: split, input: m.inputName, batchShape: [batch, 1, 16, 16], cache: cache)
    }

    func testDeeperPrefixIsDerivedFromTheShallowerOneExactly() throws {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let m = try smallSource(dir: dir, classes: 10)
        var rng = SplitMix64(seed: 3)
        // A full batch and a partial one (its planned rows past the tenth hold stale values).
        let batches = [(0..<32).map { $0 }, (32..<42).map { $0 }].map { indices in
            (indices, Tensor(shape: [indices.count, 1, 16, 16], floats: (0..<(indices.count * 256)).map { _ in rng.uniform(-1, 1) }))
        }
        let shared = PrefixCache(), alone = PrefixCache()
        let shallow = try stage(m, depth: 1, cache: shared)
        XCTAssertNil(shallow.bridge)
        for (indices, images) in batches { try shallow.compute(images: images, indices: indices) }
        let deep = try stage(m, depth: 2, cache: shared)
        let bridge = try XCTUnwrap(deep.bridge)
        XCTAssertEqual(bridge.from.map(\.name), shallow.cuts)
        XCTAssertEqual(bridge.to.map(\.name), deep.cuts)
        let whole = try stage(m, depth: 2, cache: alone)
        XCTAssertNil(whole.bridge)
        for (indices, images) in batches {
            try deep.compute(images: images, indices: indices)
            try whole.compute(images: images, indices: indices)
        }
        XCTAssertEqual(shared.imagesComputed, 42)
        XCTAssertEqual(shared.imagesDerived, 42)
        XCTAssertEqual(alone.imagesComputed, 42)
        XCTAssertEqual(alone.imagesDerived, 0)
        let n = deep.perImage[0]
        var a = [Float](repeating: 0, count: n), b = [Float](repeating: 1, count: n)
        for index in 0..<42 {
            XCTAssertTrue(shared.lookup(member: m.name, cut: deep.cuts[0], index: index, into: &a, count: n))
            XCTAssertTrue(alone.lookup(member: m.name, cut: deep.cuts[0], index: index, into: &b, count: n))
            XCTAssertEqual(a, b, "image \(index)")
        }
        // Without the shallower activations the deep stage falls back to the whole prefix.
        let fresh = PrefixCache()
        _ = try stage(m, depth: 1, cache: fresh)
        let orphan = try stage(m, depth: 2, cache: fresh)
        XCTAssertNotNil(orphan.bridge)
        try orphan.compute(images: batches[0].1, indices: batches[0].0)
        XCTAssertEqual(fresh.imagesComputed, 32)
        XCTAssertEqual(fresh.imagesDerived, 0)
    }

    func testValidationThroughThePrefixCacheScoresLikeTheWholeGraphs() throws {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let d = try digitsSplits()
        let m = try smallSource(dir: dir, classes: d.classes.count)
        for depth in [1, 2] {
            var o = TrainOptions()
            o.epochs = 1; o.batch = 32; o.lr = 0.05; o.seed = 9
            let tuner = try Finetuner(models: [m.pristineCopy()], depths: [depth], classes: d.classes, options: o,
                                      runDir: dir + "/d\(depth)")
            try FileManager.default.createDirectory(atPath: dir + "/d\(depth)", withIntermediateDirectories: true)
            try tuner.train(train: d.train, validation: d.validation, resume: false)
            let plain = try tuner.evaluateEnsemble(on: d.validation)
            let cache = PrefixCache()
            let first = try tuner.evaluateEnsemble(on: d.validation, prefixCache: cache)
            let again = try tuner.evaluateEnsemble(on: d.validation, prefixCache: cache)
            XCTAssertEqual(first.confusion, plain.confusion, "depth \(depth)")
            XCTAssertEqual(again.confusion, plain.confusion, "depth \(depth)")
            XCTAssertEqual(cache.imagesComputed, d.validation.count)
            XCTAssertEqual(cache.hits, 2 * d.validation.count, "the first pass reads back what it stored, the second reads all")
            XCTAssertGreaterThan(plain.accuracy, 0.2)
        }
    }

    func testCachesSharingABudgetKeepAtMostItInMemory() throws {
        let train = PrefixCache(megabytes: 1)
        let validation: PrefixCache? = PrefixCache(sharingBudgetWith: train)
        let big = (0..<200_000).map { Float($0) }, other = (0..<200_000).map { -Float($0) }
        try train.store(member: "m", cut: "c", index: 0, from: big, count: big.count)
        try validation!.store(member: "m", cut: "c", index: 0, from: other, count: other.count)
        XCTAssertEqual(train.bytesInMemory, 800_000)
        XCTAssertEqual(validation!.bytesInMemory, 0, "the shared megabyte is taken")
        XCTAssertEqual(validation!.bytesSpilled, 800_000)
        var out = [Float](repeating: 0, count: other.count)
        XCTAssertTrue(validation!.lookup(member: "m", cut: "c", index: 0, into: &out, count: out.count))
        XCTAssertEqual(out, other)
        XCTAssertTrue(train.lookup(member: "m", cut: "c", index: 0, into: &out, count: out.count))
        XCTAssertEqual(out, big)
        // A cache that goes away gives its share back.
        let third = PrefixCache(sharingBudgetWith: train)
        var fourth: PrefixCache? = PrefixCache(sharingBudgetWith: train)
        let small = [Float](repeating: 2, count: 50_000)
        try fourth!.store(member: "m", cut: "c", index: 0, from: small, count: small.count)
        try third.store(member: "m", cut: "c", index: 0, from: small, count: small.count)
        XCTAssertEqual(fourth!.bytesInMemory, 200_000)
        XCTAssertEqual(third.bytesInMemory, 0)
        fourth = nil
        try third.store(member: "m", cut: "c", index: 1, from: small, count: small.count)
        XCTAssertEqual(third.bytesInMemory, 200_000)
    }
}
