import BraidData
import BraidGraph
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// x [N, 1, 16, 16] -> conv 3x3 (40) -> relu -> squeeze-excitation (global average pool ->
/// 1x1 conv 40 -> 10 -> relu -> 1x1 conv 10 -> 40 -> sigmoid -> scale) -> conv 3x3 (8) ->
/// relu -> maxpool -> flatten -> dense (4), loaded with a new `classes`-way head: the shape of
/// ppocr_cls's blocks, whose 1x1-map convolutions multiply a whole batch at once.
func squeezeExcitationSource(dir: String, classes: Int) throws -> SourceModel {
    var rng = SplitMix64(seed: 21)
    func t(_ shape: [Int], _ scale: Float) -> Tensor {
        Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-scale, scale) })
    }
    let conv3 = ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
    let conv1 = ConvParams(kernel: [1, 1], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1)
    let pool = PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1],
                          autoPad: .explicit, ceilMode: false, countIncludePad: false)
    let nodes = [
        Node(name: "c1", op: .conv(conv3), inputs: ["x", "w1", "b1"], outputs: ["h1"], sourceOp: "Conv"),
        Node(name: "r1", op: .unary(.relu), inputs: ["h1"], outputs: ["h2"], sourceOp: "Relu"),
        Node(name: "gap", op: .globalPool(.average), inputs: ["h2"], outputs: ["s0"], sourceOp: "GlobalAveragePool"),
        Node(name: "se1", op: .conv(conv1), inputs: ["s0", "ws1", "bs1"], outputs: ["s1"], sourceOp: "Conv"),
        Node(name: "sr", op: .unary(.relu), inputs: ["s1"], outputs: ["s2"], sourceOp: "Relu"),
        Node(name: "se2", op: .conv(conv1), inputs: ["s2", "ws2", "bs2"], outputs: ["s3"], sourceOp: "Conv"),
        Node(name: "sg", op: .unary(.sigmoid), inputs: ["s3"], outputs: ["s4"], sourceOp: "Sigmoid"),
        Node(name: "scale", op: .binary(.mul), inputs: ["h2", "s4"], outputs: ["h3"], sourceOp: "Mul"),
        Node(name: "c2", op: .conv(conv3), inputs: ["h3", "w2", "b2"], outputs: ["h4"], sourceOp: "Conv"),
        Node(name: "r2", op: .unary(.relu), inputs: ["h4"], outputs: ["h5"], sourceOp: "Relu"),
        Node(name: "p2", op: .pool(pool), inputs: ["h5"], outputs: ["h6"], sourceOp: "MaxPool"),
        Node(name: "flat", op: .flatten(axis: 1), inputs: ["h6"], outputs: ["h7"], sourceOp: "Flatten"),
        Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["h7", "wf", "bf"], outputs: ["z"], sourceOp: "Gemm"),
        Node(name: "sm", op: .softmax(.softmax, axis: 1, coerce2D: false), inputs: ["z"], outputs: ["y"], sourceOp: "Softmax"),
    ]
    let g = Graph(name: "se",
                  inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1), .fixed(16), .fixed(16)])],
                  outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                  initializers: ["w1": t([40, 1, 3, 3], 0.5), "b1": t([40], 0.1), "ws1": t([10, 40, 1, 1], 0.3),
                                 "bs1": t([10], 0.1), "ws2": t([40, 10, 1, 1], 0.5), "bs2": t([40], 0.1),
                                 "w2": t([8, 40, 3, 3], 0.1), "b2": t([8], 0.1), "wf": t([4, 512], 0.1), "bf": t([4], 0.1)],
                  nodes: nodes)
    let path = dir + "/se.onnx"
    try exportONNX(g, to: path)
    return try SourceModel.load(path: path, classes: classes, seed: 5, manifest: [])
}

/// A frozen prefix's cached output stands for what the whole graph computes for the same
/// image wherever a shuffled batch puts it; the caches of AMCF's search rely on it.
final class PrefixBatchInvarianceTests: XCTestCase {
    /// Depth 2 freezes the first convolution and the squeeze-excitation's reduction, so the
    /// prefix ends at the block's input and at its reduced 1x1 vector.
    func testCachedPrefixIsWhatTheTrainingGraphComputesInAnotherBatchOrder() throws {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let d = try digitsSplits()
        let m = try squeezeExcitationSource(dir: dir, classes: d.classes.count)
        let setup = try m.graph.trainingSetup(freezeDepth: 2)
        let split = try XCTUnwrap(PrefixSplit.find(graph: setup.graph, input: m.inputName, trainable: setup.trainable))
        XCTAssertEqual(split.cuts, ["h2", "s2"])
        let loader = try BatchLoader(dataset: d.train, specs: [m.spec], batchSize: 32, shuffle: false, dropLast: false, seed: 0)
        let batch = try XCTUnwrap(try loader.epoch(0).next())
        let cache = PrefixCache()
        let stage = try PrefixStage(member: m.name, split: split, input: m.inputName, batchShape: m.spec.batchShape(32), cache: cache)
        try stage.compute(images: batch.inputs[0], indices: batch.indices)
        // The same images reversed through the uncached training graph.
        let full = try TrainingPlan.make(graph: setup.graph, output: "logits", trainable: setup.trainable,
                                         feeds: [m.inputName: m.spec.batchShape(32)])
        let x = full.inputs[0].tensor, per = x.count / 32
        for r in 0..<32 { (x.floats + r * per).update(from: batch.inputs[0].floats + (31 - r) * per, count: per) }
        full.forward()
        for (k, cut) in stage.cuts.enumerated() {
            let n = stage.perImage[k], value = try XCTUnwrap(full.values[cut])
            var cached = [Float](repeating: 0, count: n)
            for r in 0..<32 {
                XCTAssertTrue(cache.lookup(member: m.name, cut: cut, index: batch.indices[31 - r], into: &cached, count: n))
                XCTAssertEqual(cached, Array(UnsafeBufferPointer(start: value.floats + r * n, count: n)),
                               "cut \(cut), image \(batch.indices[31 - r]) at row \(r)")
            }
        }
    }

    /// A short fine-tune as AMCF's fitness runs it, with the training and validation prefix
    /// caches and without: the same trained parameters to the bit and the same accuracy.
    func testScoringFinetuneWithPrefixCachesTrainsExactlyLikeWithout() throws {
        let dir = try scratchDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let d = try digitsSplits()
        let m = try squeezeExcitationSource(dir: dir, classes: d.classes.count)
        var runs: [(accuracy: Double, params: [String: [Float]])] = []
        for cached in [true, false] {
            var o = TrainOptions()
            o.epochs = 1; o.batch = 32; o.lr = 0.05; o.seed = 9; o.prefixCache = cached
            let tuner = try Finetuner(models: [m.pristineCopy()], depths: [2], classes: d.classes, options: o,
                                      runDir: dir + "/\(cached)")
            tuner.scoringOnly = true
            if cached { tuner.validationPrefixCache = PrefixCache() }
            try tuner.train(train: d.train, validation: d.validation, resume: false)
            XCTAssertEqual(tuner.prefixCuts, [cached ? ["h2", "s2"] : []])
            let g = tuner.models[0].graph
            let params = tuner.members[0].setup.trainable.reduce(into: [String: [Float]]()) { all, name in
                let t = g.initializers[name]!
                all[name] = Array(UnsafeBufferPointer(start: t.floats, count: t.count))
            }
            runs.append((try XCTUnwrap(tuner.history.last).validationAccuracy, params))
        }
        XCTAssertEqual(runs[0].params.keys.sorted(), runs[1].params.keys.sorted())
        for (name, value) in runs[0].params {
            let other = try XCTUnwrap(runs[1].params[name])
            let differing = zip(value, other).filter { $0 != $1 }.count
            XCTAssertEqual(differing, 0, "\(name): \(differing) of \(value.count) floats differ")
        }
        XCTAssertEqual(runs[0].accuracy, runs[1].accuracy)
        XCTAssertGreaterThan(runs[1].accuracy, 0.2)
    }
}
