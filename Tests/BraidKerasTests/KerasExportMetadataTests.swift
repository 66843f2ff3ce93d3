@testable import BraidKeras
import BraidGraph
import BraidTensor
import Foundation
import XCTest

/// Braid's metadata survives a Keras export (both containers), and output layers carry the
/// graph's output names.
final class KerasExportMetadataTests: XCTestCase {
    let dir: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("braid-keras-meta-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// x [N, 4] -> MatMul w [4, 3] -> `logits`; Softmax -> `probabilities`.
    func graph() -> Graph {
        let w = Tensor(shape: [4, 3], floats: (0..<12).map { Float($0) * 0.1 - 0.5 })
        return Graph(name: "tiny", inputs: [ValueDecl(name: "image", dtype: .float32, shape: [.symbol("N"), .fixed(4)])],
                     outputs: [ValueDecl(name: "logits", dtype: .float32, shape: nil),
                               ValueDecl(name: "probabilities", dtype: .float32, shape: nil)],
                     initializers: ["w": w],
                     nodes: [Node(name: "dense", op: .matMul, inputs: ["image", "w"], outputs: ["logits"], sourceOp: "MatMul"),
                             Node(name: "softmax", op: .softmax(.softmax, axis: 1, coerce2D: false), inputs: ["logits"],
                                  outputs: ["probabilities"], sourceOp: "Softmax")])
    }

    func testMetadataAndOutputNamesRoundTrip() throws {
        let meta = ["classes": "[\"a\",\"b\",\"c\"]", "input_layout": "NCHW", "note": "ünï \"quoted\""]
        let x = Tensor(shape: [2, 4], floats: [1, 2, 3, 4, -1, 0, 5, 2])
        let want = try Executor(graph: graph()).run(["image": x])
        for ext in ["h5", "keras"] {
            let path = dir.appendingPathComponent("m.\(ext)").path
            try exportKeras(graph(), to: path, metadata: meta)
            XCTAssertEqual(try kerasFileMetadata(path: path), meta, ext)
            let back = try importKeras(path: path)
            XCTAssertEqual(back.outputs.map(\.name), ["logits", "probabilities"], ext)
            let got = try Executor(graph: back).run([back.feedInputs[0].name: x])
            for name in ["logits", "probabilities"] {
                let a = try XCTUnwrap(got[name]).floatArray, b = try XCTUnwrap(want[name]).floatArray
                XCTAssertEqual(a.count, b.count)
                for (u, v) in zip(a, b) { XCTAssertEqual(u, v, accuracy: 1e-6, "\(ext) \(name)") }
            }
        }
    }

    func testFilesWithoutMetadataGiveNone() throws {
        let path = dir.appendingPathComponent("plain.h5").path
        try exportKeras(graph(), to: path)
        XCTAssertEqual(try kerasFileMetadata(path: path), [:])
        XCTAssertEqual(try kerasFileMetadata(path: KerasFixtures.path("func_activations.keras")), [:])
        XCTAssertThrowsError(try kerasFileMetadata(path: dir.appendingPathComponent("none.h5").path)) { e in
            XCTAssertTrue("\(e)".contains("none.h5"), "\(e)")
        }
    }

    func testOutputLayerKeepsItsNameWhenTaken() {
        let t = XTensor(layer: "dense", shape: [nil, 3], perm: [0, 1])
        let layers = [KLayer(name: "image", className: "InputLayer", config: [:], weights: [], inputs: [], listInput: false, outputShape: [nil, 4]),
                      KLayer(name: "dense", className: "Dense", config: [:], weights: [], inputs: [XTensor(layer: "image", shape: [nil, 4], perm: [0, 1])],
                             listInput: false, outputShape: [nil, 3])]
        let m = KerasModel(name: "m", layers: layers, inputs: ["image"], outputs: [t, t])
        XCTAssertEqual(namingOutputs(m, after: ["logits", "copy"]).outputs.map(\.layer), ["logits", "logits"])
        XCTAssertEqual(namingOutputs(m, after: ["image", "copy"]).layers.map(\.name), ["image", "dense"])
        XCTAssertEqual(namingOutputs(m, after: ["a/b", "x"]).layers.map(\.name), ["image", "a_b"])
    }
}
