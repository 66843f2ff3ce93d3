import BraidData
import BraidGraph
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// x [N, 1, 16, 16] -> conv (8) -> BN -> relu -> maxpool -> conv (16) -> relu -> maxpool ->
/// flatten -> dense (4) -> softmax, written as ONNX and loaded with a new `classes`-way head.
func smallSource(dir: String, classes: Int) throws -> SourceModel {
    var rng = SplitMix64(seed: 11)
    func t(_ shape: [Int], _ scale: Float) -> Tensor {
        Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-scale, scale) })
    }
    let conv = ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
    let pool = PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1],
                          autoPad: .explicit, ceilMode: false, countIncludePad: false)
    let nodes = [
        Node(name: "c1", op: .conv(conv), inputs: ["x", "w1", "b1"], outputs: ["h1"], sourceOp: "Conv"),
        Node(name: "bn1", op: .batchNorm(epsilon: 1e-5), inputs: ["h1", "s1", "o1", "m1", "v1"], outputs: ["h2"], sourceOp: "BatchNormalization"),
        Node(name: "r1", op: .unary(.relu), inputs: ["h2"], outputs: ["h3"], sourceOp: "Relu"),
        Node(name: "p1", op: .pool(pool), inputs: ["h3"], outputs: ["h4"], sourceOp: "MaxPool"),
        Node(name: "c2", op: .conv(conv), inputs: ["h4", "w2", "b2"], outputs: ["h5"], sourceOp: "Conv"),
        Node(name: "r2", op: .unary(.relu), inputs: ["h5"], outputs: ["h6"], sourceOp: "Relu"),
        Node(name: "p2", op: .pool(pool), inputs: ["h6"], outputs: ["h7"], sourceOp: "MaxPool"),
        Node(name: "flat", op: .flatten(axis: 1), inputs: ["h7"], outputs: ["h8"], sourceOp: "Flatten"),
        Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["h8", "wf", "bf"], outputs: ["z"], sourceOp: "Gemm"),
        Node(name: "sm", op: .softmax(.softmax, axis: 1, coerce2D: false), inputs: ["z"], outputs: ["y"], sourceOp: "Softmax"),
    ]
    let g = Graph(name: "small",
                  inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1), .fixed(16), .fixed(16)])],
                  outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                  initializers: ["w1": t([8, 1, 3, 3], 0.5), "b1": t([8], 0.1), "s1": t([8], 1), "o1": t([8], 0.1),
                                 "m1": Tensor(zeros: [8]), "v1": Tensor(shape: [8], floats: Array(repeating: 1, count: 8)),
                                 "w2": t([16, 8, 3, 3], 0.2), "b2": t([16], 0.1), "wf": t([4, 256], 0.1), "bf": t([4], 0.1)],
                  nodes: nodes)
    let path = dir + "/small.onnx"
    try exportONNX(g, to: path)
    return try SourceModel.load(path: path, classes: classes, seed: 5, manifest: [])
}

func digitsSplits() throws -> (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset, classes: [String]) {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let folder = ProcessInfo.processInfo.environment["BRAID_CACHE"].map { $0 + "/data" }
        ?? repo.appendingPathComponent(".cache/data").path
    let opened = try DataCatalog.open("digits", dataFolder: folder)
    let s = try opened.splits(validationFraction: 0.1, testFraction: 0.2, seed: 3)
    return (s.train, s.validation, s.test, opened.classes)
}

func scratchDir() throws -> String {
    let dir = NSTemporaryDirectory() + "braid-pc-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

final class PrefixCacheTests: XCTestCase {
    func tempDir() throws -> String {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func train(_ model: SourceModel, depth: Int, cache: Bool, epochs: Int, dir: String) throws -> (Finetuner, Double) {
        let d = try digitsSplits()
        var o = TrainOptions()
        o.epochs = epochs; o.batch = 32; o.lr = 0.05; o.seed = 9; o.prefixCache = cache
        let tuner = try Finetuner(models: [model.pristineCopy()], depths: [depth], classes: d.classes, options: o, runDir: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try tuner.train(train: d.train, validation: d.validation, resume: false)
        // The training loops of the epochs after the first (the cache's warm-up excluded).
        return (tuner, tuner.history.dropFirst().reduce(0) { $0 + $1.seconds })
    }

    func testCutIsWhereTheFrozenPrefixEnds() throws {
        let dir = try tempDir()
        let m = try smallSource(dir: dir, classes: 10)
        for (depth, cut) in [(0, nil), (1, "h4"), (2, "head.features")] as [(Int, String?)] {
            let setup = try m.graph.trainingSetup(freezeDepth: depth)
            let split = PrefixSplit.find(graph: setup.graph, input: m.inputName, trainable: setup.trainable)
            XCTAssertEqual(split?.cuts, cut.map { [$0] }, "depth \(depth)")
        }
    }

    /// Caching changes where the frozen prefix's output comes from, not what it is: the
    /// trained parameters are identical, and the later epochs read every activation from
    /// the cache, which makes them faster.
    func testCachedTrainingMatchesUncachedAndIsFaster() throws {
        let dir = try tempDir()
        let d = try digitsSplits()
        let m = try smallSource(dir: dir, classes: d.classes.count)
        for depth in [1, 2] {
            let (plain, plainTime) = try train(m, depth: depth, cache: false, epochs: 4, dir: dir + "/a\(depth)")
            let (cached, cachedTime) = try train(m, depth: depth, cache: true, epochs: 4, dir: dir + "/b\(depth)")
            XCTAssertEqual(plain.prefixCuts[0], [])
            XCTAssertEqual(cached.prefixCuts[0].count, 1)
            let cache = try XCTUnwrap(cached.prefixCache)
            let perEpoch = (d.train.count / 32) * 32
            // Every training image is computed once before the first epoch; every epoch reads all.
            XCTAssertEqual(cache.count, d.train.count)
            XCTAssertEqual(cache.hits, 4 * perEpoch)
            XCTAssertEqual(cache.misses, 0)
            for (name, t) in plain.models[0].graph.initializers where t.dtype.isFloat {
                XCTAssertEqual(t.floatArray, cached.models[0].graph.initializers[name]?.floatArray, "depth \(depth): \(name) differs")
            }
            XCTAssertEqual(plain.history.map(\.validationAccuracy), cached.history.map(\.validationAccuracy))
            if depth == 2 {
                XCTAssertLessThan(cachedTime, plainTime, "with the whole backbone cached only the head trains")
            }
        }
    }

    func testSpillsToDiskBeyondTheBudget() throws {
        let cache = PrefixCache(megabytes: 0)
        let a: [Float] = (0..<100).map { Float($0) * 0.5 }
        try a.withUnsafeBufferPointer { try cache.store(member: "m", cut: "c", index: 3, from: $0.baseAddress!, count: 100) }
        let b: [Float] = (0..<100).map { -Float($0) }
        try b.withUnsafeBufferPointer { try cache.store(member: "m", cut: "c", index: 4, from: $0.baseAddress!, count: 100) }
        XCTAssertEqual(cache.bytesInMemory, 0)
        XCTAssertEqual(cache.bytesSpilled, 800)
        var out = [Float](repeating: 0, count: 100)
        XCTAssertTrue(out.withUnsafeMutableBufferPointer { cache.lookup(member: "m", cut: "c", index: 4, into: $0.baseAddress!, count: 100) })
        XCTAssertEqual(out, b)
        XCTAssertTrue(out.withUnsafeMutableBufferPointer { cache.lookup(member: "m", cut: "c", index: 3, into: $0.baseAddress!, count: 100) })
        XCTAssertEqual(out, a)
        XCTAssertFalse(out.withUnsafeMutableBufferPointer { cache.lookup(member: "m", cut: "other", index: 3, into: $0.baseAddress!, count: 100) })

        let roomy = PrefixCache(megabytes: 1)
        try a.withUnsafeBufferPointer { try roomy.store(member: "m", cut: "c", index: 0, from: $0.baseAddress!, count: 100) }
        XCTAssertEqual(roomy.bytesInMemory, 400)
        XCTAssertEqual(roomy.bytesSpilled, 0)
    }
}
