import BraidONNX
import BraidTensor
import Foundation
import XCTest

final class TensorProtoTests: XCTestCase {
    private func decode(_ hex: String) throws -> Tensor {
        try bytes(hex: hex).withUnsafeBytes { try ONNXTensorProto(serialized: $0) }.tensor(baseDirectory: nil)
    }

    // The hex strings below were made with onnx 1.23.2 / numpy:
    // numpy_helper.from_array(...) or helper.make_tensor(...), then .SerializeToString().hex().

    func testFloat16RawDataConvertsToFloat32() throws {
        // from_array(np.array([[1.0, -2.5, 65504.0], [0.000061035156, -0.0, 3.140625]], np.float16))
        let t = try decode("08020803100a4201684a0c003c00c1ff7b000400804842")
        XCTAssertEqual(t.shape, [2, 3])
        XCTAssertEqual(t.dtype, .float32)
        XCTAssertEqual(t.floatArray, [1.0, -2.5, 65504.0, 6.103515625e-05, -0.0, 3.140625])
        XCTAssertEqual(t.floatArray[4].sign, .minus)
    }

    func testInt8TypedFieldKeepsTypeTag() throws {
        // make_tensor("i8", INT8, [4], [-128, -1, 0, 127])
        let t = try decode("080410032a1680ffffffffffffffff01ffffffffffffffffff01007f42026938")
        XCTAssertEqual(t.dtype, .int8)
        XCTAssertEqual(t.intArray, [-128, -1, 0, 127])
    }

    func testDoubleTypedFieldConvertsToFloat32() throws {
        // make_tensor("d", DOUBLE, [2], [1.5, -1e300])
        let t = try decode("0802100b4201645210000000000000f83f9c7500883ce437fe")
        XCTAssertEqual(t.dtype, .float32)
        XCTAssertEqual(t.floatArray[0], 1.5)
        XCTAssertEqual(t.floatArray[1], -.infinity)
    }

    func testBoolInt64AndUInt64() throws {
        let b = try decode("080310094201624a03010001")  // from_array(np.array([True, False, True]))
        XCTAssertEqual(b.dtype, .bool)
        XCTAssertEqual(b.intArray, [1, 0, 1])
        let i = try decode("08010802100742036936344a100700000000000000f7ffffffffffffff")  // [[7, -9]] int64
        XCTAssertEqual(i.shape, [1, 2])
        XCTAssertEqual(i.intArray, [7, -9])
        let u = try decode("0802100d42037536345a0703808080808020")  // make_tensor UINT64 [3, 2**40]
        XCTAssertEqual(u.dtype, .uint64)
        XCTAssertEqual(u.intArray, [3, 1 << 40])
    }

    func testWriterMatchesOnnxEncodingOfInt64() throws {
        // Braid writes the same bytes as onnx's from_array for an int64 tensor named "i64".
        let t = Tensor(shape: [1, 2], ints: [7, -9])
        XCTAssertEqual(ONNXTensorProto(t, name: "i64").serialized(),
                       bytes(hex: "08010802100742036936344a100700000000000000f7ffffffffffffff"))
    }

    func testRoundTripEveryDType() throws {
        let dir = try temporaryDirectory(self)
        let values: [Int64] = [0, 1, 5, 100]
        for dtype in DType.allCases {
            let t = dtype.isFloat ? Tensor(shape: [2, 2], floats: [0.5, -1, 3e-8, 1e30])
                                  : Tensor(shape: [2, 2], ints: dtype == .bool ? [0, 1, 1, 0] : values, dtype: dtype)
            let path = dir + "/\(dtype).pb"
            try writeTensorProto(t, name: "x_\(dtype)", to: path)
            let (name, back) = try readTensorProtoNamed(path: path)
            XCTAssertEqual(name, "x_\(dtype)")
            XCTAssertEqual(back.dtype, dtype)
            XCTAssertEqual(back.shape, [2, 2])
            XCTAssertEqual(back.doubleArray, t.doubleArray, "\(dtype)")
        }
    }

    func testNegativeValuesSurviveNarrowTypes() throws {
        let dir = try temporaryDirectory(self)
        for dtype in [DType.int8, .int16, .int32] {
            let t = Tensor(shape: [3], ints: [-1, -100, 7], dtype: dtype)
            try writeTensorProto(t, to: dir + "/n.pb")
            XCTAssertEqual(try readTensorProto(path: dir + "/n.pb").intArray, [-1, -100, 7])
        }
    }

    func testRawDataShorterThanShapeIsAnErrorNamingTheTensor() {
        var p = ONNXTensorProto()
        p.name = "weights"
        p.dims = [1000, 1000]
        p.dataType = ONNXDataType.float.rawValue
        p.rawData = Data(count: 16)
        assertMentions(onnxError { try p.tensor(baseDirectory: nil) }, "weights", "4000000", "16")
    }

    func testTypedFieldShorterThanShapeIsAnError() {
        var p = ONNXTensorProto()
        p.name = "bias"
        p.dims = [5]
        p.dataType = ONNXDataType.float.rawValue
        p.floatData = [1, 2]
        assertMentions(onnxError { try p.tensor(baseDirectory: nil) }, "bias", "float_data", "2")
    }

    func testHugeDimensionsDoNotAllocate() {
        var p = ONNXTensorProto()
        p.name = "huge"
        p.dims = [1 << 40, 1 << 40]
        p.dataType = ONNXDataType.float.rawValue
        p.rawData = Data(count: 4)
        assertMentions(onnxError { try p.tensor(baseDirectory: nil) }, "huge", "too large")
        p.dims = [1 << 20, 1 << 20]
        assertMentions(onnxError { try p.tensor(baseDirectory: nil) }, "huge", "raw_data holds only 4")
    }

    func testStringTensorIsUnsupported() {
        var p = ONNXTensorProto()
        p.name = "labels"
        p.dims = [1]
        p.dataType = ONNXDataType.string.rawValue
        p.stringData = [Array("cat".utf8)]
        assertMentions(onnxError { try p.tensor(baseDirectory: nil) }, "labels", "string tensors")
    }

    func testCorruptTensorFileIsAnErrorNamingTheFile() throws {
        let dir = try temporaryDirectory(self)
        let good = ONNXTensorProto(Tensor(shape: [64], floats: Array(repeating: 1, count: 64)), name: "x").serialized()
        let path = dir + "/input_0.pb"
        try Data(good.prefix(good.count - 10)).write(to: URL(fileURLWithPath: path))
        assertMentions(onnxError { try readTensorProto(path: path) }, path, "corrupt")
        assertMentions(onnxError { try readTensorProto(path: dir + "/missing.pb") }, "missing.pb", "not found")
    }
}
