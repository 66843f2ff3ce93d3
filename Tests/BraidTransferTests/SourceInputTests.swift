import BraidData
import BraidGraph
import BraidKeras
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer
import BraidTestSupport

/// x `input` -> conv 3x3 (4) -> relu -> global average pool -> `tail` -> Gemm (3 classes).
/// `tail` is a Flatten, or (`bakedBatch`) a Reshape to the constant [1, 4] that PyTorch's
/// dynamo exporter writes when it traces at batch 1.
func writeTinyClassifier(to path: String, input: [Dim], bakedBatch: Bool = false, metadata: [String: String] = [:],
                         output: String = "y") throws {
    try exportONNX(tinyClassifier(input: input, bakedBatch: bakedBatch, output: output), to: path, metadata: metadata)
}

func tinyClassifier(input: [Dim], bakedBatch: Bool = false, output: String = "y") -> Graph {
    var rng = SplitMix64(seed: 3)
    func t(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-0.5, 0.5) }) }
    let conv = ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
    let tail = bakedBatch
        ? Node(name: "view", op: .reshape(allowZero: false), inputs: ["p", "target"], outputs: ["f"], sourceOp: "Reshape")
        : Node(name: "flat", op: .flatten(axis: 1), inputs: ["p"], outputs: ["f"], sourceOp: "Flatten")
    let g = Graph(name: "m", inputs: [ValueDecl(name: "input", dtype: .float32, shape: input)],
                  outputs: [ValueDecl(name: output, dtype: .float32, shape: nil)],
                  initializers: ["w": t([4, 3, 3, 3]), "b": t([4]), "wf": t([3, 4]), "bf": t([3]),
                                 "target": Tensor(shape: [2], ints: [1, 4])],
                  nodes: [
                    Node(name: "conv", op: .conv(conv), inputs: ["input", "w", "b"], outputs: ["c"], sourceOp: "Conv"),
                    Node(name: "relu", op: .unary(.relu), inputs: ["c"], outputs: ["r"], sourceOp: "Relu"),
                    Node(name: "pool", op: .globalPool(.average), inputs: ["r"], outputs: ["p"], sourceOp: "GlobalAveragePool"),
                    tail,
                    Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["f", "wf", "bf"],
                         outputs: [output], sourceOp: "Gemm"),
                  ])
    return g
}

/// What `SourceModel.load` makes of files it has no manifest entry for: symbolic spatial
/// dims with `--input-size`, a batch fixed at 1 by the exporter, and preprocessing from
/// flags, metadata, manifest or defaults, each with its source.
final class SourceInputTests: XCTestCase {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "braid-src-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// `[N, 3, H, W]`: without a size the error names the file and the `inputSize` setting
    /// (not a command-line flag); with one the
    /// model loads at that size and plans at any batch.
    func testSymbolicSpatialDimsNeedOnlyAnInputSize() throws {
        let path = try tempDir() + "/free.onnx"
        try writeTinyClassifier(to: path, input: [.symbol("N"), .fixed(3), .symbol("H"), .symbol("W")])
        XCTAssertThrowsError(try SourceModel.load(path: path, classes: 5, seed: 0, manifest: [])) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("free.onnx") && text.contains("input size") && text.contains("symbolic spatial dims"), text)
            XCTAssertFalse(text.contains("--"), text)
            XCTAssertEqual((e as? SettingError)?.setting, "inputSize")
        }
        let m = try SourceModel.load(path: path, classes: 5, seed: 0, manifest: [], inputSize: [20, 24])
        XCTAssertEqual(m.spec.sampleShape, [3, 20, 24])
        XCTAssertEqual(m.inputSources[.size], .flag)
        XCTAssertEqual(m.inputSources[.layout], .default)
        let plan = try Executor(graph: m.graph).plan(for: [m.inputName: (m.spec.batchShape(3), .float32)])
        XCTAssertEqual(plan.values["logits"]?.shape, [3, 5])
    }

    /// A file traced at batch 1 (Reshape to [1, 4]) fails at batch 6 as it is, and trains at
    /// batch 6 once loaded; each sample's features are what batch 1 gives it. Its output is
    /// called `logits`, as the new head's: the old classifier must not survive beside it.
    func testBatchOneExportLoadsForAnyBatch() throws {
        let path = try tempDir() + "/traced.onnx"
        try writeTinyClassifier(to: path, input: [.fixed(1), .fixed(3), .fixed(8), .fixed(8)], bakedBatch: true, output: "logits")
        let raw = try ModelFile.load(path: path)
        XCTAssertThrowsError(try Executor(graph: raw).plan(for: ["input": ([6, 3, 8, 8], .float32)]))
        let m = try SourceModel.load(path: path, classes: 2, seed: 1, manifest: [])
        XCTAssertEqual(m.graph.feedInputs.first?.shape?.first, .symbol("N"))
        XCTAssertEqual(m.graph.nodes.filter { $0.outputs.contains("logits") }.map(\.name), ["head.dense"])
        let x = Tensor(shape: [6, 3, 8, 8], floats: (0..<(6 * 192)).map { Float(($0 * 37) % 101) / 50 - 1 })
        let executor = Executor(graph: m.graph)
        let all = try XCTUnwrap(try executor.run([m.inputName: x])["logits"])
        XCTAssertEqual(all.shape, [6, 2])
        for i in [0, 5] {
            let one = Tensor(shape: [1, 3, 8, 8], floats: Array(x.floatArray[(i * 192)..<((i + 1) * 192)]))
            let alone = try XCTUnwrap(try executor.run([m.inputName: one])["logits"])
            for k in 0..<2 { XCTAssertEqual(all.floats[i * 2 + k], alone.floats[k], accuracy: 1e-5) }
        }
    }

    /// Flags over metadata over manifest over defaults, field by field.
    func testPreprocessingSourcesInOrder() throws {
        let dir = try tempDir()
        let path = dir + "/tagged.onnx"
        try writeTinyClassifier(to: path, input: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)],
                       metadata: ["input_range": "0..255", "input_channel_order": "BGR"])
        let graph = try ModelFile.load(path: path)
        let plain = try ResolvedInput.resolve(path: path, graph: graph, manifest: [])
        XCTAssertEqual(plain.spec.range, .byte)
        XCTAssertTrue(plain.spec.bgr)
        XCTAssertEqual(plain.sources, [.size: .default, .layout: .default, .range: .metadata, .mean: .default,
                                       .std: .default, .channelOrder: .metadata])
        let entry = ModelManifest(id: "tagged", fields: ["layout": "NCHW", "input_size": "3x8x8", "scale": "0.00392156862745098",
                                                         "mean": "0.5", "std": "0.25", "channel_order": "RGB"])
        var flags = PreprocessOverride()
        try flags.set(.channelOrder, "rgb")
        let r = try ResolvedInput.resolve(path: path, graph: graph, manifest: [entry], preprocess: flags)
        XCTAssertEqual(r.spec.mean, [0.5])
        XCTAssertEqual(r.spec.std, [0.25])
        XCTAssertEqual(r.spec.range, .byte)
        XCTAssertFalse(r.spec.bgr)
        XCTAssertEqual(r.sources, [.size: .manifest, .layout: .manifest, .range: .metadata, .mean: .manifest,
                                   .std: .manifest, .channelOrder: .flag])
        XCTAssertTrue(r.summary.contains("(size: manifest, layout: manifest, range: metadata"), r.summary)
        let report = r.report
        XCTAssertEqual(report.range, "0-255")
        XCTAssertEqual(report.sources["channel_order"], "flag")
        XCTAssertEqual(report.mean, [0.5])
        // A layout flag that does not fit the declared input is refused, naming the file.
        var nhwc = PreprocessOverride()
        try nhwc.set(.layout, "nhwc")
        XCTAssertThrowsError(try ResolvedInput.resolve(path: path, graph: graph, manifest: [], preprocess: nhwc)) { e in
            XCTAssertTrue("\(e)".contains("tagged.onnx") && "\(e)".contains("NHWC"), "\(e)")
        }
    }

    /// An experiment config's `preprocess` object decodes into the same typed settings.
    func testExperimentConfigPreprocess() throws {
        let json = #"{"sources": ["a"], "targets": ["digits"], "methods": ["standard"], "seeds": [0], "preprocess": {"a": {"mean": [1, 2, 3], "preprocess": "caffe", "channel_order": "rgb"}}}"#
        func parse(_ text: String) throws -> ExperimentConfig { try ExperimentConfig.parse(Data(text.utf8), defaultName: "t") }
        XCTAssertEqual(try parse(json).preprocess["a"], PreprocessOverride(mean: [1, 2, 3], std: [1], range: .byte, bgr: false))
        for (bad, expected) in [("[1, 2, 3]", "preprocess.a.mean takes 1 or 3"), ("\"channel_order\"", "unknown key 'colour'"),
                                ("\"preprocess\": {\"a\"", "'b' is not one of the sources")] {
            let replacement = ["[1, 2, 3]": "[1, 2]", "\"channel_order\"": "\"colour\"",
                               "\"preprocess\": {\"a\"": "\"preprocess\": {\"b\""][bad]!
            XCTAssertThrowsError(try parse(json.replacingOccurrences(of: bad, with: replacement))) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(e)")
            }
        }
    }

    /// A ViT-like file traced at batch 1 (patch embedding, a class token concatenated before
    /// the patches, position embeddings, the tokens' mean to the classifier) fine-tunes end to end at
    /// batch 32 on digits: the generalised graph's inserted Shape, Concat and Expand train.
    func testClassTokenModelTrainsAtBatch32() throws {
        try TestCache.require("data/digits.csv.gz", madeBy: "tools/fetch-data")
        let folder = TestCache.path("data")
        var rng = SplitMix64(seed: 4)
        func t(_ shape: [Int], _ scale: Float) -> Tensor {
            Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-scale, scale) })
        }
        let patch = ConvParams(kernel: [4, 4], strides: [4, 4], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1)
        let g = Graph(name: "vit", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(1), .fixed(8), .fixed(8)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                      initializers: ["pw": t([6, 1, 4, 4], 0.5), "pb": t([6], 0.1), "tokens_shape": Tensor(shape: [3], ints: [1, 6, 4]),
                                     "cls": t([1, 1, 6], 0.5), "cls_shape": Tensor(shape: [3], ints: [1, 1, 6]), "pos": t([1, 5, 6], 0.1),
                                     "wf": t([4, 6], 0.3), "bf": t([4], 0.1)],
                      nodes: [
                        Node(name: "embed", op: .conv(patch), inputs: ["x", "pw", "pb"], outputs: ["e"], sourceOp: "Conv"),
                        Node(name: "view", op: .reshape(allowZero: false), inputs: ["e", "tokens_shape"], outputs: ["v"], sourceOp: "Reshape"),
                        Node(name: "permute", op: .transpose(perm: [0, 2, 1]), inputs: ["v"], outputs: ["p"], sourceOp: "Transpose"),
                        Node(name: "expand", op: .expand, inputs: ["cls", "cls_shape"], outputs: ["c"], sourceOp: "Expand"),
                        Node(name: "cat", op: .concat(axis: 1), inputs: ["c", "p"], outputs: ["k"], sourceOp: "Concat"),
                        Node(name: "add", op: .binary(.add), inputs: ["k", "pos"], outputs: ["a"], sourceOp: "Add"),
                        Node(name: "act", op: .unary(.tanh), inputs: ["a"], outputs: ["h"], sourceOp: "Tanh"),
                        Node(name: "pool", op: .reduce(.mean, axes: [1], keepDims: false, noopWithEmptyAxes: false), inputs: ["h"],
                             outputs: ["z"], sourceOp: "ReduceMean"),
                        Node(name: "head", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["z", "wf", "bf"],
                             outputs: ["y"], sourceOp: "Gemm"),
                      ])
        let dir = try tempDir()
        try exportONNX(g, to: dir + "/vit.onnx")
        let opened = try DataCatalog.open("digits", dataFolder: folder)
        let split = try opened.splits(validationFraction: 0.1, testFraction: 0.2, seed: 3)
        let m = try SourceModel.load(path: dir + "/vit.onnx", classes: opened.classes.count, seed: 5, manifest: [])
        var o = TrainOptions()
        o.epochs = 1; o.batch = 32; o.lr = 0.05; o.seed = 9
        let tuner = try Finetuner(models: [m], depths: [0], classes: opened.classes, options: o, runDir: dir)
        let before = m.graph.initializers["pw"]!.floatArray
        try tuner.train(train: split.train, validation: split.validation, resume: false)
        XCTAssertEqual(tuner.history.count, 1)
        XCTAssertNotEqual(tuner.models[0].graph.initializers["pw"]!.floatArray, before, "the patch embedding trains")
        XCTAssertGreaterThan(try tuner.evaluateMembers(on: split.test).ensemble.accuracy, 0.2)
    }

    /// Braid's Keras exports keep their preprocessing in the file's `braid_metadata`.
    func testKerasMetadataIsRead() throws {
        let path = try tempDir() + "/tagged.h5"
        try exportKeras(tinyClassifier(input: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)]), to: path,
                        metadata: ["input_range": "-1..1", "input_channel_order": "BGR"])
        let r = try ResolvedInput.resolve(path: path, graph: try ModelFile.load(path: path), manifest: [])
        XCTAssertEqual(r.spec.range, .symmetric)
        XCTAssertTrue(r.spec.bgr)
        XCTAssertEqual(r.sources[.range], .metadata)
        XCTAssertEqual(r.sources[.channelOrder], .metadata)
        XCTAssertEqual(r.sources[.mean], .default)
    }
}
