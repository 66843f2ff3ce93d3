import BraidGraph
import BraidKeras
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// Keras -> Braid -> .h5 / .keras -> Braid: the re-imported model gives Braid's outputs,
/// which are Keras's outputs (the fixtures). When `BRAID_KERAS_EXPORT_DIR` is set, the
/// exported files, inputs and Braid's outputs are kept there for tools/check-keras-export,
/// which loads them in Keras 3 and compares.
class KerasExportCase: XCTestCase {
    /// Where exported files go: the checker's directory, or a fresh temporary one.
    static let outDir: URL = {
        if let d = ProcessInfo.processInfo.environment["BRAID_KERAS_EXPORT_DIR"] {
            let url = URL(fileURLWithPath: d)
            try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            return url
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("braid-keras-export-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    static var keepFiles: Bool { ProcessInfo.processInfo.environment["BRAID_KERAS_EXPORT_DIR"] != nil }

    /// Exports `graph` both ways, re-imports each file and checks it against Braid's own
    /// outputs on `inputs`; records inputs and outputs for the Keras-side check.
    func roundTrip(_ graph: Graph, name: String, inputs: [Tensor], inputShapes: [String: [Int]] = [:]) throws {
        let braid = try run(graph, inputs)
        let dir = Self.outDir
        for (i, x) in inputs.enumerated() { try Npy.write(x, path: dir.appendingPathComponent("\(name).in\(i).npy").path) }
        for (i, y) in braid.enumerated() { try Npy.write(y, path: dir.appendingPathComponent("\(name).out\(i).npy").path) }
        for ext in ["h5", "keras"] {
            let path = dir.appendingPathComponent("\(name).\(ext)").path
            try exportKeras(graph, to: path, inputShapes: inputShapes)
            let back = try importKeras(path: path)
            try assertClose(try run(back, inputs), braid, tolerance: 1e-5, "\(name).\(ext)")
            if !Self.keepFiles { try? FileManager.default.removeItem(atPath: path) }
        }
    }

    func run(_ graph: Graph, _ inputs: [Tensor]) throws -> [Tensor] {
        var feeds: [String: Tensor] = [:]
        for (d, t) in zip(graph.feedInputs, inputs) { feeds[d.name] = t }
        let out = try Executor(graph: graph).run(feeds)
        return graph.outputs.map { out[$0.name]! }
    }

}

final class KerasExportTests: KerasExportCase {
    func zoo(_ name: String) throws {
        let graph = try importKeras(path: KerasFixtures.path("\(name).h5"))
        let inputs = try KerasFixtures.arrays(name, "in")
        try assertMatchesKeras(graph, inputs: inputs, expected: try KerasFixtures.arrays(name, "out"), name)
        try roundTrip(graph, name: name, inputs: inputs)
    }

    func testSequentialMLP() throws { try zoo("seq_mlp") }
    func testMiniXceptionPattern() throws { try zoo("func_xception") }
    func testConvolutionVariants() throws { try zoo("seq_convs") }
    func testConv1DAndPooling1D() throws { try zoo("func_conv1d") }
    func testActivations() throws { try zoo("func_activations") }
    func testNormalisationLayers() throws { try zoo("seq_norms") }
    func testPooling2D() throws { try zoo("func_pooling") }
    func testDataMovementLayers() throws { try zoo("func_shapes") }
    func testMergesWithSeveralInputsAndOutputs() throws { try zoo("func_merges") }
    func testNestedModelsAndSharedLayer() throws { try zoo("func_nested") }

    func testFerMiniXception() throws {
        let path = try TestCache.require("models/fer_mini_xception.hdf5", madeBy: "tools/fetch-models")
        let graph = try importKeras(path: path)
        let x = try TestCache.reference("reference/fer_mini_xception/input_0.npy", madeBy: "tools/make-keras-fixtures")
        let y = try TestCache.reference("reference/fer_mini_xception/output_0.npy", madeBy: "tools/make-keras-fixtures")
        try assertMatchesKeras(graph, inputs: [x], expected: [y], "fer")
        try roundTrip(graph, name: "fer_mini_xception", inputs: [x])
    }

    /// The exporter names each op it cannot write, and writes nothing.
    func testUnmappableOpsAreListed() throws {
        let g = Graph(name: "odd", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4)])],
                      outputs: [ValueDecl(name: "z", dtype: .float32, shape: nil)], initializers: [:],
                      nodes: [Node(name: "s", op: .unary(.tan), inputs: ["x"], outputs: ["y"], sourceOp: "Tan"),
                              Node(name: "f", op: .unary(.atan), inputs: ["y"], outputs: ["z"], sourceOp: "Atan")])
        let path = Self.outDir.appendingPathComponent("odd.h5").path
        let text = errorText { try exportKeras(g, to: path) } ?? ""
        XCTAssertTrue(text.contains("2 ops have no Keras layer"), text)
        XCTAssertTrue(text.contains("s (Tan)") && text.contains("f (Atan)"), text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }
}
