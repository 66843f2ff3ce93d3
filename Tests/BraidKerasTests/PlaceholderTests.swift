import XCTest
@testable import BraidKeras

final class KerasPlaceholderTests: XCTestCase {
    func testMissingFileIsAnError() {
        XCTAssertThrowsError(try importKeras(path: "/nonexistent.h5"))
    }
}
