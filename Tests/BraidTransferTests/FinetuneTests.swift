import BraidData
import BraidGraph
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// Fine-tuning end to end on a small CNN and the fetched scikit-learn digits: it learns,
/// and a run stopped after one epoch and resumed ends exactly where an uninterrupted run ends.
final class FinetuneTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "braid-ft-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// x [N, 1, 16, 16] -> conv 3x3 (8) -> BN -> relu -> maxpool 2 -> conv 3x3 (16) -> relu
    /// -> maxpool 2 -> flatten (256) -> dense (4) -> softmax: a "pretrained" source with
    /// a 4-class classifier that fine-tuning replaces.
    func writeSmallModel(to path: String) throws {
        var rng = SplitMix64(seed: 11)
        func t(_ shape: [Int], _ scale: Float) -> Tensor {
            Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-scale, scale) })
        }
        let conv = { (k: Int) in ConvParams(kernel: [k, k], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1) }
        let nodes = [
            Node(name: "c1", op: .conv(conv(3)), inputs: ["x", "w1", "b1"], outputs: ["h1"], sourceOp: "Conv"),
            Node(name: "bn1", op: .batchNorm(epsilon: 1e-5), inputs: ["h1", "s1", "o1", "m1", "v1"], outputs: ["h2"], sourceOp: "BatchNormalization"),
            Node(name: "r1", op: .unary(.relu), inputs: ["h2"], outputs: ["h3"], sourceOp: "Relu"),
            Node(name: "p1", op: .pool(PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1],
                                                  autoPad: .explicit, ceilMode: false, countIncludePad: false)),
                 inputs: ["h3"], outputs: ["h4"], sourceOp: "MaxPool"),
            Node(name: "c2", op: .conv(conv(3)), inputs: ["h4", "w2", "b2"], outputs: ["h5"], sourceOp: "Conv"),
            Node(name: "r2", op: .unary(.relu), inputs: ["h5"], outputs: ["h6"], sourceOp: "Relu"),
            Node(name: "p2", op: .pool(PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1],
                                                  autoPad: .explicit, ceilMode: false, countIncludePad: false)),
                 inputs: ["h6"], outputs: ["h7"], sourceOp: "MaxPool"),
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
        try exportONNX(g, to: path)
    }

    func digits() throws -> (any ImageDataset, any ImageDataset, any ImageDataset, [String]) {
        let data = Self.repo.appendingPathComponent(".cache/data").path
        let opened = try DataCatalog.open("digits", dataFolder: ProcessInfo.processInfo.environment["BRAID_CACHE"].map { $0 + "/data" } ?? data)
        let s = try opened.splits(validationFraction: 0.1, testFraction: 0.2, seed: 3)
        return (s.train, s.validation, s.test, opened.classes)
    }

    func makeTuner(model path: String, runDir: String, epochs: Int, classes: [String]) throws -> Finetuner {
        let m = try SourceModel.load(path: path, classes: classes.count, seed: 5, manifest: [])
        XCTAssertEqual(m.units.count, 2, "two convolutions; the old dense classifier is cut off")
        XCTAssertEqual(m.featureSize, 256)
        var o = TrainOptions()
        o.epochs = epochs; o.batch = 32; o.lr = 0.05; o.seed = 9
        let tuner = try Finetuner(models: [m], depths: [0], classes: classes, options: o, runDir: runDir)
        return tuner
    }

    func testLearnsDigitsAndResumesExactly() throws {
        let dir = try tempDir()
        let model = dir + "/small.onnx"
        try writeSmallModel(to: model)
        let (train, val, test, classes) = try digits()

        let straight = try makeTuner(model: model, runDir: dir + "/a", epochs: 2, classes: classes)
        try FileManager.default.createDirectory(atPath: dir + "/a", withIntermediateDirectories: true)
        let before = try straight.evaluateMembers(on: test).ensemble.accuracy
        try straight.train(train: train, validation: val, resume: false)
        let after = try straight.evaluateMembers(on: test).ensemble.accuracy
        XCTAssertGreaterThan(after, 0.5, "two epochs on digits should learn well past chance (was \(before))")
        XCTAssertGreaterThan(after, before + 0.2)

        // One epoch, then a fresh process-like restart that resumes from the checkpoint.
        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: true)
        let first = try makeTuner(model: model, runDir: dir + "/b", epochs: 1, classes: classes)
        try first.train(train: train, validation: val, resume: false)
        let resumed = try makeTuner(model: model, runDir: dir + "/b", epochs: 2, classes: classes)
        try resumed.train(train: train, validation: val, resume: true)
        XCTAssertEqual(resumed.history.count, 2)
        for (name, t) in straight.models[0].graph.initializers where t.dtype.isFloat {
            let u = try XCTUnwrap(resumed.models[0].graph.initializers[name])
            XCTAssertEqual(t.floatArray, u.floatArray, "parameter \(name) differs after resume")
        }
    }

    /// Two members with the KL consistency and a softmax vote: the ensemble learns, and the
    /// vote is the argmax of the members' mean probabilities (checked against the members'
    /// own outputs on the test split).
    func testKLConsistencyAndSoftmaxVote() throws {
        let dir = try tempDir()
        let model = dir + "/small.onnx"
        try writeSmallModel(to: model)
        let (train, val, test, classes) = try digits()
        var o = TrainOptions()
        o.epochs = 1; o.batch = 32; o.lr = 0.05; o.seed = 9; o.consistency = .kl; o.vote = .softmax; o.lambda = 0.5
        let members = try [5, 6].map { try SourceModel.load(path: model, classes: classes.count, seed: UInt64($0), manifest: []) }
        let tuner = try Finetuner(models: members, depths: [0, 1], classes: classes, options: o, runDir: dir)
        try tuner.train(train: train, validation: val, resume: false)
        let result = try tuner.evaluateMembers(on: test)
        XCTAssertGreaterThan(result.ensemble.accuracy, 0.5, "one epoch with the KL term learns digits")

        let loader = try BatchLoader(dataset: test, specs: members.map(\.spec), batchSize: 64, shuffle: false, dropLast: false, seed: 0)
        let it = loader.epoch(0)
        var agree = 0, total = 0
        while let batch = try it.next() {
            let outs = try tuner.models.enumerated().map { j, m in
                try XCTUnwrap(try Executor(graph: m.graph).run([m.inputName: batch.inputs[j]])["logits"])
            }
            for r in 0..<batch.labels.count {
                var mean = [Double](repeating: 0, count: classes.count)
                for z in outs {
                    let row = (0..<classes.count).map { Double(z.floats[r * classes.count + $0]) }
                    let e = row.map { exp($0 - row.max()!) }
                    for c in mean.indices { mean[c] += e[c] / e.reduce(0, +) }
                }
                let vote = mean.indices.max { mean[$0] < mean[$1] }!
                if vote == batch.labels[r] { agree += 1 }
                total += 1
            }
        }
        XCTAssertEqual(Double(agree) / Double(total), result.ensemble.accuracy, accuracy: 1e-12)
    }

    func testCheckpointRejectsCorruptFiles() throws {
        let dir = try tempDir()
        let ck = Checkpoint(tensors: ["w": Tensor(shape: [2], floats: [1, 2])], facts: ["epoch": "1"])
        try ck.save(to: dir + "/c.bin")
        let back = try Checkpoint.load(from: dir + "/c.bin")
        XCTAssertEqual(back.tensors["w"]?.floatArray, [1, 2])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/c.bin"))
        for cut in [4, 20, bytes.count - 3] {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: dir + "/cut.bin"))
            XCTAssertThrowsError(try Checkpoint.load(from: dir + "/cut.bin")) { e in
                XCTAssertTrue(String(describing: e).contains("cut.bin"))
            }
        }
    }
}
