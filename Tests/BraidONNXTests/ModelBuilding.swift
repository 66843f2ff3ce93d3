import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// Builds small ONNX models in memory with Braid's own writer.
struct ModelBuilder {
    var model = ONNXModelProto()

    init(opset: Int64 = 13, irVersion: Int64 = 8) {
        model.irVersion = irVersion
        model.producerName = "braid-tests"
        model.producerVersion = "1"
        model.opsetImport = [("", opset)]
        model.graph.name = "test"
    }

    mutating func input(_ name: String, _ dims: [ONNXDim]?, type: ONNXDataType = .float) {
        model.graph.inputs.append(ONNXValueInfoProto(name: name, type: .tensor(elemType: type.rawValue, shape: dims)))
    }

    mutating func output(_ name: String, _ dims: [ONNXDim]? = nil, type: ONNXDataType = .float) {
        model.graph.outputs.append(ONNXValueInfoProto(name: name, type: .tensor(elemType: type.rawValue, shape: dims)))
    }

    mutating func initializer(_ name: String, _ t: Tensor) {
        model.graph.initializers.append(ONNXTensorProto(t, name: name))
    }

    mutating func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String? = nil,
                       domain: String = "", _ attributes: ONNXAttributeProto...) {
        model.graph.nodes.append(ONNXNodeProto(name: name ?? "\(op.lowercased())\(model.graph.nodes.count)",
                                               opType: op, domain: domain, inputs: inputs,
                                               outputs: outputs, attributes: attributes))
    }

    var bytes: [UInt8] { model.serialized() }
}

func dims(_ xs: Int64...) -> [ONNXDim] { xs.map { .value($0) } }

/// A fresh temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let dir = NSTemporaryDirectory() + "braid-onnx-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = hex.startIndex
    while i < hex.endIndex {
        let j = hex.index(i, offsetBy: 2)
        out.append(UInt8(hex[i..<j], radix: 16)!)
        i = j
    }
    return out
}

/// The error thrown by `body`, failing the test when nothing or something else is thrown.
func onnxError(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> ONNXError? {
    do {
        _ = try body()
        XCTFail("expected an ONNXError", file: file, line: line)
    } catch let e as ONNXError {
        return e
    } catch {
        XCTFail("expected an ONNXError, got \(error)", file: file, line: line)
    }
    return nil
}

func assertMentions(_ e: ONNXError?, _ parts: String..., file: StaticString = #filePath, line: UInt = #line) {
    guard let e else { return }
    let text = e.description
    XCTAssertFalse(text.contains("\n"), "error is not one line: \(text)", file: file, line: line)
    for p in parts {
        XCTAssertTrue(text.contains(p), "'\(text)' does not mention '\(p)'", file: file, line: line)
    }
}
