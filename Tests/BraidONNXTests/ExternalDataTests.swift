import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest

final class ExternalDataTests: XCTestCase {
    /// A model whose weight `w` [2, 3] lives in `location` at `offset`.
    private func model(location: String, offset: Int, length: Int? = nil) -> ModelBuilder {
        var b = ModelBuilder(opset: 13)
        b.input("x", dims(1, 2))
        b.output("y")
        var w = ONNXTensorProto()
        w.name = "w"
        w.dims = [2, 3]
        w.dataType = ONNXDataType.float.rawValue
        w.isExternal = true
        w.externalData = [("location", location), ("offset", String(offset))]
        if let length { w.externalData.append(("length", String(length))) }
        b.model.graph.initializers.append(w)
        b.node("MatMul", ["x", "w"], ["y"])
        return b
    }

    private func writeWeights(_ dir: String, _ name: String, offset: Int) throws {
        var bytes = [UInt8](repeating: 0xEE, count: offset)
        for v: Float in [1, 2, 3, -4, 5.5, 6] { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        try FileManager.default.createDirectory(atPath: (dir + "/" + name as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + name))
    }

    private func save(_ b: ModelBuilder, _ dir: String) throws -> String {
        let path = dir + "/model.onnx"
        try Data(b.bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testExternalDataIsReadRelativeToTheModel() throws {
        let dir = try temporaryDirectory(self)
        try writeWeights(dir, "data/weights.bin", offset: 16)
        let g = try importONNX(path: try save(model(location: "data/weights.bin", offset: 16, length: 24), dir))
        XCTAssertEqual(g.initializers["w"]?.shape, [2, 3])
        XCTAssertEqual(g.initializers["w"]?.floatArray, [1, 2, 3, -4, 5.5, 6])
    }

    func testMissingExternalFile() throws {
        let dir = try temporaryDirectory(self)
        let path = try save(model(location: "gone.bin", offset: 0), dir)
        assertMentions(onnxError { try importONNX(path: path) }, path, "tensor 'w'", "gone.bin", "cannot be opened")
    }

    func testExternalFileTooShort() throws {
        let dir = try temporaryDirectory(self)
        try writeWeights(dir, "weights.bin", offset: 0)
        let path = try save(model(location: "weights.bin", offset: 8), dir)
        assertMentions(onnxError { try importONNX(path: path) }, "tensor 'w'", "holds 24 bytes", "offset 8")
        let lying = try save(model(location: "weights.bin", offset: 0, length: 12), dir)
        assertMentions(onnxError { try importONNX(path: lying) }, "tensor 'w'", "length 12")
    }

    func testPathTraversalIsRefused() throws {
        let dir = try temporaryDirectory(self)
        try writeWeights(dir, "weights.bin", offset: 0)
        let inner = dir + "/inner"
        try FileManager.default.createDirectory(atPath: inner, withIntermediateDirectories: true)
        for location in ["../weights.bin", "/etc/passwd", "a/../../weights.bin"] {
            let path = try save(model(location: location, offset: 0), inner)
            assertMentions(onnxError { try importONNX(path: path) }, "tensor 'w'", "leaves the model's directory")
        }
    }

    func testExternalDataNeedsADirectoryWhenReadFromBytes() {
        assertMentions(onnxError { try importONNX(bytes: self.model(location: "w.bin", offset: 0).bytes) },
                       "tensor 'w'", "needs the model's directory")
    }
}
