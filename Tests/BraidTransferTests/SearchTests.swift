import BraidData
import BraidGraph
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// The particle swarm on synthetic fitness functions, and AMCF's search end to end on two
/// small exported CNNs and the fetched digits.
final class SearchTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    func swarm(_ bounds: [Int], particles: Int = 10, iterations: Int = 5, seed: UInt64 = 1,
               maxVelocity: Double = 5) throws -> ParticleSwarm {
        var o = SwarmOptions()
        o.particles = particles; o.iterations = iterations; o.seed = seed; o.maxVelocity = maxVelocity
        return try ParticleSwarm(upperBounds: bounds, options: o)
    }

    static func bowl(_ k: [Int]) -> Double {
        -Double((k[0] - 3) * (k[0] - 3) + (k[1] - 7) * (k[1] - 7))
    }

    func testConvergesToTheKnownOptimum() throws {
        for seed: UInt64 in 0..<5 {
            let r = try swarm([10, 12], iterations: 15, seed: seed).run(fitness: Self.bowl)
            XCTAssertEqual(r.bestScheme, [3, 7], "seed \(seed)")
            XCTAssertEqual(r.bestFitness, 0)
            // The global best never gets worse.
            for (a, b) in zip(r.globalBest, r.globalBest.dropFirst()) { XCTAssertGreaterThanOrEqual(b.fitness, a.fitness) }
        }
        // The defaults (10 particles x 5 iterations) on the same problem: at most 50 of its
        // 143 schemes evaluated, the best within one unit of the optimum.
        let r = try swarm([10, 12], seed: 2).run(fitness: Self.bowl)
        XCTAssertLessThanOrEqual(r.evaluations.count, 50)
        XCTAssertGreaterThanOrEqual(r.bestFitness, -1)
    }

    func testRespectsBoundsAndVelocityClamp() throws {
        // The optimum sits on the upper bounds, so particles press against them.
        let bounds = [6, 9, 4]
        let r = try swarm(bounds, particles: 8, iterations: 10, seed: 3, maxVelocity: 2)
            .run { k in Double(k.reduce(0, +)) }
        XCTAssertEqual(r.bestScheme, bounds, "the upper bound is reachable")
        XCTAssertEqual(r.trajectory.count, 10)
        for (g, states) in r.trajectory.enumerated() {
            XCTAssertEqual(states.count, 8)
            for (i, s) in states.enumerated() {
                for d in 0..<3 {
                    XCTAssertGreaterThanOrEqual(s.position[d], 0)
                    XCTAssertLessThanOrEqual(s.position[d], Double(bounds[d]))
                    XCTAssertLessThanOrEqual(abs(s.velocity[d]), 2)
                    XCTAssertEqual(s.scheme[d], min(Int(s.position[d].rounded(.down)), bounds[d]))
                    if g > 0 {
                        let step = s.position[d] - r.trajectory[g - 1][i].position[d]
                        XCTAssertLessThanOrEqual(abs(step), 2 + 1e-12, "a move is at most the velocity clamp")
                    }
                }
            }
        }
    }

    func testStartCoversEachDimensionsRange() throws {
        for seed: UInt64 in 0..<4 {
            let r = try swarm([53, 22], particles: 4, iterations: 1, seed: seed).run { _ in 0 }
            for (d, l) in [53.0, 22.0].enumerated() {
                let strata = r.trajectory[0].map { Int($0.position[d] / (l / 4)) }
                XCTAssertEqual(Set(strata), [0, 1, 2, 3], "seed \(seed), dimension \(d): one particle per quarter")
            }
        }
    }

    func testIdenticalSchemesAreEvaluatedOnce() throws {
        var calls: [[Int]] = []
        let r = try swarm([2, 2], particles: 10, iterations: 5, seed: 4).run { k in
            calls.append(k)
            return Double(k[0] * 3 + k[1])
        }
        XCTAssertEqual(Set(calls).count, calls.count, "no scheme is computed twice")
        XCTAssertLessThanOrEqual(calls.count, 9)
        XCTAssertEqual(r.evaluations.map(\.scheme), calls)
        XCTAssertEqual(r.evaluations.count + r.cacheHits, 50, "every particle visit is either computed or a hit")
        let visited = Set(r.trajectory.flatMap { $0.map(\.scheme) })
        XCTAssertEqual(visited, Set(calls))
        XCTAssertEqual(r.bestScheme, [2, 2])
    }

    func testSameSeedSameSearch() throws {
        let a = try swarm([10, 12], seed: 7).run(fitness: Self.bowl)
        let b = try swarm([10, 12], seed: 7).run(fitness: Self.bowl)
        let c = try swarm([10, 12], seed: 8).run(fitness: Self.bowl)
        XCTAssertEqual(a.trajectory, b.trajectory)
        XCTAssertEqual(a.evaluations.map(\.scheme), b.evaluations.map(\.scheme))
        XCTAssertNotEqual(a.trajectory, c.trajectory)
    }

    func testInertiaFallsLinearly() throws {
        let s = try swarm([3], iterations: 5)
        XCTAssertEqual(s.inertia(iteration: 1), 1.4, accuracy: 1e-12)
        XCTAssertEqual(s.inertia(iteration: 2), 1.4 - 0.7 / 3, accuracy: 1e-12)
        XCTAssertEqual(s.inertia(iteration: 4), 0.7, accuracy: 1e-12)
        XCTAssertThrowsError(try swarm([3], particles: 0))
        XCTAssertThrowsError(try swarm([-1]))
    }

    func testInterruptedSearchReplaysToTheSameEnd() throws {
        struct Stop: Error {}
        let whole = try swarm([10, 12], seed: 5).run(fitness: Self.bowl)
        var done: [SchemeEvaluation] = []
        XCTAssertThrowsError(try swarm([10, 12], seed: 5).run(onEvaluation: { done.append($0) }) { k in
            if done.count == 6 { throw Stop() }
            return Self.bowl(k)
        })
        XCTAssertEqual(done.count, 6)
        var computed = 0
        let resumed = try swarm([10, 12], seed: 5).run(replay: done) { k in
            computed += 1
            return Self.bowl(k)
        }
        XCTAssertEqual(computed, whole.evaluations.count - 6)
        XCTAssertEqual(resumed.trajectory, whole.trajectory)
        XCTAssertEqual(resumed.evaluations.map(\.scheme), whole.evaluations.map(\.scheme))
        XCTAssertEqual(resumed.cacheHits, whole.cacheHits)
    }

    // MARK: - End to end

    /// Records which of its images were read.
    final class RecordingDataset: ImageDataset, @unchecked Sendable {
        let base: any ImageDataset
        private let lock = NSLock()
        private var readSet = Set<Int>()
        init(_ base: any ImageDataset) { self.base = base }
        var count: Int { base.count }
        var classes: [String] { base.classes }
        func label(_ index: Int) -> Int { base.label(index) }
        func image(_ index: Int) throws -> Tensor {
            lock.lock(); readSet.insert(index); lock.unlock()
            return try base.image(index)
        }
        var read: Set<Int> { lock.lock(); defer { lock.unlock() }; return readSet }
    }

    /// x [N, C, S, S] -> per width w: conv 3x3 (w) -> relu -> maxpool 2 (the first two) ->
    /// flatten -> dense (3) -> softmax: a "pretrained" source whose classifier is replaced.
    func writeCNN(to path: String, channels: Int, size: Int, widths: [Int], seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        func t(_ shape: [Int], _ scale: Float) -> Tensor {
            Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-scale, scale) })
        }
        let conv = ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
        let pool = PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1],
                              autoPad: .explicit, ceilMode: false, countIncludePad: false)
        var nodes: [Node] = [], inits: [String: Tensor] = [:]
        var x = "x", c = channels, s = size
        for (i, w) in widths.enumerated() {
            inits["w\(i)"] = t([w, c, 3, 3], (2 / Float(9 * c)).squareRoot())
            inits["b\(i)"] = t([w], 0.05)
            nodes.append(Node(name: "conv\(i)", op: .conv(conv), inputs: [x, "w\(i)", "b\(i)"], outputs: ["c\(i)"], sourceOp: "Conv"))
            nodes.append(Node(name: "relu\(i)", op: .unary(.relu), inputs: ["c\(i)"], outputs: ["r\(i)"], sourceOp: "Relu"))
            x = "r\(i)"
            if i < 2 {
                nodes.append(Node(name: "pool\(i)", op: .pool(pool), inputs: [x], outputs: ["p\(i)"], sourceOp: "MaxPool"))
                x = "p\(i)"; s /= 2
            }
            c = w
        }
        inits["wf"] = t([3, c * s * s], 0.1)
        inits["bf"] = t([3], 0.1)
        nodes.append(Node(name: "flat", op: .flatten(axis: 1), inputs: [x], outputs: ["f"], sourceOp: "Flatten"))
        nodes.append(Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["f", "wf", "bf"],
                          outputs: ["z"], sourceOp: "Gemm"))
        nodes.append(Node(name: "sm", op: .softmax(.softmax, axis: 1, coerce2D: false), inputs: ["z"], outputs: ["y"], sourceOp: "Softmax"))
        let g = Graph(name: "cnn\(widths.count)",
                      inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(channels), .fixed(size), .fixed(size)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)], initializers: inits, nodes: nodes)
        try exportONNX(g, to: path)
    }

    func testSearchesTwoSourcesOnDigitsWithoutTheTestSplit() throws {
        let dir = NSTemporaryDirectory() + "braid-search-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try writeCNN(to: dir + "/gray16.onnx", channels: 1, size: 16, widths: [8, 16], seed: 11)
        try writeCNN(to: dir + "/rgb20.onnx", channels: 3, size: 20, widths: [6, 8, 8], seed: 12)

        let folder = ProcessInfo.processInfo.environment["BRAID_CACHE"].map { $0 + "/data" }
            ?? Self.repo.appendingPathComponent(".cache/data").path
        let opened = try DataCatalog.open("digits", dataFolder: folder)
        let whole = RecordingDataset(try XCTUnwrap(opened.whole))
        let cut = try stratifiedSplit(labels: whole.labels, validationFraction: 0.1, testFraction: 0.2, seed: 3)
        let train = DatasetSubset(whole, indices: cut.train), validation = DatasetSubset(whole, indices: cut.validation)

        let models = try [dir + "/gray16.onnx", dir + "/rgb20.onnx"].enumerated().map { j, p in
            try SourceModel.load(path: p, classes: opened.classes.count, seed: 5 &+ UInt64(j), manifest: [])
        }
        XCTAssertEqual(models.map(\.units.count), [2, 3])
        let before = models.map { $0.graph.initializers.mapValues { $0.dtype.isFloat ? $0.floatArray : [] } }
        var training = TrainOptions()
        training.batch = 32; training.lr = 0.05; training.seed = 9; training.method = .amcf
        var options = SearchOptions()
        options.swarm.particles = 3; options.swarm.iterations = 2; options.swarm.seed = 9
        options.epochs = 1
        let search = try LayerSearch(models: models, classes: opened.classes, training: training, options: options)
        var seenDuringSearch: [Int] = []
        let record = try search.run(train: train, validation: validation, runDir: dir) { _ in
            seenDuringSearch.append(whole.read.count)
        }

        print(String(format: "AMCF search on digits: %d schemes computed, %d cache hits, %.2fs, chosen %@ at %.2f%% validation",
                     record.evaluations.count, record.cacheHits, record.totalSeconds,
                     record.chosenScheme.map(String.init).joined(separator: ",") as NSString, record.chosenFitness * 100))
        // Only training and validation images were read, validation ones among them.
        let read = whole.read
        XCTAssertTrue(read.isDisjoint(with: cut.test), "the search read \(read.intersection(cut.test).count) test images")
        XCTAssertTrue(read.isSuperset(of: cut.validation), "fitness is scored on the whole validation split")
        XCTAssertEqual(seenDuringSearch.count, record.evaluations.count)

        // search.json holds what the search did.
        let back = try LayerSearch.loadRecord(runDir: dir)
        XCTAssertEqual(back.unitCounts, [2, 3])
        XCTAssertEqual(back.evaluations.count + back.cacheHits, 6)
        XCTAssertEqual(back.globalBest.count, 2)
        XCTAssertEqual(back.trainImages, cut.train.count)
        XCTAssertEqual(back.validationImages, cut.validation.count)
        XCTAssertEqual(back.chosenScheme, record.chosenScheme)
        XCTAssertEqual(back.chosenFitness, back.evaluations.map(\.fitness).max())
        XCTAssertEqual(back.evaluations.first { $0.scheme == back.chosenScheme }?.fitness, back.chosenFitness)
        for e in back.evaluations {
            XCTAssertTrue(e.scheme[0] <= 2 && e.scheme[1] <= 3 && e.scheme.allSatisfy { $0 >= 0 })
            XCTAssertGreaterThan(e.seconds, 0)
            XCTAssertGreaterThan(e.fitness, 0.2, "one epoch on digits learns past chance (0.1)")
        }
        XCTAssertGreaterThan(back.totalSeconds, back.evaluations.map(\.seconds).reduce(0, +) * 0.99)
        let raw = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/search.json"))) as? [String: Any]
        for key in ["evaluations", "global_best", "cache_hits", "total_seconds", "chosen_scheme", "unit_counts"] {
            XCTAssertNotNil(raw?[key], "search.json lacks \(key)")
        }
        let svg = try String(contentsOfFile: dir + "/search.svg", encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, back.evaluations.count)
        XCTAssertTrue(svg.contains("gray16") && svg.contains("rgb20"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/search-progress.json"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/search-work"))

        // The given members were never trained, so the chosen scheme's fitness is reproduced
        // by a fresh short fine-tune from the same pretrained weights.
        for (m, b) in zip(models, before) {
            for (name, t) in m.graph.initializers where t.dtype.isFloat {
                XCTAssertTrue(t.floatArray == b[name], "the search trained the given member's \(name)")
            }
        }
        let again = try search.fitness(of: record.chosenScheme, train: train, validation: validation, workDir: dir + "/again")
        XCTAssertEqual(again, record.chosenFitness)

        // An interrupted search's progress file is replayed: a recorded evaluation of the
        // first particle's scheme is taken as is (here a made-up 99.9%) instead of recomputed.
        let first = try XCTUnwrap(back.evaluations.first)
        let planted = SchemeEvaluation(iteration: 0, particle: first.particle, scheme: first.scheme, fitness: 0.999, seconds: 42)
        let progress = SearchProgress(options: options, sources: models.map(\.path), evaluations: [planted])
        try LayerSearch.encoder.encode(progress).write(to: URL(fileURLWithPath: dir + "/search-progress.json"))
        let resumed = try search.run(train: train, validation: validation, runDir: dir)
        XCTAssertEqual(resumed.chosenScheme, first.scheme)
        XCTAssertEqual(resumed.chosenFitness, 0.999)
        XCTAssertEqual(resumed.evaluations.first, planted)
        XCTAssertGreaterThanOrEqual(resumed.totalSeconds, 42)
    }
}
