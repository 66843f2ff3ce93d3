import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

/// Inputs that crashed or exhausted the .npy reader (found by tools/fuzz or by review, kept
/// in Fuzz/regressions/npy): each must now be refused with an error naming the file.
final class NpyFuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/regressions/npy").standardized.path

    func testEveryRegressionInputIsAnError() throws {
        for path in try fuzzRegressionInputs("npy") {
            let name = URL(fileURLWithPath: path).lastPathComponent
            XCTAssertThrowsError(try Npy.read(path: path), name) { error in
                XCTAssertTrue("\(error)".hasPrefix(path), "\(name): '\(error)' does not name the file")
            }
        }
    }

    func testShapeWhoseProductWrapsIsRefused() {
        let path = "\(Self.folder)/review-shape-product-wraps.npy"
        XCTAssertThrowsError(try Npy.read(path: path)) { error in
            XCTAssertTrue("\(error)".contains("more elements than can be addressed"), "\(error)")
        }
    }
}
