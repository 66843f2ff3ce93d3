import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// `ONNXImporter.unsupportedNodes` (behind `braid inspect --check`): every node the importer
/// rejects, for each kind of rejection, in graph order; a node that fails only because its
/// input comes from a rejected node is not listed.
final class UnsupportedNodesTests: XCTestCase {
    func testListsEveryKindOfRejectionOnce() throws {
        var b = ModelBuilder(opset: 17)
        b.model.opsetImport.append(("com.example", 2))
        b.input("x", dims(1, 4, 2, 2))
        b.output("y")
        b.node("Relu", ["x"], ["r"], name: "fine")
        b.node("NoSuchOp", ["r"], ["a"], name: "unknown")
        b.node("DepthToSpace", ["a"], ["a2"], name: "fed_by_unknown", .int("blocksize", 2), .string("mode", "XYZ"))
        b.node("DepthToSpace", ["r"], ["d"], name: "bad_mode", .int("blocksize", 2), .string("mode", "XYZ"))
        b.node("Custom", ["x"], ["c"], name: "custom", domain: "com.example")
        b.node("RMSNormalization", ["x", "x"], ["n"], name: "too_new")
        b.node("Sum", ["a2", "d", "c", "n"], ["y"], name: "sum")
        let dir = NSTemporaryDirectory() + "braid-unsupported-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.onnx"
        try Data(b.bytes).write(to: URL(fileURLWithPath: path))

        let found = try ONNXImporter().unsupportedNodes(path: path)
        XCTAssertEqual(found.map(\.node), ["unknown", "bad_mode", "custom", "too_new"])
        XCTAssertEqual(found.map(\.op), ["NoSuchOp", "DepthToSpace", "Custom", "RMSNormalization"])
        XCTAssertEqual(found.map(\.domain), ["ai.onnx", "ai.onnx", "com.example", "ai.onnx"])
        XCTAssertEqual(found.map(\.opset), [17, 17, 2, 17])
        XCTAssertTrue(found[1].reason.contains("XYZ"), found[1].reason)
        XCTAssertTrue(found[3].reason.contains("from opset 23"), found[3].reason)
        // The normal import still stops at the first.
        XCTAssertThrowsError(try ONNXImporter().importModel(path: path)) {
            XCTAssertTrue("\($0)".contains("'unknown'"), "\($0)")
        }

        // A model that imports whole has nothing to list.
        var ok = ModelBuilder(opset: 17)
        ok.input("x", dims(1, 4))
        ok.output("y")
        ok.node("Relu", ["x"], ["y"])
        try Data(ok.bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try ONNXImporter().unsupportedNodes(path: path), [])
    }
}
