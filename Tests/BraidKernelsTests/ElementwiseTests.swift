import XCTest
import Foundation
@testable import BraidKernels
import BraidTensor
import BraidTestSupport

/// Deterministic values in [lo, hi) for test inputs.
struct TestRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next(_ lo: Float = -3, _ hi: Float = 3) -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return lo + (hi - lo) * Float(state >> 40) / Float(1 << 24)
    }
    mutating func floats(_ n: Int, _ lo: Float = -3, _ hi: Float = 3) -> [Float] {
        (0..<n).map { _ in next(lo, hi) }
    }
    mutating func ints(_ n: Int, _ lo: Int64, _ hi: Int64) -> [Int64] {
        (0..<n).map { _ in lo + Int64(next(0, 1) * Float(hi - lo + 1)) }
    }
}

/// The index into an input of `inShape` read by output multi-index `idx` under NumPy
/// broadcasting, computed the plain way.
func naiveBroadcastIndex(_ flat: Int, out: [Int], input: [Int]) -> Int {
    var rem = flat, off = 0, mul = 1
    for d in stride(from: out.count - 1, through: 0, by: -1) {
        let o = rem % out[d]
        rem /= out[d]
        let k = d - (out.count - input.count)
        if k >= 0 {
            off += (input[k] == 1 ? 0 : o) * mul
            mul *= input[k]
        }
    }
    return off
}

final class ElementwiseTests: XCTestCase {
    let shapePairs: [([Int], [Int])] = [
        ([2, 3, 4], [2, 3, 4]), ([2, 3, 4], []), ([], [2, 3]), ([2, 3, 4], [1]),
        ([2, 3, 4, 5], [1, 3, 1, 1]), ([2, 3, 4, 5], [3, 1, 1]), ([3, 4], [4]),
        ([2, 1, 4], [3, 1]), ([1, 3], [2, 1]), ([5, 1, 1, 2], [1, 4, 3, 1]),
        ([2, 3, 4, 5], [2, 1, 4, 1]), ([1, 1, 7], [1, 1, 1]),
        // Large enough to take the parallel path.
        ([2, 3, 120, 100], [1, 3, 1, 1]), ([300, 300], [300, 300]), ([2, 70000], [2, 1]),
    ]

    func testBroadcastShapes() {
        XCTAssertEqual(broadcastShapes([[2, 1, 4], [3, 1]]), [2, 3, 4])
        XCTAssertEqual(broadcastShapes([[], [5]]), [5])
        XCTAssertNil(broadcastShapes([[2, 3], [4]]))
        XCTAssertNil(BroadcastLayout(inputs: [[3, 4]], output: [4]))
        XCTAssertNil(BroadcastLayout(inputs: [[2, 4]], output: [3, 4]))
        XCTAssertTrue(BroadcastLayout(inputs: [[2, 3], [2, 3]])!.isElementwise)
        XCTAssertFalse(BroadcastLayout(inputs: [[2, 3], [3]])!.isElementwise)
    }

    func testBinaryFloatMatchesNaiveBroadcast() {
        var rng = TestRandom(1)
        let fns: [(BinaryFunction, (Float, Float) -> Float)] = [
            (.add, +), (.sub, -), (.mul, *), (.div, /), (.max, { max($0, $1) }), (.min, { min($0, $1) }),
            (.pow, { Float(Foundation.pow(Double($0), Double($1))) }),
        ]
        for (sa, sb) in shapePairs {
            let a = rng.floats(sa.product), b = rng.floats(sb.product, 0.5, 2)
            let layout = BroadcastLayout(inputs: [sa, sb])!
            let out = broadcastShapes([sa, sb])!
            XCTAssertEqual(layout.shape, out)
            // The large shapes check the parallel split with Add only.
            for (f, ref) in out.product > 50_000 ? Array(fns.prefix(1)) : fns {
                let pa = f == .pow ? a.map { abs($0) } : a
                var c = [Float](repeating: .nan, count: out.product)
                Elementwise.binary(f, layout, pa, b, &c)
                let expected = (0..<out.product).map {
                    ref(pa[naiveBroadcastIndex($0, out: out, input: sa)],
                        b[naiveBroadcastIndex($0, out: out, input: sb)])
                }
                assertClose(c, expected, tolerance: 1e-6, "\(f) \(sa) \(sb)")
            }
        }
    }

    func testBinaryIntAndComparisonsMatchNaive() {
        var rng = TestRandom(2)
        for (sa, sb) in shapePairs.prefix(12) {
            let a = rng.ints(sa.product, -9, 9), b = rng.ints(sb.product, -4, 4)
            let layout = BroadcastLayout(inputs: [sa, sb])!
            let out = layout.shape
            let fns: [(BinaryFunction, (Int64, Int64) -> Int64)] = [
                (.add, +), (.sub, -), (.mul, *), (.max, { max($0, $1) }),
                (.less, { $0 < $1 ? 1 : 0 }), (.equal, { $0 == $1 ? 1 : 0 }),
                (.greaterOrEqual, { $0 >= $1 ? 1 : 0 }),
            ]
            for (f, ref) in fns {
                var c = [Int64](repeating: 99, count: out.product)
                Elementwise.binary(f, layout, a, b, &c)
                let expected = (0..<out.product).map {
                    ref(a[naiveBroadcastIndex($0, out: out, input: sa)],
                        b[naiveBroadcastIndex($0, out: out, input: sb)])
                }
                XCTAssertEqual(c, expected, "\(f) \(sa) \(sb)")
            }
            let fa = a.map(Float.init), fb = b.map(Float.init)
            var c = [Int64](repeating: 99, count: out.product)
            Elementwise.compare(.lessOrEqual, layout, fa, fb, &c)
            XCTAssertEqual(c, (0..<out.product).map {
                fa[naiveBroadcastIndex($0, out: out, input: sa)] <= fb[naiveBroadcastIndex($0, out: out, input: sb)] ? 1 : 0
            })
        }
    }

    /// Expected values from NumPy 2.4: np.mod, np.fmod, np.trunc(x / y) on the same inputs.
    func testIntegerDivisionAndModSigns() {
        let x: [Int64] = [-4, 7, 5, 4, -7, 8], y: [Int64] = [2, -3, 8, -2, 3, 5]
        let layout = BroadcastLayout(inputs: [[6], [6]])!
        var z = [Int64](repeating: 0, count: 6)
        Elementwise.binary(.mod(fmod: false), layout, x, y, &z)
        XCTAssertEqual(z, [0, -2, 5, 0, 2, 3])
        Elementwise.binary(.mod(fmod: true), layout, x, y, &z)
        XCTAssertEqual(z, [0, 1, 5, 0, -1, 3])
        Elementwise.binary(.div, layout, x, y, &z)
        XCTAssertEqual(z, [-2, -2, 0, -2, -2, 1])
        Elementwise.binary(.div, layout, x, [Int64](repeating: 0, count: 6), &z)
        XCTAssertEqual(z, [0, 0, 0, 0, 0, 0], "division by zero is defined as 0")
        Elementwise.binary(.pow, BroadcastLayout(inputs: [[3], [3]])!, [1, 2, 3], [4, 5, 6], &z)
        XCTAssertEqual(Array(z.prefix(3)), [1, 32, 729])
    }

    /// Expected: np.mod / np.fmod on float32 inputs (NumPy 2.4).
    func testFloatModSigns() {
        let x: [Float] = [-4.3, 7.2, 5.0, 4.3, -7.2, 8.0], y: [Float] = [2.1, -3.4, 8.0, -2.1, 3.4, 5.0]
        let layout = BroadcastLayout(inputs: [[6], [6]])!
        var z = [Float](repeating: 0, count: 6)
        Elementwise.binary(.mod(fmod: false), layout, x, y, &z)
        assertClose(z, [1.9999995, -3.0000005, 5.0, -1.9999995, 3.0000005, 3.0], tolerance: 1e-5)
        Elementwise.binary(.mod(fmod: true), layout, x, y, &z)
        assertClose(z, [-0.10000038, 0.39999962, 5.0, 0.10000038, -0.39999962, 3.0], tolerance: 1e-5)
    }

    func testLogicAndShifts() {
        let layout = BroadcastLayout(inputs: [[4], [4]])!
        var z = [Int64](repeating: 7, count: 4)
        Elementwise.binary(.and, layout, [0, 0, 1, 1], [0, 1, 0, 1], &z); XCTAssertEqual(z, [0, 0, 0, 1])
        Elementwise.binary(.or, layout, [0, 0, 1, 1], [0, 1, 0, 1], &z); XCTAssertEqual(z, [0, 1, 1, 1])
        Elementwise.binary(.xor, layout, [0, 0, 1, 1], [0, 1, 0, 1], &z); XCTAssertEqual(z, [0, 1, 1, 0])
        Elementwise.binary(.bitShiftLeft, layout, [16, 4, 1, 1], [1, 2, 3, 64], &z)
        XCTAssertEqual(z, [32, 16, 8, 0])
        Elementwise.binary(.bitShiftRight, layout, [16, 4, 1, -1], [1, 2, 3, 60], &z)
        XCTAssertEqual(z, [8, 1, 0, 15], "logical shift of the uint64 bit pattern")
    }

    func testFloatMinMaxPropagateNaN() {
        let layout = BroadcastLayout(inputs: [[3], [3]])!
        var z = [Float](repeating: 0, count: 3)
        Elementwise.binary(.max, layout, [.nan, 1, 2], [1, .nan, 3], &z)
        XCTAssertTrue(z[0].isNaN && z[1].isNaN); XCTAssertEqual(z[2], 3)
        Elementwise.binary(.min, layout, [.nan, 1, 2], [1, .nan, 3], &z)
        XCTAssertTrue(z[0].isNaN && z[1].isNaN); XCTAssertEqual(z[2], 2)
    }

    func testUnaryMathMatchesFoundation() {
        var rng = TestRandom(3)
        let x = rng.floats(100_000, -0.95, 0.95)
        let cases: [(UnaryFunction, (Double) -> Double)] = [
            (.neg, { -$0 }), (.abs, { Swift.abs($0) }), (.exp, Foundation.exp),
            (.reciprocal, { 1 / $0 }), (.floor, Foundation.floor), (.ceil, Foundation.ceil),
            (.sin, Foundation.sin), (.cos, Foundation.cos), (.tan, Foundation.tan),
            (.asin, Foundation.asin), (.acos, Foundation.acos), (.atan, Foundation.atan),
            (.sinh, Foundation.sinh), (.cosh, Foundation.cosh), (.asinh, Foundation.asinh),
            (.atanh, Foundation.atanh), (.erf, Foundation.erf), (.tanh, Foundation.tanh),
            (.sign, { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }),
        ]
        for (f, ref) in cases {
            var y = [Float](repeating: .nan, count: x.count)
            Elementwise.unary(f, x, &y, count: x.count)
            assertClose(y, x.map { Float(ref(Double($0))) }, tolerance: 1e-5, "\(f)")
        }
        let pos = x.map { Swift.abs($0) + 1.01 }
        for (f, ref) in [(UnaryFunction.sqrt, Foundation.sqrt), (.log, Foundation.log), (.acosh, Foundation.acosh)] {
            var y = [Float](repeating: .nan, count: x.count)
            Elementwise.unary(f, pos, &y, count: pos.count)
            assertClose(y, pos.map { Float(ref(Double($0))) }, tolerance: 1e-5, "\(f)")
        }
    }

    /// The vectorisable exp, sigmoid and tanh over the whole float range, edges included.
    func testFastExpSigmoidTanhAcrossRange() {
        let edges: [Float] = [-1000, -100, -87, -20, -1e-3, 0, 1e-6, 0.3, 0.62, 0.63, 5, 20, 88, 88.7, 89,
                              1000, .infinity, -.infinity]
        let x = edges + stride(from: Float(-80), to: 80, by: 0.037).map { $0 }
        var y = [Float](repeating: 0, count: x.count)
        Elementwise.unary(.exp, x, &y, count: x.count)
        assertClose(y, x.map { Float(Foundation.exp(Double($0))) }, tolerance: 1e-6, "exp")
        Elementwise.unary(.sigmoid, x, &y, count: x.count)
        assertClose(y, x.map { Float(1 / (1 + Foundation.exp(-Double($0)))) }, tolerance: 1e-6, "sigmoid")
        Elementwise.unary(.tanh, x, &y, count: x.count)
        for i in x.indices {
            let ref = Foundation.tanh(Double(x[i]))
            XCTAssertEqual(Double(y[i]), ref, accuracy: 1e-6 * max(abs(ref), 1e-3), "tanh(\(x[i]))")
        }
        var nan: [Float] = [0, 0]
        for f in [UnaryFunction.exp, .sigmoid, .tanh] {
            Elementwise.unary(f, [.nan, .nan], &nan, count: 2)
            XCTAssertTrue(nan[0].isNaN, "\(f) keeps NaN")
        }
    }

    /// Round is half-to-even; expected from np.round (NumPy 2.4).
    func testRoundHalfToEven() {
        let x: [Float] = [0.5, 1.5, 2.5, -0.5, -2.5, 2.4, -3.6]
        var y = [Float](repeating: 9, count: x.count)
        Elementwise.unary(.round, x, &y, count: x.count)
        XCTAssertEqual(y, [0, 2, 2, -0, -2, 2, -4])
    }

    func testActivationsMatchDefinitions() {
        var rng = TestRandom(4)
        let x = rng.floats(70_001, -6, 6) + [0, -0.5, 0.5, 3, -3, 25, -25]
        let sp: (Double) -> Double = { Foundation.log(1 + Foundation.exp($0)) }
        let cases: [(UnaryFunction, (Double) -> Double)] = [
            (.relu, { max($0, 0) }),
            (.leakyRelu(alpha: 0.1), { $0 >= 0 ? $0 : 0.1 * $0 }),
            (.thresholdedRelu(alpha: 1), { $0 > 1 ? $0 : 0 }),
            (.sigmoid, { 1 / (1 + Foundation.exp(-$0)) }),
            (.hardSigmoid(alpha: 0.2, beta: 0.5), { max(0, min(1, 0.2 * $0 + 0.5)) }),
            (.hardSwish, { $0 * max(0, min(1, $0 / 6 + 0.5)) }),
            (.softplus, sp),
            (.softsign, { $0 / (1 + Swift.abs($0)) }),
            (.mish, { $0 * Foundation.tanh(sp($0)) }),
            (.elu(alpha: 2), { $0 >= 0 ? $0 : 2 * (Foundation.exp($0) - 1) }),
            (.celu(alpha: 2), { max(0, $0) + min(0, 2 * (Foundation.exp($0 / 2) - 1)) }),
            (.selu(alpha: 1.67326, gamma: 1.0507), { $0 > 0 ? 1.0507 * $0 : 1.0507 * (1.67326 * Foundation.exp($0) - 1.67326) }),
            (.gelu(tanhApproximation: false), { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }),
            (.gelu(tanhApproximation: true), {
                0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0)))
            }),
            (.shrink(bias: 0.5, lambd: 1.5), { $0 < -1.5 ? $0 + 0.5 : ($0 > 1.5 ? $0 - 0.5 : 0) }),
        ]
        for (f, ref) in cases {
            var y = [Float](repeating: .nan, count: x.count)
            Elementwise.unary(f, x, &y, count: x.count)
            assertClose(y, x.map { Float(ref(Double($0))) }, tolerance: 2e-5, "\(f)")
        }
        var y: [Float] = [0, 0]
        Elementwise.unary(.relu, [.nan, -1], &y, count: 2)
        XCTAssertTrue(y[0].isNaN, "relu keeps NaN as np.maximum does")
    }

    func testIntegerUnaryAndClassifiers() {
        var y = [Int64](repeating: 0, count: 4)
        Elementwise.unary(.neg, [-3, 0, 5, .min], &y, count: 4); XCTAssertEqual(y, [3, 0, -5, .min])
        Elementwise.unary(.abs, [-3, 0, 5, -1], &y, count: 4); XCTAssertEqual(y, [3, 0, 5, 1])
        Elementwise.unary(.sign, [-3, 0, 5, -1], &y, count: 4); XCTAssertEqual(y, [-1, 0, 1, -1])
        Elementwise.unary(.not, [0, 1, 1, 0], &y, count: 4); XCTAssertEqual(y, [1, 0, 0, 1])
        Elementwise.classify(.isNaN, [.nan, 1, .infinity, -.infinity], &y, count: 4); XCTAssertEqual(y, [1, 0, 0, 0])
        Elementwise.classify(.isInf, [.nan, 1, .infinity, -.infinity], &y, count: 4); XCTAssertEqual(y, [0, 0, 1, 1])
    }

    func testClipSelectPRelu() {
        var y = [Float](repeating: 0, count: 5)
        Elementwise.clip([-2, -0.5, 0.5, 2, .nan], &y, count: 5, lo: -1, hi: 1)
        XCTAssertEqual(Array(y.prefix(4)), [-1, -0.5, 0.5, 1]); XCTAssertTrue(y[4].isNaN)
        Elementwise.clip([-2, -0.5, 0.5, 2, 0], &y, count: 5, lo: 2, hi: 1)
        XCTAssertEqual(y, [1, 1, 1, 1, 1], "min > max gives max everywhere")
        var yi = [Int64](repeating: 0, count: 3)
        Elementwise.clip([-5, 3, 9], &yi, count: 3, lo: 0, hi: 6); XCTAssertEqual(yi, [0, 3, 6])

        // where: cond [2, 1], x [2, 3], y scalar.
        let layout = BroadcastLayout(inputs: [[2, 1], [2, 3], []])!
        var z = [Float](repeating: 0, count: 6)
        Elementwise.select(layout, [1, 0], [1, 2, 3, 4, 5, 6], [-1], &z)
        XCTAssertEqual(z, [1, 2, 3, -1, -1, -1])

        let pl = BroadcastLayout(inputs: [[1, 2, 2], [2, 1]], output: [1, 2, 2])!
        Elementwise.prelu(pl, [-1, 2, -3, 4], [0.5, 0.25], &z)
        XCTAssertEqual(Array(z.prefix(4)), [-0.5, 2, -0.75, 4])
    }

    func testBroadcastCopyAndAliasedFold() {
        let layout = BroadcastLayout(inputs: [[3, 1]], output: [3, 4])!
        var out = [Float](repeating: 0, count: 12)
        Elementwise.broadcastCopy(layout, [1, 2, 3], &out)
        XCTAssertEqual(out, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
        let fold = BroadcastLayout(inputs: [[3, 4], [4]], output: [3, 4])!
        out.withUnsafeMutableBufferPointer { p in
            Elementwise.binary(.add, fold, p.baseAddress!, [10, 20, 30, 40], p.baseAddress!)
        }
        XCTAssertEqual(out, [11, 21, 31, 41, 12, 22, 32, 42, 13, 23, 33, 43])
    }

    /// Expected values: NumPy 2.4 `astype` chains (float32 -> int64 -> uint8, int64 -> int8/uint16).
    func testCast() {
        func cast(_ t: Tensor, _ to: DType) -> Tensor {
            let out = Tensor(zeros: t.shape, dtype: to)
            Elementwise.cast(t, to: out)
            return out
        }
        let f = Tensor(shape: [5], floats: [300, -1, 3.9, -3.9, .nan])
        XCTAssertEqual(cast(f, .uint8).intArray, [44, 255, 3, 253, 0])
        XCTAssertEqual(cast(f, .int64).intArray, [300, -1, 3, -3, 0])
        XCTAssertEqual(cast(f, .bool).intArray, [1, 1, 1, 1, 1])
        XCTAssertEqual(cast(Tensor(shape: [2], floats: [0, -0.0]), .bool).intArray, [0, 0])
        let i = Tensor(shape: [3], ints: [200, -129, 70000])
        XCTAssertEqual(cast(i, .int8).intArray, [-56, 127, 112])
        XCTAssertEqual(cast(Tensor(shape: [2], ints: [70000, -1]), .uint16).intArray, [4464, 65535])
        XCTAssertEqual(cast(i, .float32).floatArray, [200, -129, 70000])
        XCTAssertEqual(cast(i, .bool).intArray, [1, 1, 1])
        XCTAssertEqual(cast(Tensor(shape: [1], ints: [-1], dtype: .uint64), .float32).floatArray, [Float(UInt64.max)])
    }
}
