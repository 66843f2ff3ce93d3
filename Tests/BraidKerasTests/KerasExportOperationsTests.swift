@testable import BraidKeras
import BraidGraph
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

/// IR ops no Keras layer computes, written as Keras 3 operation nodes: max pooling with
/// explicit or ceil-mode padding (`keras.ops.pad` with the lowest float, then a `valid`
/// MaxPooling2D), erf, reductions (L1 and L2 among them), one-sided clips, expands, pads,
/// matrix products, splits, and the batch-moving reshapes, gathers and inline constants of a
/// vision transformer. Each graph is checked through
/// Braid's own importer where it reads the nodes, and in Keras 3 itself (the cache's Keras
/// venv) against Braid's outputs of the source graph.
final class KerasExportOperationsTests: XCTestCase {
    let dir: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("braid-keras-ops-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    // MARK: Graphs

    static func input(_ dims: [Dim]) -> ValueDecl { ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N")] + dims) }
    static func output(_ name: String) -> ValueDecl { ValueDecl(name: name, dtype: .float32, shape: nil) }
    static func ints(_ v: [Int]) -> Tensor { Tensor(shape: [v.count], ints: v.map(Int64.init)) }

    /// ResNet's stem pooling (kernel 3, stride 2, pads 1) and GoogLeNet's ceil-mode pooling.
    static func pooling() -> Graph {
        func pool(_ pads: [Int], ceil: Bool) -> Op {
            .pool(PoolParams(kind: .max, kernel: [3, 3], strides: [2, 2], pads: pads, dilations: [1, 1], autoPad: .explicit,
                             ceilMode: ceil, countIncludePad: false))
        }
        return Graph(name: "pooling", inputs: [input([.fixed(2), .fixed(8), .fixed(8)])], outputs: [output("padded"), output("ceil")],
                     initializers: [:],
                     nodes: [Node(name: "pool_pads", op: pool([1, 1, 1, 1], ceil: false), inputs: ["x"], outputs: ["padded"], sourceOp: "MaxPool"),
                             Node(name: "pool_ceil", op: pool([0, 0, 0, 0], ceil: true), inputs: ["x"], outputs: ["ceil"], sourceOp: "MaxPool")])
    }

    /// Erf (exact GELU's), a rank-4 product of two computed tensors (no Dot layer), a mean
    /// over the last axis, and a split of the features into unequal parts.
    static func arithmetic() -> Graph {
        Graph(name: "arithmetic", inputs: [input([.fixed(2), .fixed(4), .fixed(6)])], outputs: [output("mean"), output("a"), output("b")],
              initializers: ["sizes": ints([2, 4])],
              nodes: [Node(name: "erf", op: .unary(.erf), inputs: ["x"], outputs: ["e"], sourceOp: "Erf"),
                      Node(name: "t", op: .transpose(perm: [0, 1, 3, 2]), inputs: ["x"], outputs: ["xt"], sourceOp: "Transpose"),
                      Node(name: "mm", op: .matMul, inputs: ["e", "xt"], outputs: ["m"], sourceOp: "MatMul"),
                      Node(name: "mean", op: .reduce(.mean, axes: [3], keepDims: true, noopWithEmptyAxes: false), inputs: ["m"],
                           outputs: ["mean"], sourceOp: "ReduceMean"),
                      Node(name: "split", op: .split(axis: 3, count: 2), inputs: ["e", "sizes"], outputs: ["a", "b"], sourceOp: "Split")])
    }

    /// A vision transformer's batch-moving steps: the class token expanded to the batch and
    /// concatenated, a position embedding added (a constant varying along two axes), a reshape
    /// that merges the batch with the tokens and back, a transpose that moves the batch and a
    /// gather along the new first axis, a slice of the features, and a reshape of the
    /// sequence-first tensor (batch on axis 1, as in TorchScript's attention).
    static func transformer() -> Graph {
        var generator = SplitMix64(seed: 7)
        let cls = Tensor(shape: [1, 1, 6], floats: (0..<6).map { _ in generator.uniform(-1, 1) })
        let pos = Tensor(shape: [1, 5, 6], floats: (0..<30).map { _ in generator.uniform(-1, 1) })
        return Graph(name: "transformer", inputs: [input([.fixed(4), .fixed(6)])], outputs: [output("picked"), output("sliced"), output("unflat")],
                     initializers: ["cls": cls, "pos": pos, "tail": ints([1, 6]), "flat": ints([-1, 6]), "back": ints([-1, 5, 6]),
                                    "starts": ints([1]), "ends": ints([5]), "axes": ints([2]), "steps": ints([2]),
                                    "one": Tensor(shape: [], ints: [1]), "split_heads": ints([0, 0, 2, 3])],
                     nodes: [Node(name: "shape", op: .shape(start: 0, end: 1), inputs: ["x"], outputs: ["n"], sourceOp: "Shape"),
                             Node(name: "cat_shape", op: .concat(axis: 0), inputs: ["n", "tail"], outputs: ["cls_shape"], sourceOp: "Concat"),
                             Node(name: "expand", op: .expand, inputs: ["cls", "cls_shape"], outputs: ["cls_n"], sourceOp: "Expand"),
                             Node(name: "cat", op: .concat(axis: 1), inputs: ["cls_n", "x"], outputs: ["tokens"], sourceOp: "Concat"),
                             Node(name: "add_pos", op: .binary(.add), inputs: ["tokens", "pos"], outputs: ["embedded"], sourceOp: "Add"),
                             Node(name: "flat", op: .reshape(allowZero: false), inputs: ["embedded", "flat"], outputs: ["rows"], sourceOp: "Reshape"),
                             Node(name: "erf", op: .unary(.erf), inputs: ["rows"], outputs: ["rows_e"], sourceOp: "Erf"),
                             Node(name: "back", op: .reshape(allowZero: false), inputs: ["rows_e", "back"], outputs: ["h"], sourceOp: "Reshape"),
                             Node(name: "swap", op: .transpose(perm: [1, 0, 2]), inputs: ["h"], outputs: ["h_t"], sourceOp: "Transpose"),
                             Node(name: "pick", op: .gather(axis: 0), inputs: ["h_t", "one"], outputs: ["picked"], sourceOp: "Gather"),
                             Node(name: "slice", op: .slice, inputs: ["h", "starts", "ends", "axes", "steps"], outputs: ["sliced"], sourceOp: "Slice"),
                             Node(name: "heads", op: .reshape(allowZero: false), inputs: ["h_t", "split_heads"], outputs: ["unflat"],
                                  sourceOp: "Reshape")])
    }

    /// Swin V2's cosine attention and window padding: `F.normalize` (an L2 reduction, a
    /// one-sided clip at eps, an expand back to the input's shape), an L1 reduction and a sum
    /// of squares, a clip from above, and a constant pad (non-zero fill) of a channels-last
    /// view along the channels and one spatial axis.
    static func normalization() -> Graph {
        Graph(name: "normalization", inputs: [input([.fixed(2), .fixed(5), .fixed(6)])],
              outputs: [output("normalized"), output("l1"), output("squares"), output("capped"), output("padded")],
              initializers: ["eps": Tensor(shape: [], floats: [0.75]), "cap": Tensor(shape: [], floats: [0.3]),
                             "like": ints([1, 2, 5, 6]), "pads": ints([0, 1, 0, 2, 0, 0, 1, 1]),
                             "fill": Tensor(shape: [], floats: [0.25])],
              nodes: [Node(name: "l2", op: .reduce(.l2, axes: [3], keepDims: true, noopWithEmptyAxes: false), inputs: ["x"],
                           outputs: ["norm"], sourceOp: "ReduceL2"),
                      Node(name: "clamp_min", op: .clip, inputs: ["norm", "eps", ""], outputs: ["clamped"], sourceOp: "Clip"),
                      Node(name: "expand", op: .expand, inputs: ["clamped", "like"], outputs: ["wide"], sourceOp: "Expand"),
                      Node(name: "div", op: .binary(.div), inputs: ["x", "wide"], outputs: ["normalized"], sourceOp: "Div"),
                      Node(name: "l1", op: .reduce(.l1, axes: [1], keepDims: false, noopWithEmptyAxes: false), inputs: ["x"],
                           outputs: ["l1"], sourceOp: "ReduceL1"),
                      Node(name: "squares", op: .reduce(.sumSquare, axes: [2, 3], keepDims: true, noopWithEmptyAxes: false),
                           inputs: ["x"], outputs: ["squares"], sourceOp: "ReduceSumSquare"),
                      Node(name: "clamp_max", op: .clip, inputs: ["x", "", "cap"], outputs: ["capped"], sourceOp: "Clip"),
                      Node(name: "nhwc", op: .transpose(perm: [0, 2, 3, 1]), inputs: ["x"], outputs: ["xt"], sourceOp: "Transpose"),
                      Node(name: "pad", op: .pad(mode: .constant), inputs: ["xt", "pads", "fill"], outputs: ["padded"], sourceOp: "Pad")])
    }

    // MARK: Helpers

    func run(_ graph: Graph, _ x: Tensor) throws -> [Tensor] {
        let out = try Executor(graph: graph).run([graph.feedInputs[0].name: x])
        return graph.outputs.map { out[$0.name]! }
    }

    /// Inputs of one sign so that a zero fill in a max pool's padding would show.
    func sample(_ shape: [Int], seed: UInt64, negative: Bool = false) -> Tensor {
        var generator = SplitMix64(seed: seed)
        return Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in
            negative ? generator.uniform(-3, -0.5) : generator.uniform(-2, 2)
        })
    }

    /// The written model's layer entries (class name, module) from a `.keras` file's config.
    func writtenLayers(_ graph: Graph, _ name: String) throws -> [[String: Any]] {
        let model = try buildKerasModel(graph, path: "\(name).keras", inputShapes: [:])
        let config = modelConfig(model)
        return try XCTUnwrap((config["config"] as? [String: Any])?["layers"] as? [[String: Any]])
    }

    // MARK: Through Braid's importer

    func testPaddedAndCeilModeMaxPoolingRoundTrip() throws {
        let g = Self.pooling()
        let x = sample([2, 2, 8, 8], seed: 1, negative: true)
        let want = try run(g, x)
        XCTAssertEqual(want[0].shape, [2, 2, 4, 4])
        XCTAssertEqual(want[1].shape, [2, 2, 4, 4])
        let layers = try writtenLayers(g, "pooling")
        let pads = layers.filter { $0["class_name"] as? String == "Pad" }
        XCTAssertEqual(pads.count, 2)
        XCTAssertTrue(pads.allSatisfy { $0["module"] as? String == "keras.src.ops.numpy" })
        XCTAssertEqual(layers.filter { $0["class_name"] as? String == "MaxPooling2D" }.count, 2)
        XCTAssertFalse(layers.contains { $0["class_name"] as? String == "Lambda" })
        for ext in ["keras", "h5"] {
            let path = dir.appendingPathComponent("pooling.\(ext)").path
            try exportKeras(g, to: path)
            try assertClose(try run(try importKeras(path: path), x), want, tolerance: 0, "pooling.\(ext)")
        }
    }

    func testErfMatmulMeanAndSplitRoundTrip() throws {
        let g = Self.arithmetic()
        let x = sample([3, 2, 4, 6], seed: 2)
        let want = try run(g, x)
        let classes = try writtenLayers(g, "arithmetic").compactMap { $0["class_name"] as? String }
        for op in ["Erf", "Matmul", "Mean", "Split"] { XCTAssertTrue(classes.contains(op), "\(op) missing from \(classes)") }
        let path = dir.appendingPathComponent("arithmetic.keras").path
        try exportKeras(g, to: path)
        try assertClose(try run(try importKeras(path: path), x), want, tolerance: 1e-6, "arithmetic.keras")
    }

    /// Every op of the Swin V2 graph is written, none as a Lambda.
    func testNormalizeClipExpandAndPadAreWritten() throws {
        let g = Self.normalization()
        let x = sample([3, 2, 5, 6], seed: 6)
        let want = try run(g, x)
        XCTAssertEqual(want[4].shape, [3, 6, 7, 5])
        let layers = try writtenLayers(g, "normalization")
        let classes = layers.compactMap { $0["class_name"] as? String }
        for op in ["Square", "Sqrt", "Absolute", "Maximum", "Minimum", "Multiply", "Pad"] {
            XCTAssertTrue(classes.contains(op), "\(op) missing from \(classes)")
        }
        XCTAssertFalse(classes.contains("Lambda"))
        // The ones of the expand span only the expanded axis.
        let multiply = try XCTUnwrap(layers.first { $0["class_name"] as? String == "Multiply" })
        let operand = try XCTUnwrap(((multiply["inbound_nodes"] as? [[String: Any]])?.first?["args"] as? [Any])?.last as? [String: Any])
        func leaves(_ v: Any?) -> Int { (v as? [Any]).map { $0.reduce(0) { $0 + leaves($1) } } ?? 1 }
        XCTAssertEqual(leaves((operand["config"] as? [String: Any])?["value"]), 6)
        // Braid's Keras reader takes no inline array operands (the expand's ones), so Keras
        // itself checks the values: testKerasComputesTheWrittenOperations.
    }

    /// The transformer graph is written (every op as a layer or an operation node) with -1
    /// where its reshapes meet the batch, and its constants inline.
    func testBatchMovingOperationsAreWritten() throws {
        let layers = try writtenLayers(Self.transformer(), "transformer")
        func entries(_ cls: String) -> [[String: Any]] { layers.filter { $0["class_name"] as? String == cls } }
        let shapes = entries("Reshape").compactMap { ($0["config"] as? [String: Any])?["newshape"] as? [Int] }
        XCTAssertEqual(shapes, [[-1, 6], [-1, 5, 6], [5, -1, 2, 3]])
        XCTAssertTrue(entries("Transpose").contains { (($0["config"] as? [String: Any])?["axes"] as? [Int])?.first != 0 })
        XCTAssertEqual(entries("Take").count, 3, "class-token rows, the gather, the slice")
        XCTAssertEqual(entries("ZerosLike").count, 1)
        XCTAssertFalse(layers.contains { $0["class_name"] as? String == "Lambda" })
    }

    /// Bad input still fails whole: an op neither a layer nor an operation node computes is
    /// named with both reasons, and nothing is written.
    func testOpWithNeitherLayerNorOperationIsNamed() throws {
        let g = Graph(name: "bad", inputs: [Self.input([.fixed(4)])], outputs: [Self.output("y")], initializers: [:],
                      nodes: [Node(name: "tan", op: .unary(.tan), inputs: ["x"], outputs: ["y"], sourceOp: "Tan")])
        let path = dir.appendingPathComponent("bad.keras").path
        XCTAssertThrowsError(try exportKeras(g, to: path)) { e in
            XCTAssertTrue("\(e)".contains("tan (Tan)") && "\(e)".contains("as a Keras operation"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }

    // MARK: In Keras

    /// Keras 3 (the cache's venv, jax backend) loads each written `.keras` file and computes
    /// what Braid computes for the source graph, at batch 2.
    func testKerasComputesTheWrittenOperations() throws {
        let python = try TestCache.require("keras-venv/bin/python", madeBy: "tools/make-keras-fixtures")
        var cases: [(Graph, Tensor)] = [(Self.pooling(), sample([2, 2, 8, 8], seed: 3, negative: true)),
                                        (Self.arithmetic(), sample([2, 2, 4, 6], seed: 4)),
                                        (Self.transformer(), sample([2, 4, 6], seed: 5)),
                                        (Self.normalization(), sample([2, 2, 5, 6], seed: 7))]
        var args: [String] = []
        for (i, (g, x)) in cases.enumerated() {
            let model = dir.appendingPathComponent("\(g.name).keras").path
            try exportKeras(g, to: model)
            try Npy.write(x, path: dir.appendingPathComponent("\(g.name).in.npy").path)
            args.append(model)
            cases[i].1 = x
        }
        let script = """
        import os, sys
        os.environ["KERAS_BACKEND"] = "jax"
        import numpy as np, keras
        for path in sys.argv[1:]:
            model = keras.saving.load_model(path, compile=False)
            ys = model.predict(np.load(path[:-len(".keras")] + ".in.npy"), verbose=0)
            for i, y in enumerate(ys if isinstance(ys, (list, tuple)) else [ys]):
                np.save(path[:-len(".keras")] + f".keras{i}.npy", np.asarray(y, dtype=np.float32))
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script] + args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "Keras failed: \(errText.suffix(2000))")
        guard p.terminationStatus == 0 else { return }
        for (g, x) in cases {
            let want = try run(g, x)
            let got = try (0..<want.count).map { try Npy.read(path: dir.appendingPathComponent("\(g.name).keras\($0).npy").path) }
            try assertClose(got, want, tolerance: 1e-5, "\(g.name) in Keras")
        }
    }
}
