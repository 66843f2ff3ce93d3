import BraidONNX
import BraidTestSupport
import Foundation
import XCTest

/// Inputs that crashed or hung the ONNX reader (found by tools/fuzz, kept in
/// Fuzz/regressions/onnx): each must now be refused with an `ONNXError` naming the file,
/// read both as a model and as a TensorProto.
final class ONNXFuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/regressions/onnx").standardized.path

    func testEveryRegressionInputIsAnError() throws {
        for path in try fuzzRegressionInputs("onnx") {
            let name = URL(fileURLWithPath: path).lastPathComponent
            XCTAssertThrowsError(try importONNX(path: path), name) { error in
                XCTAssertTrue(error is ONNXError && "\(error)".hasPrefix(path), "\(name): \(error)")
            }
            _ = try? readTensorProto(path: path)
        }
    }
}
