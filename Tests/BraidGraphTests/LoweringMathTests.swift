import XCTest
@testable import BraidGraph
import BraidTensor

/// Lowers one node for the given inputs, plans outputs as the executor does, runs it once.
private func runNode(_ op: Op, _ inputs: [Tensor?], constant: Set<Int> = []) throws -> [Tensor] {
    let node = Node(name: "n", op: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "in\($0)" },
                    outputs: ["out"], sourceOp: "Test")
    let facts: [PlanValue?] = inputs.enumerated().map { i, t in
        t.map { PlanValue(shape: $0.shape, dtype: $0.dtype, constant: constant.contains(i) ? $0 : nil) }
    }
    let lowered = try lower(node, facts)
    let outs = lowered.outputs.map { Tensor(zeros: $0.shape, dtype: $0.dtype) }
    let body = lowered.make(inputs, outs)
    body()
    return outs
}

private func lowerOnly(_ op: Op, _ facts: [PlanValue?]) throws -> LoweredOp {
    let node = Node(name: "n", op: op, inputs: facts.indices.map { "in\($0)" }, outputs: ["out"],
                    sourceOp: "Test")
    return try lower(node, facts)
}

final class LoweringMathTests: XCTestCase {
    func testBinaryBroadcastEndToEnd() throws {
        let x = Tensor(shape: [2, 3, 1], floats: [1, 2, 3, 4, 5, 6])
        let y = Tensor(shape: [2], floats: [10, 20])
        let z = try runNode(.binary(.add), [x, y])[0]
        XCTAssertEqual(z.shape, [2, 3, 2])
        XCTAssertEqual(z.dtype, .float32)
        XCTAssertEqual(z.floatArray, [11, 21, 12, 22, 13, 23, 14, 24, 15, 25, 16, 26])
        let c = try runNode(.binary(.greater), [x, Tensor(shape: [], floats: [3])])[0]
        XCTAssertEqual(c.dtype, .bool)
        XCTAssertEqual(c.intArray, [0, 0, 0, 1, 1, 1])
        XCTAssertThrowsError(try runNode(.binary(.add), [x, Tensor(shape: [4, 1], floats: [1, 2, 3, 4])]))
        XCTAssertThrowsError(try runNode(.binary(.add), [x, Tensor(shape: [1], ints: [1])]),
                             "mixed float and int operands are rejected")
    }

    func testIntegerArithmeticWrapsToDeclaredType() throws {
        let a = Tensor(shape: [3], ints: [2_147_483_647, -7, 7], dtype: .int32)
        let b = Tensor(shape: [3], ints: [1, 2, -2], dtype: .int32)
        let sum = try runNode(.binary(.add), [a, b])[0]
        XCTAssertEqual(sum.dtype, .int32)
        XCTAssertEqual(sum.intArray, [-2_147_483_648, -5, 5])
        XCTAssertEqual(try runNode(.binary(.div), [a, b])[0].intArray, [2_147_483_647, -3, -3])
        let u = Tensor(shape: [2], ints: [200, 16], dtype: .uint8)
        let sh = try runNode(.binary(.bitShiftLeft), [u, Tensor(shape: [2], ints: [1, 2], dtype: .uint8)])[0]
        XCTAssertEqual(sh.intArray, [144, 64], "uint8 wraps: 400 & 0xFF = 144")
    }

    /// ONNX test_pow_types_*: the result keeps the base's type.
    func testPowMixedTypes() throws {
        let fi = try runNode(.binary(.pow), [Tensor(shape: [3], floats: [1, 2, 3]), Tensor(shape: [3], ints: [4, 5, 6])])[0]
        XCTAssertEqual(fi.dtype, .float32)
        XCTAssertEqual(fi.floatArray, [1, 32, 729])
        let i32 = Tensor(shape: [3], ints: [1, 2, 3], dtype: .int32)
        let iF = try runNode(.binary(.pow), [i32, Tensor(shape: [3], floats: [4, 5, 6])])[0]
        XCTAssertEqual(iF.dtype, .int32)
        XCTAssertEqual(iF.intArray, [1, 32, 729])
        XCTAssertEqual(try runNode(.binary(.pow), [i32, Tensor(shape: [1], ints: [2], dtype: .int32)])[0].intArray, [1, 4, 9])
    }

    func testUnaryOnFloatIntAndBool() throws {
        XCTAssertEqual(try runNode(.unary(.relu), [Tensor(shape: [3], floats: [-1, 0, 2])])[0].floatArray, [0, 0, 2])
        XCTAssertEqual(try runNode(.unary(.hardSigmoid(alpha: 0.2, beta: 0.5)), [Tensor(shape: [3], floats: [-5, 0, 1])])[0].floatArray,
                       [0, 0.5, 0.7])
        let neg = try runNode(.unary(.neg), [Tensor(shape: [2], ints: [-128, 3], dtype: .int8)])[0]
        XCTAssertEqual(neg.intArray, [-128, -3], "int8 negation wraps")
        let not = try runNode(.unary(.not), [Tensor(shape: [2], ints: [0, 1], dtype: .bool)])[0]
        XCTAssertEqual(not.dtype, .bool)
        XCTAssertEqual(not.intArray, [1, 0])
        let nan = try runNode(.unary(.isNaN), [Tensor(shape: [2], floats: [.nan, 1])])[0]
        XCTAssertEqual(nan.dtype, .bool)
        XCTAssertEqual(nan.intArray, [1, 0])
        XCTAssertThrowsError(try runNode(.unary(.exp), [Tensor(shape: [1], ints: [1])]))
    }

    func testVariadicBroadcastsAllInputs() throws {
        let a = Tensor(shape: [3], floats: [3, 2, 1]), b = Tensor(shape: [1], floats: [1.5]),
            c = Tensor(shape: [2, 1], floats: [0, 10])
        let sum = try runNode(.variadic(.sum), [a, b, c])[0]
        XCTAssertEqual(sum.shape, [2, 3])
        XCTAssertEqual(sum.floatArray, [4.5, 3.5, 2.5, 14.5, 13.5, 12.5])
        let mean = try runNode(.variadic(.mean), [a, b, c])[0].floatArray
        for (got, want) in zip(mean, [4.5, 3.5, 2.5, 14.5, 13.5, 12.5] as [Float]) {
            XCTAssertEqual(got, want / 3, accuracy: 1e-6)
        }
        XCTAssertEqual(try runNode(.variadic(.max), [a, b, c])[0].floatArray, [3, 2, 1.5, 10, 10, 10])
        XCTAssertEqual(try runNode(.variadic(.min), [a])[0].floatArray, [3, 2, 1])
        let ints = try runNode(.variadic(.max), [Tensor(shape: [2], ints: [1, 9]), Tensor(shape: [2], ints: [5, 2])])[0]
        XCTAssertEqual(ints.intArray, [5, 9])
    }

    func testSelectClipPReluCast() throws {
        let cond = Tensor(shape: [2, 1], ints: [1, 0], dtype: .bool)
        let w = try runNode(.select, [cond, Tensor(shape: [3], floats: [1, 2, 3]), Tensor(shape: [], floats: [-1])])[0]
        XCTAssertEqual(w.shape, [2, 3])
        XCTAssertEqual(w.floatArray, [1, 2, 3, -1, -1, -1])

        let x = Tensor(shape: [4], floats: [-3, -1, 1, 3])
        XCTAssertEqual(try runNode(.clip, [x, nil, Tensor(shape: [], floats: [2])])[0].floatArray, [-3, -1, 1, 2])
        XCTAssertEqual(try runNode(.clip, [x, Tensor(shape: [], floats: [0]), nil])[0].floatArray, [0, 0, 1, 3])
        XCTAssertEqual(try runNode(.clip, [Tensor(shape: [3], ints: [-5, 2, 9]), Tensor(shape: [], ints: [0]),
                                       Tensor(shape: [], ints: [4])])[0].intArray, [0, 2, 4])

        let px = Tensor(shape: [1, 2, 1, 2], floats: [-1, 1, -2, 2])
        let perChannel = try runNode(.prelu, [px, Tensor(shape: [2], floats: [0.5, 0.25])])[0]
        XCTAssertEqual(perChannel.floatArray, [-0.5, 1, -1, 2], "[2] aligns with W as ONNX broadcasting says")
        let odd = Tensor(shape: [1, 2, 1, 3], floats: [-1, 1, -1, -2, 2, -2])
        XCTAssertEqual(try runNode(.prelu, [odd, Tensor(shape: [2], floats: [0.5, 0.25])])[0].floatArray,
                       [-0.5, 1, -0.5, -0.5, 2, -0.5], "a [C] slope that cannot align with W is read per channel")

        let cast = try runNode(.cast(to: .int32), [Tensor(shape: [3], floats: [1.9, -1.9, 3])])[0]
        XCTAssertEqual(cast.dtype, .int32)
        XCTAssertEqual(cast.intArray, [1, -1, 3])
    }

    func testReduceAxesFromFieldInputAndNegative() throws {
        let x = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let s = try runNode(.reduce(.sum, axes: [-1], keepDims: true, noopWithEmptyAxes: false), [x])[0]
        XCTAssertEqual(s.shape, [2, 1]); XCTAssertEqual(s.floatArray, [6, 15])
        let axes = Tensor(shape: [1], ints: [0])
        let m = try runNode(.reduce(.mean, axes: nil, keepDims: false, noopWithEmptyAxes: false), [x, axes], constant: [1])[0]
        XCTAssertEqual(m.shape, [3]); XCTAssertEqual(m.floatArray, [2.5, 3.5, 4.5])
        let all = try runNode(.reduce(.max, axes: nil, keepDims: false, noopWithEmptyAxes: false), [x])[0]
        XCTAssertEqual(all.shape, []); XCTAssertEqual(all.floatArray, [6])
        let noop = try runNode(.reduce(.sumSquare, axes: nil, keepDims: true, noopWithEmptyAxes: true),
                           [x, Tensor(shape: [0], ints: [])], constant: [1])[0]
        XCTAssertEqual(noop.shape, [2, 3]); XCTAssertEqual(noop.floatArray, [1, 4, 9, 16, 25, 36])
        let ints = try runNode(.reduce(.prod, axes: [1], keepDims: false, noopWithEmptyAxes: false),
                           [Tensor(shape: [2, 2], ints: [2, 3, 4, 5])])[0]
        XCTAssertEqual(ints.dtype, .int64); XCTAssertEqual(ints.intArray, [6, 20])

        let runtimeAxes = PlanValue(shape: [1], dtype: .int64)
        XCTAssertThrowsError(try lowerOnly(.reduce(.sum, axes: nil, keepDims: true, noopWithEmptyAxes: false),
                                           [PlanValue(shape: [2, 3], dtype: .float32), runtimeAxes]))
        XCTAssertThrowsError(try lowerOnly(.reduce(.sum, axes: [2], keepDims: true, noopWithEmptyAxes: false),
                                           [PlanValue(shape: [2, 3], dtype: .float32)]))
    }

    func testArgExtremeShapes() throws {
        let x = Tensor(shape: [2, 3], floats: [1, 5, 5, 7, 2, 7])
        let a = try runNode(.argExtreme(max: true, axis: 1, keepDims: true, selectLastIndex: false), [x])[0]
        XCTAssertEqual(a.shape, [2, 1]); XCTAssertEqual(a.dtype, .int64); XCTAssertEqual(a.intArray, [1, 0])
        let b = try runNode(.argExtreme(max: true, axis: -1, keepDims: false, selectLastIndex: true), [x])[0]
        XCTAssertEqual(b.shape, [2]); XCTAssertEqual(b.intArray, [2, 2])
        let c = try runNode(.argExtreme(max: false, axis: 0, keepDims: false, selectLastIndex: false),
                        [Tensor(shape: [2, 3], ints: [4, 1, 1, 2, 1, 0])])[0]
        XCTAssertEqual(c.shape, [3]); XCTAssertEqual(c.intArray, [1, 0, 1])
    }
}
