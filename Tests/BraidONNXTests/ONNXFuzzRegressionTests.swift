import BraidONNX
import Foundation
import XCTest

/// Inputs that crashed or hung the ONNX reader (found by tools/fuzz, kept in
/// Fuzz/regressions/onnx): each must now be refused with an `ONNXError` naming the file,
/// read both as a model and as a TensorProto.
final class ONNXFuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/regressions/onnx").standardized.path

    func testEveryRegressionInputIsAnError() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.folder).sorted()
        XCTAssertFalse(names.isEmpty, "no regression inputs in \(Self.folder)")
        for name in names {
            let path = "\(Self.folder)/\(name)"
            XCTAssertThrowsError(try importONNX(path: path), name) { error in
                XCTAssertTrue(error is ONNXError && "\(error)".hasPrefix(path), "\(name): \(error)")
            }
            _ = try? readTensorProto(path: path)
        }
    }
}
