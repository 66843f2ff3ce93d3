import BraidData
import BraidTestSupport
import Foundation
import XCTest

/// Inputs that crashed, hung or made the image decoders allocate without bound (found by
/// tools/fuzz or by review, kept in Fuzz/regressions/image): each must now be refused as a
/// corrupt image naming the file.
final class ImageFuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/regressions/image").standardized.path

    private func reason(_ name: String) -> String? {
        let path = "\(Self.folder)/\(name)"
        do {
            _ = try ImageCodec.decode(path: path)
            return nil
        } catch DataError.corruptImage(let p, let reason) {
            XCTAssertEqual(p, path)
            return reason
        } catch {
            XCTFail("\(name): unexpected error \(error)")
            return ""
        }
    }

    func testEveryRegressionInputIsAnError() throws {
        for path in try fuzzRegressionInputs("image") {
            let name = URL(fileURLWithPath: path).lastPathComponent
            XCTAssertNotNil(reason(name), "\(name) decoded without error")
        }
    }

    func testHugeDeclaredPNGIsRefusedBeforeAllocating() {
        let r = reason("review-png-65535-square-rgba16.png") ?? ""
        XCTAssertTrue(r.contains("65535 x 65535"), r)
    }

    func testHugeDeclaredJPEGIsRefusedBeforeAllocating() {
        let r = reason("review-jpeg-60000-square.jpg") ?? ""
        XCTAssertTrue(r.contains("60000 x 60000"), r)
    }
}
