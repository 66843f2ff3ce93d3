import XCTest
@testable import BraidData

final class DataPlaceholderTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
