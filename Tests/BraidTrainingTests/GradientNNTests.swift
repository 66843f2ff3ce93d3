import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

/// Backward rules of the NN family against central finite differences (see GradientCheck).
final class GradientNNTests: XCTestCase {
    // MARK: Matrix products

    func testGemmGradients() throws {
        let m = 3, k = 4, n = 5
        let cShapes: [[Int]] = [[n], [1, n], [m, 1], [m, n], [1]]
        var seed: UInt64 = 1
        for transA in [false, true] {
            for transB in [false, true] {
                for (ci, cShape) in cShapes.enumerated() where ci == 0 || (transA == transB) {
                    seed += 1
                    let a = gradTestTensor(transA ? [k, m] : [m, k], seed: seed)
                    let b = gradTestTensor(transB ? [n, k] : [k, n], seed: seed + 100)
                    let c = gradTestTensor(cShape, seed: seed + 200)
                    let g = singleNodeGraph(.gemm(transA: transA, transB: transB, alpha: 0.7, beta: 1.3),
                                            inputs: ["a", "b", "c"])
                    try checkGradients(graph: g, feed: ["a": a, "b": b, "c": c], trainable: [], output: "y")
                }
            }
        }
        // No C input, beta irrelevant.
        let g = singleNodeGraph(.gemm(transA: false, transB: true, alpha: 1, beta: 0), inputs: ["a", "b"])
        try checkGradients(graph: g, feed: ["a": gradTestTensor([2, 3], seed: 5), "b": gradTestTensor([4, 3], seed: 6)],
                           trainable: [], output: "y")
    }

    func testMatMulGradients() throws {
        let cases: [([Int], [Int])] = [
            ([2, 3, 4], [4, 5]),        // fused: shared B
            ([3, 4], [2, 4, 5]),        // broadcast A
            ([2, 1, 3, 4], [3, 4, 2]),  // both broadcast
            ([4], [2, 4, 3]),           // 1-D A
            ([2, 3, 4], [4]),           // 1-D B
            ([4], [4]),                 // dot product
        ]
        for (i, (sa, sb)) in cases.enumerated() {
            let g = singleNodeGraph(.matMul, inputs: ["a", "b"])
            try checkGradients(graph: g, feed: ["a": gradTestTensor(sa, seed: UInt64(10 + i)),
                                                "b": gradTestTensor(sb, seed: UInt64(20 + i))],
                               trainable: [], output: "y")
        }
    }

    // MARK: Convolution

    private func checkConv(_ x: [Int], _ w: [Int], strides: [Int], pads: [Int], dilations: [Int], group: Int,
                           autoPad: AutoPad = .explicit, bias: Bool = true, seed: UInt64,
                           file: StaticString = #filePath, line: UInt = #line) throws {
        let p = ConvParams(kernel: Array(w[2...]), strides: strides, pads: pads, dilations: dilations,
                           group: group, autoPad: autoPad)
        var feed = ["x": gradTestTensor(x, seed: seed), "w": gradTestTensor(w, seed: seed + 1)]
        if bias { feed["b"] = gradTestTensor([w[0]], seed: seed + 2) }
        let g = singleNodeGraph(.conv(p), inputs: bias ? ["x", "w", "b"] : ["x", "w"])
        try checkGradients(graph: g, feed: feed, trainable: [], output: "y", file: file, line: line)
    }

    func testConvGradientsIm2col() throws {
        try checkConv([2, 3, 6, 7], [4, 3, 3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1, seed: 1)
        // Strided, dilated, asymmetric pads.
        try checkConv([2, 2, 7, 8], [3, 2, 3, 2], strides: [2, 3], pads: [2, 0, 1, 1], dilations: [2, 1], group: 1, seed: 4)
        // Grouped.
        try checkConv([2, 4, 5, 5], [6, 2, 3, 3], strides: [1, 2], pads: [0, 1, 1, 0], dilations: [1, 1], group: 2, seed: 7)
        // Auto pad resolved at lowering (odd total: the extra pad at the end, then at the start).
        try checkConv([1, 2, 7, 6], [2, 2, 4, 3], strides: [2, 2], pads: [], dilations: [1, 1], group: 1,
                      autoPad: .sameUpper, seed: 10)
        try checkConv([1, 2, 7, 6], [2, 2, 4, 3], strides: [2, 2], pads: [], dilations: [1, 1], group: 1,
                      autoPad: .sameLower, bias: false, seed: 13)
    }

    func testConvGradientsPointwiseAnd1D() throws {
        try checkConv([2, 3, 4, 5], [4, 3, 1, 1], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1, seed: 21)
        try checkConv([2, 3, 11], [4, 3, 3], strides: [2], pads: [1, 2], dilations: [1], group: 1, seed: 24)
        try checkConv([2, 4, 9], [4, 1, 3], strides: [1], pads: [2, 0], dilations: [2], group: 4, seed: 27)
    }

    func testConvGradientsDepthwise() throws {
        // Generic path, channel multiplier 2, stride and padding.
        try checkConv([2, 3, 6, 7], [6, 1, 3, 2], strides: [2, 1], pads: [1, 0, 1, 1], dilations: [1, 2], group: 3, seed: 31)
        // The 3x3 vector forward path (rows of >= 8 interior outputs), stride 1 and 2.
        try checkConv([1, 2, 5, 12], [2, 1, 3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 2, seed: 34)
        try checkConv([1, 2, 5, 21], [2, 1, 3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], group: 2,
                      bias: false, seed: 37)
    }

    func testConvGradientsAsParameters() throws {
        // The weight and bias as trainable initializers, x as a fixed feed-derived input.
        let p = ConvParams(kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
        let g = singleNodeGraph(.conv(p), inputs: ["x", "w", "b"],
                                initializers: ["w": gradTestTensor([3, 2, 3, 3], seed: 41), "b": gradTestTensor([3], seed: 42)])
        try checkGradients(graph: g, feed: ["x": gradTestTensor([3, 2, 5, 5], seed: 43)], trainable: ["w", "b"], output: "y")
    }

    // MARK: Batch normalisation

    func testBatchNormTrainingForwardAndRunningStatistics() throws {
        let n = 3, c = 2, hw = 5, eps: Float = 1e-3, mom: Float = 0.1
        let x = gradTestTensor([n, c, 1, hw], seed: 51, range: -2...3)
        let scale = gradTestTensor([c], seed: 52), bias = gradTestTensor([c], seed: 53)
        let rm0: [Float] = [0.5, -0.25], rv0: [Float] = [1.5, 0.75]
        let g = singleNodeGraph(.batchNormTraining(epsilon: eps, momentum: mom), inputs: ["x", "s", "b", "rm", "rv"],
                                initializers: ["s": scale, "b": bias, "rm": Tensor(shape: [c], floats: rm0),
                                               "rv": Tensor(shape: [c], floats: rv0)],
                                extraOutputs: ["mean", "invstd"])
        var gg = g
        gg.inputs = [ValueDecl(name: "x", dtype: .float32, shape: nil)]
        let plan = try TrainingPlan.make(graph: gg, output: "y", trainable: ["s", "b"], feeds: ["x": x.shape])
        plan.inputs[0].tensor.floats.update(from: x.floats, count: x.count)
        plan.forward()
        // Naive reference in Float64.
        var expectRM = rm0.map(Double.init), expectRV = rv0.map(Double.init)
        for ch in 0..<c {
            var vals: [Double] = []
            for b in 0..<n { for i in 0..<hw { vals.append(Double(x.floats[(b * c + ch) * hw + i])) } }
            let mean = vals.reduce(0, +) / Double(vals.count)
            let variance = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(vals.count)
            let inv = 1 / (variance + Double(eps)).squareRoot()
            XCTAssertEqual(Double(plan.values["mean"]!.floats[ch]), mean, accuracy: 1e-5)
            XCTAssertEqual(Double(plan.values["invstd"]!.floats[ch]), inv, accuracy: 1e-4 * inv)
            for b in 0..<n {
                for i in 0..<hw {
                    let idx = (b * c + ch) * hw + i
                    let ref = (Double(x.floats[idx]) - mean) * inv * Double(scale.floats[ch]) + Double(bias.floats[ch])
                    XCTAssertEqual(Double(plan.output.floats[idx]), ref, accuracy: 1e-5)
                }
            }
            let unbiased = variance * Double(vals.count) / Double(vals.count - 1)
            expectRM[ch] = (1 - Double(mom)) * expectRM[ch] + Double(mom) * mean
            expectRV[ch] = (1 - Double(mom)) * expectRV[ch] + Double(mom) * unbiased
        }
        // The running statistics live in the graph's tensors, updated in place.
        for ch in 0..<c {
            XCTAssertEqual(Double(gg.initializers["rm"]!.floats[ch]), expectRM[ch], accuracy: 1e-6)
            XCTAssertEqual(Double(gg.initializers["rv"]!.floats[ch]), expectRV[ch], accuracy: 1e-6)
        }
        // A second run moves them again by the same rule.
        plan.forward()
        for ch in 0..<c {
            let mean = Double(plan.values["mean"]!.floats[ch])
            XCTAssertEqual(Double(gg.initializers["rm"]!.floats[ch]), (1 - Double(mom)) * expectRM[ch] + Double(mom) * mean,
                           accuracy: 1e-6)
        }
    }

    func testBatchNormTrainingGradients() throws {
        for (shape, seed) in [([3, 2, 2, 3], UInt64(61)), ([4, 3], UInt64(64))] {
            let c = shape[1]
            let g = singleNodeGraph(.batchNormTraining(epsilon: 1e-3, momentum: 0.1), inputs: ["x", "s", "b", "rm", "rv"],
                                    initializers: ["rm": Tensor(zeros: [c]), "rv": Tensor(shape: [c], floats: Array(repeating: 1, count: c))],
                                    extraOutputs: ["mean", "invstd"])
            try checkGradients(graph: g, feed: ["x": gradTestTensor(shape, seed: seed, range: -2...2),
                                                "s": gradTestTensor([c], seed: seed + 1, range: 0.5...1.5),
                                                "b": gradTestTensor([c], seed: seed + 2)],
                               trainable: [], output: "y")
        }
    }

    func testBatchNormInferenceGradients() throws {
        let c = 3
        let g = singleNodeGraph(.batchNorm(epsilon: 1e-3), inputs: ["x", "s", "b", "m", "v"])
        try checkGradients(graph: g, feed: ["x": gradTestTensor([2, c, 2, 2], seed: 71),
                                            "s": gradTestTensor([c], seed: 72),
                                            "b": gradTestTensor([c], seed: 73),
                                            "m": gradTestTensor([c], seed: 74),
                                            "v": gradTestTensor([c], seed: 75, range: 0.5...1.5)],
                           trainable: [], output: "y")
    }

    func testInstanceAndLayerNormGradients() throws {
        let inst = singleNodeGraph(.instanceNorm(epsilon: 1e-3), inputs: ["x", "s", "b"])
        try checkGradients(graph: inst, feed: ["x": gradTestTensor([2, 3, 2, 3], seed: 81, range: -2...2),
                                               "s": gradTestTensor([3], seed: 82), "b": gradTestTensor([3], seed: 83)],
                           trainable: [], output: "y")
        let layer = singleNodeGraph(.layerNorm(axis: 1, epsilon: 1e-3), inputs: ["x", "s", "b"])
        try checkGradients(graph: layer, feed: ["x": gradTestTensor([3, 2, 4], seed: 84, range: -2...2),
                                                "s": gradTestTensor([2, 4], seed: 85), "b": gradTestTensor([2, 4], seed: 86)],
                           trainable: [], output: "y")
        // Scale and bias broadcast along the normalised axes.
        let bcast = singleNodeGraph(.layerNorm(axis: -2, epsilon: 1e-3), inputs: ["x", "s", "b"])
        try checkGradients(graph: bcast, feed: ["x": gradTestTensor([2, 3, 4], seed: 87, range: -2...2),
                                                "s": gradTestTensor([4], seed: 88), "b": gradTestTensor([3, 1], seed: 89)],
                           trainable: [], output: "y")
    }

    // MARK: Pooling

    private func checkPool(_ kind: PoolKind, _ x: [Int], kernel: [Int], strides: [Int], pads: [Int], dilations: [Int] = [],
                           ceil: Bool = false, includePad: Bool = false, autoPad: AutoPad = .explicit, seed: UInt64,
                           file: StaticString = #filePath, line: UInt = #line) throws {
        let p = PoolParams(kind: kind, kernel: kernel, strides: strides, pads: pads, dilations: dilations,
                           autoPad: autoPad, ceilMode: ceil, countIncludePad: includePad)
        let g = singleNodeGraph(.pool(p), inputs: ["x"])
        // Distinct values at least 2/count apart keep every max away from a tie under ±step.
        try checkGradients(graph: g, feed: ["x": gradDistinctTensor(x, seed: seed, range: -4...4)], trainable: [],
                           output: "y", step: 1e-3, file: file, line: line)
    }

    func testMaxPoolGradients() throws {
        try checkPool(.max, [2, 2, 6, 7], kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], seed: 91)
        try checkPool(.max, [1, 2, 7, 7], kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], seed: 92)
        try checkPool(.max, [1, 2, 7, 8], kernel: [3, 2], strides: [2, 3], pads: [0, 1, 1, 0], dilations: [2, 1],
                      ceil: true, seed: 93)
        try checkPool(.max, [2, 3, 10], kernel: [3], strides: [2], pads: [1, 1], seed: 94)
        // Overlapping windows on a row long enough for the vector forward path.
        try checkPool(.max, [1, 1, 4, 20], kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], seed: 95)
    }

    func testAveragePoolGradients() throws {
        for include in [false, true] {
            try checkPool(.average, [2, 2, 6, 7], kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1],
                          includePad: include, seed: 101)
            try checkPool(.average, [1, 2, 7, 6], kernel: [2, 3], strides: [2, 2], pads: [0, 1, 1, 0],
                          ceil: true, includePad: include, seed: 102)
            try checkPool(.average, [2, 2, 9], kernel: [4], strides: [3], pads: [2, 1], ceil: true,
                          includePad: include, seed: 103)
        }
        try checkPool(.average, [1, 2, 5, 6], kernel: [2, 2], strides: [2, 2], pads: [], autoPad: .sameUpper, seed: 104)
        try checkPool(.average, [1, 1, 3, 20], kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], seed: 105)
    }

    func testGlobalPoolGradients() throws {
        for kind in [PoolKind.max, .average] {
            let g = singleNodeGraph(.globalPool(kind), inputs: ["x"])
            try checkGradients(graph: g, feed: ["x": gradDistinctTensor([2, 3, 3, 4], seed: 111, range: -3...3)],
                               trainable: [], output: "y", step: 1e-3)
        }
    }

    // MARK: Softmax and dropout

    func testSoftmaxGradients() throws {
        let cases: [(SoftmaxMode, Int, Bool)] = [
            (.softmax, 1, false), (.softmax, -1, false), (.logSoftmax, 1, false), (.logSoftmax, 2, false),
            (.softmax, 1, true), (.logSoftmax, 1, true),
        ]
        for (i, (kind, axis, coerce)) in cases.enumerated() {
            let g = singleNodeGraph(.softmax(kind, axis: axis, coerce2D: coerce), inputs: ["x"])
            try checkGradients(graph: g, feed: ["x": gradTestTensor([2, 3, 4], seed: UInt64(120 + i), range: -2...2)],
                               trainable: [], output: "y")
        }
    }

    func testInferenceDropoutPassesGradientThrough() throws {
        let g = singleNodeGraph(.dropout, inputs: ["x"])
        try checkGradients(graph: g, feed: ["x": gradTestTensor([3, 4], seed: 131)], trainable: [], output: "y")
    }

    func testTrainingDropoutMaskScaleAndGradient() throws {
        let ratio: Float = 0.25, count = 4000
        var g = singleNodeGraph(.dropoutTraining(ratio: ratio, seed: 7), inputs: ["x"],
                                initializers: ["x": gradTestTensor([count], seed: 141, range: 0.5...1.5)],
                                extraOutputs: ["mask"])
        g.inputs = [ValueDecl(name: "x", dtype: .float32, shape: [.fixed(count)])]
        let plan = try TrainingPlan.make(graph: g, output: "y", trainable: ["x"], feeds: [:])
        let x = plan.params["x"]!
        plan.forward()
        let mask1 = plan.values["mask"]!.floatArray
        let kept = mask1.filter { $0 == 1 }.count
        XCTAssertEqual(kept + mask1.filter { $0 == 0 }.count, count, "mask is 0/1")
        // 3,000 expected kept; the binomial standard deviation is about 27.
        XCTAssertEqual(Double(kept), Double(count) * 0.75, accuracy: 150)
        for i in 0..<count {
            XCTAssertEqual(plan.output.floats[i], x.floats[i] * mask1[i] / (1 - ratio), accuracy: 1e-6)
        }
        let dy = gradTestTensor([count], seed: 142)
        plan.outputGrad.floats.update(from: dy.floats, count: count)
        plan.backward()
        for i in 0..<count {
            XCTAssertEqual(plan.grads["x"]!.floats[i], dy.floats[i] * mask1[i] / (1 - ratio), accuracy: 1e-6)
        }
        // The stream advances: the next run draws another mask.
        plan.forward()
        XCTAssertNotEqual(plan.values["mask"]!.floatArray, mask1)
        // A fresh plan with the same seed repeats the first mask.
        let again = try TrainingPlan.make(graph: g, output: "y", trainable: ["x"], feeds: [:])
        again.forward()
        XCTAssertEqual(again.values["mask"]!.floatArray, mask1)
    }

    func testOpsWithoutBackwardSayWhich() throws {
        let g = singleNodeGraph(.lrn(size: 3, alpha: 1e-4, beta: 0.75, bias: 1), inputs: ["x"], sourceOp: "LRN")
        XCTAssertThrowsError(try checkGradients(graph: g, feed: ["x": gradTestTensor([1, 3, 2, 2], seed: 1)],
                                                trainable: [], output: "y")) { error in
            XCTAssertTrue("\(error)".contains("LRN"), "\(error)")
        }
    }
}

/// Whole small networks through `trainingSetup` and `TrainingPlan`.
final class GradientNNNetworkTests: XCTestCase {
    private func node(_ name: String, _ op: Op, _ inputs: [String], _ outputs: [String]) -> Node {
        Node(name: name, op: op, inputs: inputs, outputs: outputs, sourceOp: name)
    }

    private func convBNParams(_ c: Int, _ inC: Int, k: Int, seed: UInt64) -> [String: Tensor] {
        ["w": gradTestTensor([c, inC, k, k], seed: seed), "cb": gradTestTensor([c], seed: seed + 1),
         "s": gradTestTensor([c], seed: seed + 2, range: 0.5...1.5), "b": gradTestTensor([c], seed: seed + 3),
         "m": gradTestTensor([c], seed: seed + 4), "v": gradTestTensor([c], seed: seed + 5, range: 0.5...1.5)]
    }

    /// conv -> BN (trained: batch statistics) -> max pool -> conv over the whole map as the
    /// classifier: every parameter's gradient and the input's.
    func testConvBatchNormPoolHead() throws {
        var inits = convBNParams(3, 2, k: 3, seed: 1)
        inits["hw"] = gradTestTensor([4, 3, 3, 3], seed: 20)
        inits["hb"] = gradTestTensor([4], seed: 21)
        let pool = PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [], dilations: [], autoPad: .explicit,
                              ceilMode: false, countIncludePad: false)
        let g = Graph(
            name: "net", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
            outputs: [ValueDecl(name: "logits", dtype: .float32, shape: nil)], initializers: inits,
            nodes: [
                node("conv", .conv(ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)),
                     ["x", "w", "cb"], ["c"]),
                node("bn", .batchNorm(epsilon: 1e-3), ["c", "s", "b", "m", "v"], ["n"]),
                node("pool", .pool(pool), ["n"], ["p"]),
                node("head", .conv(ConvParams(kernel: [3, 3], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1)),
                     ["p", "hw", "hb"], ["logits"]),
            ])
        let setup = try g.trainingSetup(freezeDepth: 0)
        guard case .batchNormTraining = setup.graph.nodes[1].op else { return XCTFail("BN not switched to training mode") }
        XCTAssertEqual(setup.trainable, ["w", "cb", "s", "b", "hw", "hb"])
        let plan = try checkGradients(graph: setup.graph, feed: ["x": gradTestTensor([2, 2, 6, 6], seed: 30, range: -2...2)],
                                      trainable: setup.trainable, output: "logits", step: 1e-3)
        XCTAssertEqual(plan.backwardStepCount, 4)
    }

    /// conv -> BN -> relu -> pool -> flatten -> gemm. Relu and Flatten belong to other
    /// families: a missing rule for either fails the test, naming the node.
    func testConvBatchNormReluPoolGemm() throws {
        var inits = convBNParams(3, 2, k: 3, seed: 40)
        inits["fw"] = gradTestTensor([5, 12], seed: 50)
        inits["fb"] = gradTestTensor([5], seed: 51)
        let pool = PoolParams(kind: .average, kernel: [2, 2], strides: [2, 2], pads: [], dilations: [], autoPad: .explicit,
                              ceilMode: false, countIncludePad: false)
        let g = Graph(
            name: "net", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
            outputs: [ValueDecl(name: "logits", dtype: .float32, shape: nil)], initializers: inits,
            nodes: [
                node("conv", .conv(ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)),
                     ["x", "w", "cb"], ["c"]),
                node("bn", .batchNorm(epsilon: 1e-3), ["c", "s", "b", "m", "v"], ["n"]),
                node("relu", .unary(.relu), ["n"], ["r"]),
                node("pool", .pool(pool), ["r"], ["p"]),
                node("flatten", .flatten(axis: 1), ["p"], ["f"]),
                node("fc", .gemm(transA: false, transB: true, alpha: 1, beta: 1), ["f", "fw", "fb"], ["logits"]),
            ])
        let setup = try g.trainingSetup(freezeDepth: 0)
        for n in setup.graph.nodes where n.name == "relu" || n.name == "flatten" {
            do {
                _ = try lowerBackward(n, [PlanValue(shape: [2, 3, 4, 4], dtype: .float32)], [PlanValue(shape: [2, 48], dtype: .float32)],
                                      needs: [true])
            } catch {
                XCTFail("\(n.name) has no backward rule: \(error)")
                return
            }
        }
        try checkGradients(graph: setup.graph, feed: ["x": gradTestTensor([2, 2, 4, 4], seed: 60, range: -2...2)],
                           trainable: setup.trainable, output: "logits", step: 1e-3)
    }
}

/// Shapes large enough for the kernels' multi-core paths. Parameter gradients against finite
/// differences; input gradients of the linear ops by the adjoint identity
/// `<op(x), r> = <x, op'(r)>`, exact up to rounding.
final class GradientNNLargeTests: XCTestCase {
    private func adjointCheck(_ op: Op, x: Tensor, initializers: [String: Tensor], inputs: [String],
                              file: StaticString = #filePath, line: UInt = #line) throws {
        var inits = initializers
        inits["x"] = x.copy()
        var g = singleNodeGraph(op, inputs: inputs, initializers: inits)
        g.inputs = [ValueDecl(name: "x", dtype: .float32, shape: nil)]
        let plan = try TrainingPlan.make(graph: g, output: "y", trainable: ["x"], feeds: [:])
        plan.forward()
        let r = gradTestTensor(plan.output.shape, seed: 3)
        plan.outputGrad.floats.update(from: r.floats, count: r.count)
        plan.backward()
        var lhs: Double = 0, rhs: Double = 0, mag: Double = 0
        for i in 0..<r.count { lhs += Double(plan.output.floats[i]) * Double(r.floats[i]); mag += abs(Double(plan.output.floats[i] * r.floats[i])) }
        let dx = plan.grads["x"]!
        for i in 0..<x.count { rhs += Double(x.floats[i]) * Double(dx.floats[i]) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * mag, file: file, line: line)
    }

    func testDepthwiseLarge() throws {
        let p = ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 16)
        let x = gradTestTensor([2, 16, 20, 20], seed: 1)
        let w = gradTestTensor([16, 1, 3, 3], seed: 2)
        try adjointCheck(.conv(p), x: x, initializers: ["w": w], inputs: ["x", "w"])
        let g = singleNodeGraph(.conv(p), inputs: ["x", "w", "b"], initializers: ["x": x, "b": gradTestTensor([16], seed: 3)])
        try checkGradients(graph: g, feed: ["w": w], trainable: ["b"], output: "y")
    }

    func testIm2colLarge() throws {
        let p = ConvParams(kernel: [3, 3], strides: [2, 1], pads: [1, 0, 1, 2], dilations: [1, 2], group: 2)
        let x = gradTestTensor([5, 8, 14, 13], seed: 4)
        let w = gradTestTensor([6, 4, 3, 3], seed: 5)
        try adjointCheck(.conv(p), x: x, initializers: ["w": w], inputs: ["x", "w"])
        let g = singleNodeGraph(.conv(p), inputs: ["x", "w", "b"], initializers: ["x": x, "b": gradTestTensor([6], seed: 6)])
        try checkGradients(graph: g, feed: ["w": w], trainable: ["b"], output: "y")
    }

    func testPoolingLarge() throws {
        let x = gradTestTensor([4, 16, 24, 24], seed: 7)
        let avg = PoolParams(kind: .average, kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [],
                             autoPad: .explicit, ceilMode: true, countIncludePad: false)
        try adjointCheck(.pool(avg), x: x, initializers: [:], inputs: ["x"])
        try adjointCheck(.globalPool(.average), x: x, initializers: [:], inputs: ["x"])
    }

    func testBatchNormTrainingLarge() throws {
        let c = 8
        let g = singleNodeGraph(.batchNormTraining(epsilon: 1e-3, momentum: 0.1), inputs: ["x", "s", "b", "rm", "rv"],
                                initializers: ["x": gradTestTensor([4, c, 48, 48], seed: 8, range: -2...2),
                                               "rm": Tensor(zeros: [c]), "rv": Tensor(shape: [c], floats: Array(repeating: 1, count: c))],
                                extraOutputs: ["mean", "invstd"])
        try checkGradients(graph: g, feed: ["s": gradTestTensor([c], seed: 9), "b": gradTestTensor([c], seed: 10)],
                           trainable: [], output: "y")
    }
}
