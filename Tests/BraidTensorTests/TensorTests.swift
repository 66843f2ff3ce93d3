import XCTest
@testable import BraidTensor

final class TensorTests: XCTestCase {
    func testStridesAndReshape() {
        XCTAssertEqual([2, 3, 4].strides, [12, 4, 1])
        let t = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let r = t.reshaped([3, 2])
        XCTAssertEqual(r.floatArray, [1, 2, 3, 4, 5, 6])
        r.floats[0] = 9
        XCTAssertEqual(t.floats[0], 9, "reshape shares storage")
        XCTAssertEqual(t.copy().floatArray, [9, 2, 3, 4, 5, 6])
    }
}
