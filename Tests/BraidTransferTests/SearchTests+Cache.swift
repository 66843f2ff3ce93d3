import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// AMCF's search with its caches (frozen-prefix activations for training and validation,
/// deeper prefixes derived from shallower ones, the scheme memo) against the same search
/// without any: the same schemes, fitness values and choice.
extension SearchTests {
    func testCachedSearchMatchesUncachedSearch() throws {
        let (dir, d) = try twoCNNSourcesOnDigits("cache")
        var records: [SearchRecord] = []
        for cached in [true, false] {
            let (models, training) = try searchSetup(dir, d, cached: cached)
            var options = SearchOptions()
            options.swarm.particles = 4; options.swarm.iterations = 3; options.swarm.seed = 4
            options.epochs = 2
            options.reuseSchemes = cached
            let search = try LayerSearch(models: models, classes: d.classes, training: training, options: options)
            records.append(try search.run(train: d.train, validation: d.validation, runDir: dir + (cached ? "/c" : "/u")))
        }
        let (c, u) = (records[0], records[1])
        XCTAssertEqual(u.evaluations.count, 12)
        XCTAssertEqual(u.cacheHits, 0)
        XCTAssertNil(u.prefixReuse)
        XCTAssertEqual(c.evaluations.count + c.cacheHits, 12)
        // Each distinct scheme scores what the uncached search gave it at every visit.
        let scores = Dictionary(u.evaluations.map { ($0.scheme, $0.fitness) }, uniquingKeysWith: { a, b in
            XCTAssertEqual(a, b, "the uncached search scored one scheme twice differently")
            return a
        })
        for e in c.evaluations { XCTAssertEqual(e.fitness, scores[e.scheme], "\(e.scheme)") }
        XCTAssertEqual(c.trajectory, u.trajectory)
        XCTAssertEqual(c.chosenScheme, u.chosenScheme)
        XCTAssertEqual(c.chosenFitness, u.chosenFitness)
        let reuse = try XCTUnwrap(c.prefixReuse)
        print("cached search: \(c.evaluations.count) schemes computed, \(c.cacheHits) memo hits, prefix reuse \(reuse)")
        XCTAssertGreaterThan(reuse.trainServed, 0)
        XCTAssertGreaterThan(reuse.validationServed, 0)
        XCTAssertGreaterThan(reuse.trainDerived, 0, "some deeper prefix followed a shallower one of its member")
    }
}

extension SearchTests {
    /// A temporary folder with two small CNN sources (gray 16x16 and RGB 20x20, seeded) and
    /// the digits' splits, for the search tests.
    func twoCNNSourcesOnDigits(_ name: String) throws
        -> (dir: String, data: (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset, classes: [String])) {
        let dir = NSTemporaryDirectory() + "braid-search-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try writeCNN(to: dir + "/gray16.onnx", channels: 1, size: 16, widths: [8, 16], seed: 11)
        try writeCNN(to: dir + "/rgb20.onnx", channels: 3, size: 20, widths: [6, 8, 8], seed: 12)
        return (dir, try digitsSplits())
    }

    /// The two sources loaded afresh and AMCF training options (batch 32, lr 0.05, seed 9),
    /// with or without the prefix caches.
    func searchSetup(_ dir: String, _ d: (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset, classes: [String]),
                     cached: Bool) throws -> ([SourceModel], TrainOptions) {
        let models = try [dir + "/gray16.onnx", dir + "/rgb20.onnx"].enumerated().map { j, p in
            try SourceModel.load(path: p, classes: d.classes.count, seed: 5 &+ UInt64(j), manifest: [])
        }
        var training = TrainOptions()
        training.batch = 32; training.lr = 0.05; training.seed = 9; training.method = .amcf
        training.prefixCache = cached
        return (models, training)
    }
}
