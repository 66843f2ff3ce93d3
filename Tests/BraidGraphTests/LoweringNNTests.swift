import XCTest
import BraidTensor
@testable import BraidGraph
import BraidTestSupport

/// Lowers one node, plans its outputs, makes it and runs it once (twice when `twice`, to
/// check that a rerun over the same outputs gives the same answer).
private func runNN(_ op: Op, _ inputs: [Tensor?], outputs: Int = 1, constant: Bool = false) throws -> [Tensor] {
    let node = Node(name: "nn_node", op: op, inputs: inputs.enumerated().map { $1 == nil ? "" : "in\($0)" },
                    outputs: (0..<outputs).map { "out\($0)" }, sourceOp: "Test")
    let plan = inputs.map { t in t.map { PlanValue(shape: $0.shape, dtype: $0.dtype, constant: constant ? $0 : nil) } }
    let lowered = try lower(node, plan)
    let outs = lowered.outputs.map { Tensor(zeros: $0.shape, dtype: $0.dtype) }
    let run = lowered.make(inputs, outs)
    run()
    let first = outs.map { $0.copy() }
    run()
    for (a, b) in zip(first, outs) { XCTAssertEqual(a.doubleArray, b.doubleArray, "rerun differs") }
    return outs
}

private func random(_ shape: [Int], seed: UInt64) -> Tensor {
    var state = seed &* 2862933555777941757 &+ 3037000493
    let values = (0..<shape.product).map { _ -> Float in
        state = state &* 2862933555777941757 &+ 3037000493
        return Float(Int64(bitPattern: state >> 12) % 1_000_000) / 500_000 - 1
    }
    return Tensor(shape: shape, floats: values)
}

/// `t` has `shape` and is within `tol` of `expected` (shared scale-relative comparison).
private func assertShaped(_ t: Tensor, _ expected: [Float], shape: [Int], tol: Double = 1e-4,
                          file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(t.shape, shape, file: file, line: line)
    assertClose(t.floatArray, expected, tolerance: tol, file: file, line: line)
}

private func iota(_ shape: [Int], from start: Float = 0) -> Tensor {
    Tensor(shape: shape, floats: (0..<shape.product).map { Float($0) + start })
}

private func poolParams(_ kind: PoolKind, kernel: [Int], strides: [Int], pads: [Int] = [], autoPad: AutoPad = .explicit,
                        ceil: Bool = false, includePad: Bool = false) -> Op {
    .pool(PoolParams(kind: kind, kernel: kernel, strides: strides, pads: pads, dilations: [], autoPad: autoPad,
                     ceilMode: ceil, countIncludePad: includePad))
}

final class LoweringNNTests: XCTestCase {
    // Expected values in this file marked "onnx ref" were produced with onnx 1.23.2's
    // onnx.reference.ReferenceEvaluator (opset 19) on the same inputs (np.arange data).

    func testConvAutoPadSameUpperAndLower() throws {
        let x = iota([1, 1, 6, 6]), w = iota([1, 1, 3, 3])
        func conv(_ pad: AutoPad) -> Op {
            .conv(ConvParams(kernel: [3, 3], strides: [2, 2], pads: [], dilations: [], group: 1, autoPad: pad))
        }
        // onnx ref
        assertShaped(try runNN(conv(.sameLower), [x, w])[0],
                    [103, 196, 262, 411, 618, 690, 735, 1050, 1122], shape: [1, 1, 3, 3])
        assertShaped(try runNN(conv(.sameUpper), [x, w])[0],
                    [366, 438, 294, 798, 870, 546, 451, 481, 271], shape: [1, 1, 3, 3])
    }

    func testConv1DGroupedWithBiasMatchesLoop() throws {
        let n = 2, c = 4, l = 11, m = 6, group = 2, k = 3, stride = 2, pad = (1, 2), dil = 2
        let x = random([n, c, l], seed: 1), w = random([m, c / group, k], seed: 2), b = random([m], seed: 3)
        let op = Op.conv(ConvParams(kernel: [k], strides: [stride], pads: [pad.0, pad.1], dilations: [dil], group: group))
        let y = try runNN(op, [x, w, b])[0]
        let ol = (l + pad.0 + pad.1 - (k - 1) * dil - 1) / stride + 1
        var expected: [Float] = []
        let xs = x.floatArray, ws = w.floatArray, bs = b.floatArray
        for bn in 0..<n {
            for mo in 0..<m {
                for o in 0..<ol {
                    var s = bs[mo]
                    let g = mo / (m / group)
                    for ci in 0..<(c / group) {
                        for kk in 0..<k {
                            let i = o * stride + kk * dil - pad.0
                            if i >= 0 && i < l { s += xs[(bn * c + g * (c / group) + ci) * l + i] * ws[(mo * (c / group) + ci) * k + kk] }
                        }
                    }
                    expected.append(s)
                }
            }
        }
        assertShaped(y, expected, shape: [n, m, ol])
    }

    func testConvShapeErrorsNameTheNode() {
        let x = Tensor(zeros: [1, 3, 5, 5]), w = Tensor(zeros: [4, 2, 3, 3])
        let op = Op.conv(ConvParams(kernel: [3, 3], strides: [], pads: [], dilations: [], group: 1))
        XCTAssertThrowsError(try runNN(op, [x, w])) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("nn_node") && text.contains("[4, 2, 3, 3]"), text)
        }
        // 3-D convolutions run through the direct kernel; four spatial axes do not.
        let x4 = Tensor(zeros: [1, 1, 3, 3, 3, 3]), w4 = Tensor(zeros: [1, 1, 1, 1, 1, 1])
        let op4 = Op.conv(ConvParams(kernel: [1, 1, 1, 1], strides: [], pads: [], dilations: [], group: 1))
        XCTAssertThrowsError(try runNN(op4, [x4, w4])) { error in
            XCTAssertTrue("\(error)".contains("unsupported"), "\(error)")
        }
    }

    func testConvTransposeOutputShapePaddingAndSame() throws {
        let x = iota([1, 1, 3, 3]), w = Tensor(shape: [1, 2, 3, 3], floats: Array(repeating: 1, count: 18))
        func ct(strides: [Int], outPad: [Int] = [], outShape: [Int]? = nil, auto: AutoPad = .explicit) -> Op {
            .convTranspose(ConvTransposeParams(conv: ConvParams(kernel: [3, 3], strides: strides, pads: [], dilations: [],
                                                                group: 1, autoPad: auto),
                                               outputPadding: outPad, outputShape: outShape))
        }
        // onnx ref: output_shape [10, 8] and output_padding [1, 1] give the same tensor.
        let plane: [Float] = [0, 0, 1, 1, 3, 2, 2, 0, 0, 0, 1, 1, 3, 2, 2, 0, 0, 0, 1, 1, 3, 2, 2, 0,
                              3, 3, 7, 4, 9, 5, 5, 0, 3, 3, 7, 4, 9, 5, 5, 0, 3, 3, 7, 4, 9, 5, 5, 0,
                              6, 6, 13, 7, 15, 8, 8, 0, 6, 6, 13, 7, 15, 8, 8, 0, 6, 6, 13, 7, 15, 8, 8, 0,
                              0, 0, 0, 0, 0, 0, 0, 0]
        assertShaped(try runNN(ct(strides: [3, 2], outShape: [10, 8]), [x, w])[0], plane + plane, shape: [1, 2, 10, 8])
        assertShaped(try runNN(ct(strides: [3, 2], outPad: [1, 1]), [x, w])[0], plane + plane, shape: [1, 2, 10, 8])
        // onnx ref: auto_pad SAME_UPPER, strides 2.
        let same: [Float] = [0, 0, 1, 1, 3, 2, 0, 0, 1, 1, 3, 2, 3, 3, 8, 5, 12, 7, 3, 3, 7, 4, 9, 5,
                             9, 9, 20, 11, 24, 13, 6, 6, 13, 7, 15, 8]
        assertShaped(try runNN(ct(strides: [2, 2], auto: .sameUpper), [x, w])[0], same + same, shape: [1, 2, 6, 6])
    }

    func testAveragePoolPadsCeilAndAutoPad() throws {
        let x = iota([1, 1, 5, 5], from: 1), x4 = iota([1, 1, 4, 4], from: 1)
        // onnx ref
        assertShaped(try runNN(poolParams(.average, kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], includePad: true), [x])[0],
                    [1.7777778, 3.6666667, 3.1111112, 7.6666665, 13, 9.666667, 8.444445, 13.666667, 9.777778], shape: [1, 1, 3, 3])
        assertShaped(try runNN(poolParams(.average, kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1]), [x])[0],
                    [4, 5.5, 7, 11.5, 13, 14.5, 19, 20.5, 22], shape: [1, 1, 3, 3])
        assertShaped(try runNN(poolParams(.average, kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil: true,
                                         includePad: true), [x4])[0],
                    [1.5555556, 3.3333333, 2, 6.3333335, 11, 6, 4.5, 7.5, 4], shape: [1, 1, 3, 3])
        assertShaped(try runNN(poolParams(.average, kernel: [2, 2], strides: [2, 2], autoPad: .sameUpper), [x])[0],
                    [4, 6, 7.5, 14, 16, 17.5, 21.5, 23.5, 25], shape: [1, 1, 3, 3])
        assertShaped(try runNN(poolParams(.average, kernel: [2, 2], strides: [2, 2], autoPad: .sameLower), [x])[0],
                    [1, 2.5, 4.5, 8.5, 10, 12, 18.5, 20, 22], shape: [1, 1, 3, 3])
    }

    func testMaxPoolCeilModeAndIndices() throws {
        let x = iota([1, 1, 5, 5], from: 1), x4 = iota([1, 1, 4, 4], from: 1), x2 = iota([1, 1, 2, 2], from: 1)
        // onnx ref
        assertShaped(try runNN(poolParams(.max, kernel: [3, 3], strides: [2, 2], ceil: true), [x4])[0],
                    [11, 12, 15, 16], shape: [1, 1, 2, 2])
        // The last window must start inside the input: ceil((2 - 1) / 2) + 1 = 2 drops to 1.
        assertShaped(try runNN(poolParams(.max, kernel: [1, 1], strides: [2, 2], ceil: true), [x2])[0], [1], shape: [1, 1, 1, 1])
        let outs = try runNN(poolParams(.max, kernel: [5, 5], strides: [1, 1], pads: [2, 2, 2, 2]), [x], outputs: 2)
        assertShaped(outs[0], [13, 14, 15, 15, 15, 18, 19, 20, 20, 20, 23, 24, 25, 25, 25, 23, 24, 25, 25, 25, 23, 24, 25, 25, 25],
                    shape: [1, 1, 5, 5])
        XCTAssertEqual(outs[1].dtype, .int64)
        XCTAssertEqual(outs[1].intArray, [12, 13, 14, 14, 14, 17, 18, 19, 19, 19, 22, 23, 24, 24, 24, 22, 23, 24, 24, 24,
                                          22, 23, 24, 24, 24])
    }

    func testPool1D3DIntegerAndGlobalPool() throws {
        let x = iota([1, 2, 6])
        assertShaped(try runNN(poolParams(.max, kernel: [2], strides: [2]), [x])[0], [1, 3, 5, 7, 9, 11], shape: [1, 2, 3])
        let xi = Tensor(shape: [1, 1, 5], ints: [3, -9, 4, 4, 1], dtype: .uint8)
        let yi = try runNN(poolParams(.max, kernel: [2], strides: [2], ceil: true), [xi])[0]
        XCTAssertEqual(yi.dtype, .uint8)
        XCTAssertEqual(yi.intArray, [3, 4, 1])
        XCTAssertThrowsError(try runNN(poolParams(.average, kernel: [2], strides: [2]), [xi]))
        assertShaped(try runNN(poolParams(.average, kernel: [2, 2, 2], strides: [2, 2, 2]), [iota([1, 1, 2, 2, 4])])[0],
                    [(0 + 1 + 4 + 5 + 8 + 9 + 12 + 13) / 8, (2 + 3 + 6 + 7 + 10 + 11 + 14 + 15) / 8], shape: [1, 1, 1, 1, 2])
        let g = iota([2, 3, 2, 2])
        assertShaped(try runNN(.globalPool(.average), [g])[0], [1.5, 5.5, 9.5, 13.5, 17.5, 21.5], shape: [2, 3, 1, 1])
        assertShaped(try runNN(.globalPool(.max), [g])[0], [3, 7, 11, 15, 19, 23], shape: [2, 3, 1, 1])
        assertShaped(try runNN(.globalPool(.average), [iota([1, 2, 3, 2, 2])])[0], [5.5, 17.5], shape: [1, 2, 1, 1, 1])
    }

    func testGemmBroadcastsCAndTransposes() throws {
        let m = 3, k = 4, n = 5
        let a = random([k, m], seed: 4), b = random([n, k], seed: 5)
        let cs: [[Int]] = [[], [n], [1, n], [m, 1], [m, n]]
        for cShape in cs {
            let c = random(cShape, seed: 6)
            let y = try runNN(.gemm(transA: true, transB: true, alpha: 0.5, beta: 2), [a, b, c])[0]
            var expected: [Float] = []
            let av = a.floatArray, bv = b.floatArray, cv = c.floatArray
            for i in 0..<m {
                for j in 0..<n {
                    var s: Float = 0
                    for p in 0..<k { s += av[p * m + i] * bv[j * k + p] }
                    let ci = cShape.count == 2 ? (cShape[0] == 1 ? 0 : i) * cShape[1] + (cShape[1] == 1 ? 0 : j) : (cShape.isEmpty ? 0 : j)
                    expected.append(0.5 * s + 2 * cv[ci])
                }
            }
            assertShaped(y, expected, shape: [m, n])
        }
        XCTAssertThrowsError(try runNN(.gemm(transA: false, transB: false, alpha: 1, beta: 1),
                                       [random([2, 3], seed: 1), random([4, 5], seed: 2)]))
        let ai = Tensor(shape: [2, 2], ints: [1, 2, 3, 4]), bi = Tensor(shape: [2, 2], ints: [5, 6, 7, 8])
        let ci = Tensor(shape: [2], ints: [1, -1])
        XCTAssertEqual(try runNN(.gemm(transA: false, transB: false, alpha: 1, beta: 1), [ai, bi, ci])[0].intArray, [20, 21, 44, 49])
    }

    func testMatMulPromotionAndBroadcast() throws {
        func reference(_ a: [Float], _ b: [Float], _ m: Int, _ k: Int, _ n: Int) -> [Float] {
            (0..<(m * n)).map { idx in (0..<k).reduce(Float(0)) { $0 + a[(idx / n) * k + $1] * b[$1 * n + idx % n] } }
        }
        let a = random([2, 1, 3, 4], seed: 7), b = random([3, 4, 5], seed: 8)
        let y = try runNN(.matMul, [a, b])[0]
        var expected: [Float] = []
        for i in 0..<2 {
            for j in 0..<3 {
                expected += reference(Array(a.floatArray[(i * 12)..<(i * 12 + 12)]), Array(b.floatArray[(j * 20)..<(j * 20 + 20)]), 3, 4, 5)
            }
        }
        assertShaped(y, expected, shape: [2, 3, 3, 5])
        // Shared right operand: one fused GEMM.
        let a3 = random([2, 3, 4], seed: 9), w = random([4, 5], seed: 10)
        assertShaped(try runNN(.matMul, [a3, w])[0], reference(a3.floatArray, w.floatArray, 6, 4, 5), shape: [2, 3, 5])
        let v = random([4], seed: 11)
        assertShaped(try runNN(.matMul, [v, w])[0], reference(v.floatArray, w.floatArray, 1, 4, 5), shape: [5])
        let y2 = try runNN(.matMul, [a3, v])[0]
        assertShaped(y2, reference(a3.floatArray, v.floatArray, 6, 4, 1), shape: [2, 3])
        assertShaped(try runNN(.matMul, [v, v])[0], reference(v.floatArray, v.floatArray, 1, 4, 1), shape: [])
        let ai = Tensor(shape: [2, 2], ints: [1, 2, 3, 4]), bi = Tensor(shape: [2], ints: [5, 6])
        XCTAssertEqual(try runNN(.matMul, [ai, bi])[0].intArray, [17, 39])
        XCTAssertThrowsError(try runNN(.matMul, [random([2, 3], seed: 1), random([4, 2], seed: 1)])) { error in
            XCTAssertTrue("\(error)".contains("nn_node"))
        }
    }

    func testBatchNormConstantAndRuntimeParametersAgree() throws {
        let x = random([2, 3, 4, 5], seed: 12), scale = random([3], seed: 13), bias = random([3], seed: 14)
        let mean = random([3], seed: 15), variance = Tensor(shape: [3], floats: [0.5, 1.5, 2])
        let inputs: [Tensor?] = [x, scale, bias, mean, variance]
        let folded = try runNN(.batchNorm(epsilon: 1e-3), inputs, constant: true)[0]
        let runtime = try runNN(.batchNorm(epsilon: 1e-3), inputs, constant: false)[0]
        var expected: [Float] = []
        let xs = x.floatArray
        for i in 0..<xs.count {
            let c = (i / 20) % 3
            expected.append((xs[i] - mean.floatArray[c]) / (variance.floatArray[c] + 1e-3).squareRoot() * scale.floatArray[c]
                            + bias.floatArray[c])
        }
        assertShaped(folded, expected, shape: x.shape)
        assertShaped(runtime, expected, shape: x.shape)
        XCTAssertThrowsError(try runNN(.batchNorm(epsilon: 1e-3), [x, random([4], seed: 1), bias, mean, variance]))
    }

    func testInstanceAndLayerNorm() throws {
        let x = Tensor(shape: [1, 1, 4], floats: [1, 2, 3, 4])
        let y = try runNN(.instanceNorm(epsilon: 0), [x, Tensor(shape: [1], floats: [2]), Tensor(shape: [1], floats: [1])])[0]
        let sd = Float(1.25).squareRoot()
        assertShaped(y, [-1.5, -0.5, 0.5, 1.5].map { $0 / sd * 2 + 1 }, shape: [1, 1, 4])

        let lx = Tensor(shape: [2, 2, 2], floats: [1, 2, 3, 4, 0, 0, 0, 8])
        let scale = Tensor(shape: [2], floats: [1, 2]), bias = Tensor(shape: [1], floats: [0.5])
        let outs = try runNN(.layerNorm(axis: -2, epsilon: 0), [lx, scale, bias], outputs: 3)
        let s1 = Float(1.25).squareRoot(), s2 = Float(12).squareRoot()
        assertShaped(outs[0], [-1.5 / s1 + 0.5, -0.5 / s1 * 2 + 0.5, 0.5 / s1 + 0.5, 1.5 / s1 * 2 + 0.5,
                              -2 / s2 + 0.5, -2 / s2 * 2 + 0.5, -2 / s2 + 0.5, 6 / s2 * 2 + 0.5], shape: [2, 2, 2])
        assertShaped(outs[1], [2.5, 2], shape: [2, 1, 1])
        assertShaped(outs[2], [1 / s1, 1 / s2], shape: [2, 1, 1])
    }

    func testSoftmaxAxisAndCoerce2D() throws {
        let x = random([2, 3, 2], seed: 16)
        let xs = x.floatArray
        let perAxis = try runNN(.softmax(.softmax, axis: 1, coerce2D: false), [x])[0].floatArray
        for n in 0..<2 {
            for j in 0..<2 {
                let idx = (0..<3).map { (n * 3 + $0) * 2 + j }
                let sum = idx.map { exp(xs[$0]) }.reduce(0, +)
                for i in idx { XCTAssertEqual(perAxis[i], exp(xs[i]) / sum, accuracy: 1e-5) }
            }
        }
        let flat = try runNN(.softmax(.logSoftmax, axis: 1, coerce2D: true), [x])[0].floatArray
        for n in 0..<2 {
            let row = Array(xs[(n * 6)..<(n * 6 + 6)])
            let lse = log(row.map { exp($0) }.reduce(0, +))
            for i in 0..<6 { XCTAssertEqual(flat[n * 6 + i], row[i] - lse, accuracy: 1e-5) }
        }
        let hard = try runNN(.softmax(.hardmax, axis: -1, coerce2D: false), [Tensor(shape: [2, 3], floats: [1, 5, 2, 7, 0, 7])])[0]
        XCTAssertEqual(hard.floatArray, [0, 1, 0, 1, 0, 0])
    }

    func testLRNAndDropout() throws {
        let x = Tensor(shape: [1, 2, 1, 1], floats: [1, 2])
        assertShaped(try runNN(.lrn(size: 3, alpha: 3, beta: 1, bias: 1), [x])[0], [1.0 / 6, 2.0 / 6], shape: [1, 2, 1, 1])
        let outs = try runNN(.dropout, [x, nil, nil], outputs: 2)
        XCTAssertEqual(outs[0].floatArray, [1, 2])
        XCTAssertEqual(outs[1].dtype, .bool)
        XCTAssertEqual(outs[1].intArray, [1, 1])
    }
}
