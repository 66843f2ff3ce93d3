import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// Every way a file can be wrong must give a one-line ONNXError naming what is wrong, and
/// never crash.
final class BadInputTests: XCTestCase {
    private func chain(opset: Int64 = 13) -> ModelBuilder {
        var b = ModelBuilder(opset: opset)
        b.input("x", dims(1, 4))
        b.output("y")
        b.initializer("w", Tensor(shape: [4, 4], floats: (0..<16).map(Float.init)))
        b.node("MatMul", ["x", "w"], ["h"], name: "mm")
        b.node("Relu", ["h"], ["y"], name: "relu")
        return b
    }

    private func importing(_ b: ModelBuilder) -> ONNXError? { onnxError { try importONNX(bytes: b.bytes) } }

    func testEveryTruncationOfAValidFileIsAnError() throws {
        let good = chain().bytes
        XCTAssertNoThrow(try importONNX(bytes: good))
        for n in 0..<good.count {
            XCTAssertThrowsError(try importONNX(bytes: Array(good.prefix(n))), "prefix \(n)") {
                XCTAssertTrue($0 is ONNXError, "prefix \(n): \($0)")
            }
        }
    }

    func testTruncatedFileOnDiskNamesTheFile() throws {
        let dir = try temporaryDirectory(self)
        let good = chain().bytes
        let path = dir + "/model.onnx"
        try Data(good.prefix(good.count / 2)).write(to: URL(fileURLWithPath: path))
        assertMentions(onnxError { try importONNX(path: path) }, path, "truncated or corrupt")
        assertMentions(onnxError { try importONNX(path: dir + "/none.onnx") }, "none.onnx", "not found")
    }

    func testGarbageBytesAreAnError() {
        var seeded = UInt64(0x9E37_79B9_7F4A_7C15)
        for trial in 0..<200 {
            let count = trial < 100 ? 1 + trial % 64 : 256
            let bytes = (0..<count).map { _ -> UInt8 in
                seeded = seeded &* 6364136223846793005 &+ 1442695040888963407
                return UInt8(truncatingIfNeeded: seeded >> 33)
            }
            XCTAssertThrowsError(try importONNX(bytes: bytes)) { XCTAssertTrue($0 is ONNXError) }
        }
        XCTAssertThrowsError(try importONNX(bytes: [])) { XCTAssertTrue($0 is ONNXError) }
    }

    func testDeeplyNestedMessagesAreRefusedWithoutOverflowingTheStack() {
        // ModelProto.graph -> GraphProto.input -> ValueInfoProto.type -> TypeProto, then
        // TypeProto.sequence_type -> Sequence.elem_type -> TypeProto ... a million levels.
        // Headers are built innermost first (each length is the size of what it encloses),
        // then laid out outermost first; the innermost TypeProto is empty.
        let fields: [UInt8] = [7, 11, 2] + (0..<1_000_000).map { $0 % 2 == 0 ? 4 : 1 }
        var headers: [[UInt8]] = []
        var enclosed: UInt64 = 0
        for field in fields.reversed() {
            var h: [UInt8] = [field << 3 | 2]
            var n = enclosed
            while n >= 0x80 { h.append(UInt8(n & 0x7F) | 0x80); n >>= 7 }
            h.append(UInt8(n))
            enclosed += UInt64(h.count)
            headers.append(h)
        }
        let model: [UInt8] = [0x08, 0x08] + headers.reversed().flatMap { $0 }
        assertMentions(onnxError { try importONNX(bytes: model) }, "nest")
    }

    func testCycleNamesNodeAndValue() {
        var b = ModelBuilder(opset: 13)
        b.input("x", dims(2))
        b.output("y")
        b.node("Add", ["x", "c"], ["a"], name: "first")
        b.node("Relu", ["a"], ["c"], name: "second")
        b.node("Relu", ["a"], ["y"], name: "out")
        assertMentions(importing(b), "cycle", "'first'", "'second'")
    }

    func testSelfLoopIsACycle() {
        var b = ModelBuilder(opset: 13)
        b.input("x", dims(2))
        b.output("y")
        b.node("Add", ["x", "y"], ["y"], name: "loop")
        assertMentions(importing(b), "node 'loop'", "'y'", "cycle")
    }

    func testDanglingInputNamesNodeAndValue() {
        var b = chain()
        b.model.graph.nodes[1].inputs = ["ghost"]
        assertMentions(importing(b), "node 'relu'", "'ghost'", "not a graph input")
    }

    func testDuplicateOutputNamesBothNodes() {
        var b = chain()
        b.node("Relu", ["x"], ["h"], name: "again")
        assertMentions(importing(b), "node 'again'", "'h'", "node 'mm'")
    }

    func testUnproducedGraphOutput() {
        var b = chain()
        b.output("missing")
        assertMentions(importing(b), "graph output 'missing'")
    }

    func testUnsupportedOpNamesOpDomainOpsetAndNode() {
        var b = chain(opset: 17)
        b.node("TfIdfVectorizer", ["y"], ["z"], name: "tfidf")
        assertMentions(importing(b), "node 'tfidf'", "'TfIdfVectorizer'", "ai.onnx", "opset 17")
    }

    func testCustomDomainIsRefused() {
        var b = chain()
        b.model.opsetImport.append(("com.microsoft", 1))
        b.node("FusedConv", ["y"], ["z"], name: "fused", domain: "com.microsoft")
        assertMentions(importing(b), "node 'fused'", "'FusedConv'", "com.microsoft", "opset 13")
    }

    func testOpBeforeItsFirstVersionNamesTheOpset() {
        var b = chain(opset: 17)
        b.node("Gelu", ["y"], ["z"], name: "gelu")
        assertMentions(importing(b), "node 'gelu'", "'Gelu'", "opset 17", "from opset 20")
    }

    func testOpsetOutsideTheTables() {
        var b = chain(opset: 99)
        assertMentions(importing(b), "opset 99")
        b.model.opsetImport = [("ai.onnx.ml", 3)]
        assertMentions(importing(b), "no opset for the default ONNX domain")
    }

    func testInitializerDeclaredLargerThanItsBytes() {
        var b = chain()
        b.model.graph.initializers[0].dims = [400, 4]
        assertMentions(importing(b), "tensor 'w'", "6400", "64")
    }

    func testUnsupportedValueTypes() {
        for (type, word) in [(ONNXTypeProto.sequence, "sequence"), (.map, "map"), (.optional, "optional"),
                             (.sparseTensor, "sparse tensor")] {
            var b = chain()
            b.model.graph.inputs.append(ONNXValueInfoProto(name: "extra", type: type))
            assertMentions(importing(b), "graph input 'extra'", "unsupported value type \(word)")
        }
        var s = chain()
        s.output("labels", dims(3), type: .string)
        assertMentions(importing(s), "graph output 'labels'", "string tensors")
    }

    func testMissingRequiredAttributeAndBadAttributeValue() {
        var b = chain()
        b.node("MaxPool", ["y"], ["z"], name: "pool")
        assertMentions(importing(b), "node 'pool'", "kernel_shape")
        var c = chain()
        c.node("Relu", ["y"], ["z"], name: "fine")
        c.node("Gelu", ["z"], ["g"], name: "gelu", .string("approximate", "fast"))
        c.model.opsetImport = [("", 20)]
        assertMentions(importing(c), "node 'gelu'", "approximate", "fast")
        var d = chain()
        d.node("LeakyRelu", ["y"], ["z"], name: "lr", .string("alpha", "big"))
        assertMentions(importing(d), "node 'lr'", "alpha", "STRING")
    }
}
