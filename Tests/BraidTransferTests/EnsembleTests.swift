import BraidData
import BraidGraph
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer
import BraidTestSupport

/// The exported ensemble: one graph with the members' input adaptation as ops, checked
/// against running each member on images adapted by BraidData's `InputSpec`; export and
/// re-import; onnxruntime and the ONNX checker through tools/check-ensemble-export.
final class EnsembleTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "braid-ens-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    static func random(_ shape: [Int], _ lo: Float, _ hi: Float, _ rng: inout SplitMix64) -> Tensor {
        Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(lo, hi) })
    }

    /// Gray NCHW source: x [N, 1, 16, 16] -> conv 3x3 (6) -> BN -> relu -> maxpool 2 ->
    /// flatten (384) -> dense (4) -> softmax.
    static func writeGrayModel(to path: String) throws {
        var rng = SplitMix64(seed: 21)
        let nodes = [
            Node(name: "c1", op: .conv(ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)),
                 inputs: ["x", "w1", "b1"], outputs: ["h1"], sourceOp: "Conv"),
            Node(name: "bn1", op: .batchNorm(epsilon: 1e-5), inputs: ["h1", "s1", "o1", "m1", "v1"], outputs: ["h2"], sourceOp: "BatchNormalization"),
            Node(name: "r1", op: .unary(.relu), inputs: ["h2"], outputs: ["h3"], sourceOp: "Relu"),
            Node(name: "p1", op: .pool(PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1],
                                                  autoPad: .explicit, ceilMode: false, countIncludePad: false)),
                 inputs: ["h3"], outputs: ["h4"], sourceOp: "MaxPool"),
            Node(name: "flat", op: .flatten(axis: 1), inputs: ["h4"], outputs: ["h5"], sourceOp: "Flatten"),
            Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["h5", "wf", "bf"], outputs: ["z"], sourceOp: "Gemm"),
            Node(name: "sm", op: .softmax(.softmax, axis: 1, coerce2D: false), inputs: ["z"], outputs: ["y"], sourceOp: "Softmax"),
        ]
        let g = Graph(name: "gray",
                      inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1), .fixed(16), .fixed(16)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                      initializers: ["w1": random([6, 1, 3, 3], -0.5, 0.5, &rng), "b1": random([6], -0.1, 0.1, &rng),
                                     "s1": random([6], 0.5, 1.5, &rng), "o1": random([6], -0.1, 0.1, &rng),
                                     "m1": random([6], -0.2, 0.2, &rng), "v1": random([6], 0.5, 1.5, &rng),
                                     "wf": random([4, 384], -0.1, 0.1, &rng), "bf": random([4], -0.1, 0.1, &rng)],
                      nodes: nodes)
        try exportONNX(g, to: path)
    }

    /// RGB NHWC source (a Keras-style layout): x [N, 12, 10, 3] -> transpose to NCHW ->
    /// conv 3x3 (5) -> relu -> global average pool -> flatten -> dense (7) -> softmax.
    static func writeRGBModel(to path: String) throws {
        var rng = SplitMix64(seed: 22)
        let nodes = [
            Node(name: "t", op: .transpose(perm: [0, 3, 1, 2]), inputs: ["x"], outputs: ["h0"], sourceOp: "Transpose"),
            Node(name: "c1", op: .conv(ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)),
                 inputs: ["h0", "w1", "b1"], outputs: ["h1"], sourceOp: "Conv"),
            Node(name: "r1", op: .unary(.relu), inputs: ["h1"], outputs: ["h2"], sourceOp: "Relu"),
            Node(name: "gp", op: .globalPool(.average), inputs: ["h2"], outputs: ["h3"], sourceOp: "GlobalAveragePool"),
            Node(name: "flat", op: .flatten(axis: 1), inputs: ["h3"], outputs: ["h4"], sourceOp: "Flatten"),
            Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["h4", "wf", "bf"], outputs: ["z"], sourceOp: "Gemm"),
            Node(name: "sm", op: .softmax(.softmax, axis: 1, coerce2D: false), inputs: ["z"], outputs: ["y"], sourceOp: "Softmax"),
        ]
        let g = Graph(name: "rgb",
                      inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(12), .fixed(10), .fixed(3)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                      initializers: ["w1": random([5, 3, 3, 3], -0.5, 0.5, &rng), "b1": random([5], -0.1, 0.1, &rng),
                                     "wf": random([7, 5], -0.5, 0.5, &rng), "bf": random([7], -0.1, 0.1, &rng)],
                      nodes: nodes)
        try exportONNX(g, to: path)
    }

    static let classes = ["zero", "one", "two"]

    /// Two fine-tuning members: the gray NCHW model (16x16, default 0...1 scaling) and the RGB
    /// NHWC model (12x10) given BGR order and per-channel mean/std.
    func members(in dir: String) throws -> [SourceModel] {
        try Self.writeGrayModel(to: dir + "/gray.onnx")
        try Self.writeRGBModel(to: dir + "/rgb.onnx")
        let a = try SourceModel.load(path: dir + "/gray.onnx", classes: 3, seed: 1, manifest: [])
        var b = try SourceModel.load(path: dir + "/rgb.onnx", classes: 3, seed: 2, manifest: [])
        XCTAssertEqual(a.spec, InputSpec(channels: 1, height: 16, width: 16, layout: .nchw))
        XCTAssertEqual(b.spec.layout, .nhwc)
        b.spec = InputSpec(channels: 3, height: 12, width: 10, layout: .nhwc, scale: 1.0 / 255,
                           mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], bgr: true)
        return [a, b]
    }

    /// Sum of member logits for each image, members run separately on `InputSpec.adapt`.
    func reference(_ members: [SourceModel], _ images: [Tensor]) throws -> (sum: [[Float]], each: [[[Float]]]) {
        var sum: [[Float]] = [], each: [[[Float]]] = []
        for image in images {
            var s = [Float](repeating: 0, count: 3), per: [[Float]] = []
            for m in members {
                let out = try Executor(graph: m.graph).run([m.inputName: m.spec.adapt(image)])
                let z = try XCTUnwrap(out["logits"]).floatArray
                per.append(z)
                for k in 0..<3 { s[k] += z[k] }
            }
            sum.append(s); each.append(per)
        }
        return (sum, each)
    }

    func batch(_ images: [Tensor]) -> Tensor {
        let shape = images[0].shape
        return Tensor(shape: [images.count] + shape, floats: images.flatMap(\.floatArray))
    }

    func testEnsembleGraphMatchesSeparateMembers() throws {
        let dir = try tempDir()
        let ms = try members(in: dir)
        var rng = SplitMix64(seed: 5)
        // RGB 20x14 (both members downscale one axis and upscale the other) and gray 28x28.
        for image in [EnsembleImage(channels: 3, height: 20, width: 14), EnsembleImage(channels: 1, height: 28, width: 28)] {
            let images = (0..<3).map { _ in Self.random([image.channels, image.height, image.width], 0, 255, &rng) }
            let g = try ensembleGraph(members: ms, classes: Self.classes,
                                      imageShape: (image.channels, image.height, image.width))
            XCTAssertEqual(g.outputs.map(\.name), ["logits", "probabilities", "gray", "rgb"])
            let out = try Executor(graph: g).run(["image": batch(images)])
            let ref = try reference(ms, images)
            assertClose(try XCTUnwrap(out["logits"]).floatArray, ref.sum.flatMap { $0 }, tolerance: 1e-4, "ensemble logits \(image)")
            assertClose(try XCTUnwrap(out["gray"]).floatArray, ref.each.flatMap { $0[0] }, tolerance: 1e-4, "gray member \(image)")
            assertClose(try XCTUnwrap(out["rgb"]).floatArray, ref.each.flatMap { $0[1] }, tolerance: 1e-4, "rgb member \(image)")
            let p = try XCTUnwrap(out["probabilities"]).floatArray
            for (i, z) in ref.sum.enumerated() {
                let e = z.map { exp($0 - z.max()!) }
                assertClose(Array(p[(3 * i)..<(3 * i + 3)]), e.map { $0 / e.reduce(0, +) }, tolerance: 1e-5, "probabilities \(i)")
            }
        }
    }

    /// The adaptation ops alone (an identity member) against `InputSpec.adapt`: resize
    /// down and up, gray<->RGB, BGR, per-channel normalisation, NHWC. Measured worst
    /// difference 7.2e-7 (float rounding of the folded 1x1 convolution).
    func testAdaptationOpsMatchInputSpec() throws {
        var rng = SplitMix64(seed: 9)
        let identity = Graph(name: "id", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
                             outputs: [ValueDecl(name: "logits", dtype: .float32, shape: nil)], initializers: [:],
                             nodes: [Node(name: "i", op: .identity, inputs: ["x"], outputs: ["logits"], sourceOp: "Identity")])
        let specs = [InputSpec(channels: 1, height: 16, width: 16),
                     InputSpec(channels: 3, height: 48, width: 192, mean: [0.5], std: [0.5]),
                     InputSpec(channels: 3, height: 12, width: 10, layout: .nhwc, mean: [0.485, 0.456, 0.406],
                               std: [0.229, 0.224, 0.225], bgr: true)]
        for (c, h, w) in [(3, 20, 14), (1, 28, 28), (1, 7, 33)] {
            for spec in specs {
                let g = try ensembleGraph(members: [EnsembleMember(name: "a", graph: identity, inputName: "x", spec: spec)],
                                          classes: ["a"], image: EnsembleImage(channels: c, height: h, width: w))
                let image = Self.random([c, h, w], 0, 255, &rng)
                let got = try XCTUnwrap(try Executor(graph: g).run(["image": image.reshaped([1, c, h, w])])["a"])
                XCTAssertEqual(got.shape, spec.batchShape(1))
                assertClose(got.floatArray, spec.adapt(image).floatArray, tolerance: 1e-5, "\(c)x\(h)x\(w) -> \(spec)")
            }
        }
    }

    func testChannelMapIsIdentityOnlyForPlainInputs() {
        XCTAssertNil(channelMap(InputSpec(channels: 3, height: 1, width: 1, scale: 1), from: 3))
        let luma = channelMap(InputSpec(channels: 1, height: 1, width: 1, scale: 1), from: 3)
        XCTAssertEqual(luma?.weight, [0.299, 0.587, 0.114])
        let bgr = channelMap(InputSpec(channels: 3, height: 1, width: 1, scale: 2, mean: [1, 2, 3], std: [1, 1, 2], bgr: true), from: 1)
        XCTAssertEqual(bgr?.weight, [2, 2, 1])
        // mean and std index the model's channel order (after the BGR swap), as in InputSpec.write.
        XCTAssertEqual(bgr?.bias, [-1, -2, -1.5])
    }

    /// A run directory as `braid finetune` leaves it: run.json and a checkpoint holding each
    /// member's parameters (perturbed, so export must load them).
    func writeRunDir(_ dir: String, members ms: [SourceModel]) throws -> String {
        let run = dir + "/run"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        var o = TrainOptions()
        o.method = .standard; o.seed = 1
        // buildModels seeds member j with options.seed + j; the members above used 1 and 2.
        let record = RunRecord(sources: ms.map(\.path), featureNodes: [nil, nil], data: "nowhere",
                               classes: Self.classes, depths: [0, 1], options: o)
        try record.save(runDir: run)
        var tensors: [String: Tensor] = [:]
        for (j, m) in ms.enumerated() {
            for (name, t) in m.graph.initializers where t.dtype.isFloat {
                tensors["m\(j)/\(name)"] = Tensor(shape: t.shape, floats: t.floatArray.map { $0 * 1.1 })
            }
        }
        try Checkpoint(tensors: tensors, facts: ["braid_version": braidVersion]).save(to: run + "/checkpoint.bin")
        return run
    }

    func testRunDirectoryExportsAndReimports() throws {
        let dir = try tempDir()
        let ms = try members(in: dir)
        let run = try writeRunDir(dir, members: ms)
        let trained = try TrainedRun.load(runDir: run, manifest: [])
        let w = try XCTUnwrap(trained.members[0].graph.initializers["head.weight"] ?? trained.members[0].graph.initializers.first?.value)
        XCTAssertNotNil(w)
        XCTAssertNil(trained.datasetImage(), "the recorded dataset does not exist here")
        let image = EnsembleImage(channels: 1, height: 28, width: 28)
        let (g, info) = try trained.ensemble(image: image)
        XCTAssertEqual(info.members, ["gray", "rgb"])
        XCTAssertEqual(EnsembleInfo(metadata: info.metadata), info)
        let path = dir + "/ensemble.onnx"
        try ONNXExporter(opset: 17, metadata: info.metadata, producerVersion: braidVersion)
            .write(try Passes.optimizeForInference(g), to: path)
        let back = try ONNXImporter(constantsAsInitializers: true).importModel(path: path)
        XCTAssertEqual(EnsembleInfo(metadata: back.metadata), info)
        var rng = SplitMix64(seed: 8)
        let x = Self.random([2, 1, 28, 28], 0, 255, &rng)
        let a = try Executor(graph: g).run(["image": x])
        let b = try Executor(graph: back).run(["image": x])
        for name in g.outputs.map(\.name) {
            assertClose(try XCTUnwrap(b[name]).floatArray, try XCTUnwrap(a[name]).floatArray, tolerance: 1e-5, "re-imported \(name)")
        }
        // The checkpoint's (scaled) parameters are what runs, not the freshly built heads.
        let fresh = try ensembleGraph(members: ms, classes: Self.classes, imageShape: (1, 28, 28))
        let f = try Executor(graph: fresh).run(["image": x])
        XCTAssertNotEqual(try XCTUnwrap(f["logits"]).floatArray, try XCTUnwrap(a["logits"]).floatArray)

        let one = try trained.ensemble(image: image, member: "rgb")
        XCTAssertEqual(one.graph.outputs.map(\.name), ["logits", "probabilities", "rgb"])
        XCTAssertThrowsError(try trained.ensemble(image: image, member: "nope")) { e in
            XCTAssertTrue(String(describing: e).contains("gray, rgb"), "\(e)")
        }
    }

    func testIncompleteOrForeignRunDirectoriesAreRejected() throws {
        let dir = try tempDir()
        let ms = try members(in: dir)
        XCTAssertThrowsError(try TrainedRun.load(runDir: dir + "/missing", manifest: [])) { e in
            XCTAssertTrue(String(describing: e).contains("no such run directory"), "\(e)")
        }
        XCTAssertThrowsError(try TrainedRun.load(runDir: dir, manifest: [])) { e in
            XCTAssertTrue(String(describing: e).contains("no run.json"), "\(e)")
        }
        let run = try writeRunDir(dir, members: ms)
        try FileManager.default.removeItem(atPath: run + "/checkpoint.bin")
        XCTAssertThrowsError(try TrainedRun.load(runDir: run, manifest: [])) { e in
            XCTAssertTrue(String(describing: e).contains("no checkpoint.bin"), "\(e)")
        }
        var record = try RunRecord.load(runDir: run)
        record.braidVersion = "0.0.1"
        try record.save(runDir: run)
        XCTAssertThrowsError(try TrainedRun.load(runDir: run, manifest: [])) { e in
            XCTAssertTrue(String(describing: e).contains("Braid 0.0.1"), "\(e)")
        }
    }

    func testMetadataWithoutPreprocessingIsNotAnEnsemble() {
        XCTAssertNil(EnsembleInfo(metadata: [:]))
        XCTAssertNil(EnsembleInfo(metadata: ["meta.classes": "[\"a\"]", "meta.input_range": "0..255", "meta.input_layout": "NCHW",
                                             "meta.input_channels": "2", "meta.input_height": "4", "meta.input_width": "4"]))
        let ok = EnsembleInfo(metadata: ["meta.classes": "[\"a\"]", "meta.input_range": "0..255", "meta.input_layout": "NCHW",
                                         "meta.input_channels": "3", "meta.input_height": "4", "meta.input_width": "5"])
        XCTAssertEqual(ok?.image, EnsembleImage(channels: 3, height: 4, width: 5))
    }
}
