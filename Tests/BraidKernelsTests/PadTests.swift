import BraidKernels
import BraidTensor
import XCTest

final class PadTests: XCTestCase {
    func testSourceIndexPerMode() {
        // numpy: np.pad(np.arange(3), (5, 5), mode) for reflect, edge and wrap.
        let out = (0..<13).map { $0 }
        XCTAssertEqual(out.map { padSourceIndex($0, size: 3, begin: 5, fill: .reflect) },
                       [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1])
        XCTAssertEqual(out.map { padSourceIndex($0, size: 3, begin: 5, fill: .edge) },
                       [0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2])
        XCTAssertEqual(out.map { padSourceIndex($0, size: 3, begin: 5, fill: .wrap) },
                       [1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1])
        XCTAssertEqual(padSourceIndex(0, size: 3, begin: 1, fill: .constant), -1)
        XCTAssertEqual(padSourceIndex(2, size: 1, begin: 1, fill: .reflect), 0)
    }

    func testPadCopyInt64ConstantAndEdge() {
        let x = Tensor(shape: [2, 2], ints: [1, 2, 3, 4])
        let c = PadCopy(shape: [2, 2], begins: [1, 0], ends: [0, 1], fill: .constant, elementSize: 8)
        XCTAssertEqual(c.outShape, [3, 3])
        let y = Tensor(zeros: c.outShape, dtype: .int64)
        c.run(x.buffer.raw, y.buffer.raw, fillBits: fillBits(-9, float: false))
        XCTAssertEqual(y.intArray, [-9, -9, -9, 1, 2, -9, 3, 4, -9])
        let e = PadCopy(shape: [2, 2], begins: [0, 2], ends: [1, 0], fill: .edge, elementSize: 8)
        let z = Tensor(zeros: e.outShape, dtype: .int64)
        e.run(x.buffer.raw, z.buffer.raw, fillBits: 0)
        XCTAssertEqual(z.intArray, [1, 1, 1, 2, 3, 3, 3, 4, 3, 3, 3, 4])
    }

    func testPadOfScalarIsACopy() {
        let x = Tensor(shape: [], floats: [2.5])
        let y = Tensor(zeros: [])
        PadCopy(shape: [], begins: [], ends: [], fill: .constant, elementSize: 4).run(x.buffer.raw, y.buffer.raw, fillBits: 0)
        XCTAssertEqual(y.floatArray, [2.5])
    }
}
