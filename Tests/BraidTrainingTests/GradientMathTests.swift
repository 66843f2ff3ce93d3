import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

/// Checks a small graph's parameter gradients, computed by `TrainingPlan`, against central
/// finite differences of `L = sum(w * output)` with fixed pseudo-random weights `w`.
enum ElementwiseGradientCheck {
    /// Deterministic values in `[lo, hi)`.
    static func uniform(_ shape: [Int], _ lo: Float, _ hi: Float, seed: UInt64) -> Tensor {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return lo + (hi - lo) * Float(s >> 40) / Float(1 << 24)
        })
    }

    /// Values with magnitude in `[0.25, 2]` and random sign: at least 0.25 from a kink at 0.
    static func awayFromZero(_ shape: [Int], seed: UInt64) -> Tensor {
        let m = uniform(shape, 0.25, 2, seed: seed), s = uniform(shape, -1, 1, seed: seed &+ 99)
        for i in 0..<m.count where s.floats[i] < 0 { m.floats[i] = -m.floats[i] }
        return m
    }

    /// Values `offset + 0.3 k` for random integers k in [-5, 5]: two tensors with offsets
    /// 0.1 apart never tie and stay at least 0.1 apart.
    static func grid(_ shape: [Int], offset: Float, seed: UInt64) -> Tensor {
        let u = uniform(shape, -5, 6, seed: seed)
        for i in 0..<u.count { u.floats[i] = offset + 0.3 * u.floats[i].rounded(.down) }
        return u
    }

    /// One node named "n" reading `inputs` and writing "y".
    static func node(_ op: Op, _ inputs: [String], outputs: [String] = ["y"]) -> Node {
        Node(name: "n", op: op, inputs: inputs, outputs: outputs, sourceOp: "\(op)")
    }

    /// Builds the graph, runs forward and backward once, then compares every element of every
    /// trainable parameter's gradient (or `samples` evenly spread elements of it) with
    /// `(L(p + h) - L(p - h)) / 2h`. Returns the plan.
    @discardableResult
    static func run(_ nodes: [Node], trainable: [String: Tensor], constants: [String: Tensor] = [:],
                    output: String = "y", h: Float = 1e-2, tolerance: Float = 3e-3, samples: Int? = nil,
                    file: StaticString = #filePath, line: UInt = #line) throws -> TrainingPlan {
        var initializers = constants
        for (k, v) in trainable { initializers[k] = v }
        let graph = Graph(name: "g", inputs: [], outputs: [ValueDecl(name: output, dtype: .float32, shape: nil)],
                          initializers: initializers, nodes: nodes)
        let plan = try TrainingPlan.make(graph: graph, output: output, trainable: Set(trainable.keys), feeds: [:])
        let w = uniform(plan.output.shape, -1, 1, seed: 12345)
        func loss() -> Double {
            plan.forward()
            var s = 0.0
            for i in 0..<w.count { s += Double(w.floats[i]) * Double(plan.output.floats[i]) }
            return s
        }
        _ = loss()
        plan.outputGrad.floats.update(from: w.floats, count: w.count)
        plan.backward()
        for name in trainable.keys.sorted() {
            let p = plan.params[name]!, g = plan.grads[name]!
            XCTAssertEqual(g.shape, p.shape, "gradient shape of \(name)", file: file, line: line)
            let step = samples.map { max(1, p.count / $0) } ?? 1
            for i in stride(from: step / 2, to: p.count, by: step) {
                let old = p.floats[i]
                p.floats[i] = old + h; let up = loss()
                p.floats[i] = old - h; let down = loss()
                p.floats[i] = old
                let numeric = Float((up - down) / Double(2 * h))
                XCTAssertEqual(g.floats[i], numeric, accuracy: tolerance * max(1, abs(numeric)),
                               "\(name)[\(i)] of \(nodes.map(\.sourceOp))", file: file, line: line)
            }
        }
        return plan
    }
}

final class GradientMathTests: XCTestCase {
    typealias Check = ElementwiseGradientCheck

    func testUnaryRulesAwayFromKinks() throws {
        let general: [UnaryFunction] = [
            .relu, .leakyRelu(alpha: 0.1), .elu(alpha: 1.3), .selu(alpha: 1.67326, gamma: 1.0507),
            .celu(alpha: 0.8), .sigmoid, .tanh, .hardSigmoid(alpha: 0.2, beta: 0.5), .hardSwish,
            .softplus, .softsign, .gelu(tanhApproximation: false), .gelu(tanhApproximation: true),
            .mish, .exp, .neg, .abs, .erf, .thresholdedRelu(alpha: 0.1), .sin, .cos, .atan,
            .sinh, .cosh, .asinh, .shrink(bias: 0.1, lambd: 0.1),
        ]
        for (k, op) in general.enumerated() {
            try Check.run([Check.node(.unary(op), ["x"])],
                          trainable: ["x": Check.awayFromZero([2, 3, 4], seed: UInt64(k))])
        }
        let positive: [UnaryFunction] = [.log, .sqrt, .reciprocal, .acosh]
        for (k, op) in positive.enumerated() {
            let x = Check.uniform([3, 5], 1.2, 2.5, seed: UInt64(40 + k))
            try Check.run([Check.node(.unary(op), ["x"])], trainable: ["x": x])
        }
        let unit: [UnaryFunction] = [.asin, .acos, .atanh, .tan]
        for (k, op) in unit.enumerated() {
            try Check.run([Check.node(.unary(op), ["x"])], trainable: ["x": Check.uniform([7], -0.6, 0.6, seed: UInt64(50 + k))])
        }
    }

    func testHardSwishAndHardSigmoidSaturatedRegions() throws {
        // Inputs beyond +-3 (hardSwish) and the hardSigmoid corners at -2.5 and 2.5.
        let x = Tensor(shape: [6], floats: [-4.2, -3.5, 3.6, 4.4, -2.8, 2.9])
        try Check.run([Check.node(.unary(.hardSwish), ["x"])], trainable: ["x": x])
        try Check.run([Check.node(.unary(.hardSigmoid(alpha: 0.2, beta: 0.5)), ["x"])], trainable: ["x": x.copy()])
    }

    func testRoundingHasZeroGradient() throws {
        let x = Tensor(shape: [4], floats: [0.3, -1.2, 2.4, -0.7])
        let plan = try Check.run([Check.node(.unary(.floor), ["x"])], trainable: ["x": x])
        XCTAssertEqual(plan.grads["x"]!.floatArray, [0, 0, 0, 0])
    }

    static let broadcastPairs: [([Int], [Int])] = [
        ([2, 3, 4], [2, 3, 4]), ([2, 3, 4], [4]), ([3, 1], [2, 1, 4]), ([], [2, 3]), ([2, 1, 3], [1, 4, 1]),
    ]

    func testBinaryArithmeticWithBroadcasting() throws {
        for (k, (sa, sb)) in Self.broadcastPairs.enumerated() {
            let seed = UInt64(100 + 10 * k)
            for op: BinaryFunction in [.add, .sub, .mul] {
                try Check.run([Check.node(.binary(op), ["a", "b"])],
                              trainable: ["a": Check.uniform(sa, -2, 2, seed: seed), "b": Check.uniform(sb, -2, 2, seed: seed + 1)])
            }
            try Check.run([Check.node(.binary(.div), ["a", "b"])],
                          trainable: ["a": Check.uniform(sa, -2, 2, seed: seed + 2), "b": Check.awayFromZero(sb, seed: seed + 3)],
                          h: 2e-3)
            try Check.run([Check.node(.binary(.pow), ["a", "b"])],
                          trainable: ["a": Check.uniform(sa, 0.5, 2, seed: seed + 4), "b": Check.uniform(sb, -1.5, 1.5, seed: seed + 5)])
            for op: BinaryFunction in [.max, .min] {
                try Check.run([Check.node(.binary(op), ["a", "b"])],
                              trainable: ["a": Check.grid(sa, offset: 0.05, seed: seed + 6), "b": Check.grid(sb, offset: 0.15, seed: seed + 7)])
            }
        }
    }

    func testOneOperandTrainableAndConstantOther() throws {
        let plan = try Check.run([Check.node(.binary(.sub), ["a", "b"])],
                                 trainable: ["b": Check.uniform([3], -1, 1, seed: 3)],
                                 constants: ["a": Check.uniform([2, 3], -1, 1, seed: 4)])
        XCTAssertNil(plan.grads["a"])
    }

    func testMaxMinTiesSplitTheGradient() throws {
        for op: BinaryFunction in [.max, .min] {
            let a = Tensor(shape: [2], floats: [1, 2]), b = Tensor(shape: [2], floats: [1, 3])
            let graph = Graph(name: "g", inputs: [], outputs: [], initializers: ["a": a, "b": b],
                              nodes: [Check.node(.binary(op), ["a", "b"])])
            let plan = try TrainingPlan.make(graph: graph, output: "y", trainable: ["a", "b"], feeds: [:])
            plan.forward()
            plan.outputGrad.floats.update(from: [4, 8], count: 2)
            plan.backward()
            // Element 0 ties: 4 splits 2 / 2. Element 1: 8 goes to b for max, to a for min.
            XCTAssertEqual(plan.grads["a"]!.floatArray, op == .max ? [2, 0] : [2, 8])
            XCTAssertEqual(plan.grads["b"]!.floatArray, op == .max ? [2, 8] : [2, 0])
        }
    }

    func testSameValueOnBothOperandsAccumulates() throws {
        // y = x * x reads x twice: the two operand gradients add to 2x.
        let x = Check.uniform([5], -2, 2, seed: 8)
        let plan = try Check.run([Check.node(.binary(.mul), ["x", "x"])], trainable: ["x": x])
        XCTAssertEqual(plan.grads["x"]!.count, 5)
    }

    func testVariadicRules() throws {
        let shapes: [[Int]] = [[2, 3], [3], [1, 1]]
        for op: VariadicOp in [.sum, .mean] {
            var params: [String: Tensor] = [:]
            for (k, s) in shapes.enumerated() { params["x\(k)"] = Check.uniform(s, -2, 2, seed: UInt64(200 + k)) }
            try Check.run([Check.node(.variadic(op), ["x0", "x1", "x2"])], trainable: params)
        }
        for op: VariadicOp in [.max, .min] {
            var params: [String: Tensor] = [:]
            for (k, s) in shapes.enumerated() {
                params["x\(k)"] = Check.grid(s, offset: 0.05 + 0.1 * Float(k), seed: UInt64(210 + k))
            }
            try Check.run([Check.node(.variadic(op), ["x0", "x1", "x2"])], trainable: params)
        }
        try Check.run([Check.node(.variadic(.sum), ["x"])], trainable: ["x": Check.uniform([4], -1, 1, seed: 9)])
    }

    func testVariadicMaxTieGoesToFirstInput() throws {
        let graph = Graph(name: "g", inputs: [], outputs: [],
                          initializers: ["a": Tensor(shape: [2], floats: [5, 1]), "b": Tensor(shape: [2], floats: [5, 2])],
                          nodes: [Check.node(.variadic(.max), ["a", "b"])])
        let plan = try TrainingPlan.make(graph: graph, output: "y", trainable: ["a", "b"], feeds: [:])
        plan.forward()
        plan.outputGrad.floats.update(from: [3, 7], count: 2)
        plan.backward()
        XCTAssertEqual(plan.grads["a"]!.floatArray, [3, 0])
        XCTAssertEqual(plan.grads["b"]!.floatArray, [0, 7])
    }

    func testClipPassesGradientInsideTheBounds() throws {
        // Values on a grid that avoids the bounds -0.5 and 0.7 by at least 0.05.
        let x = Check.grid([3, 4], offset: 0.05, seed: 21)
        let lo = Tensor(shape: [], floats: [-0.5]), hi = Tensor(shape: [], floats: [0.7])
        let plan = try Check.run([Check.node(.clip, ["x", "lo", "hi"])], trainable: ["x": x],
                                 constants: ["lo": lo, "hi": hi])
        let g = plan.grads["x"]!
        XCTAssertTrue((0..<x.count).contains { g.floats[$0] == 0 } && (0..<x.count).contains { g.floats[$0] != 0 },
                      "the grid should have elements on both sides of the bounds")
        try Check.run([Check.node(.clip, ["x", "", "hi"])], trainable: ["x": x.copy()], constants: ["hi": hi])
    }

    func testPReluBothOperands() throws {
        try Check.run([Check.node(.prelu, ["x", "s"])],
                      trainable: ["x": Check.awayFromZero([2, 3, 2, 2], seed: 31), "s": Check.uniform([3, 1, 1], 0.05, 0.5, seed: 32)])
        // A per-channel [C] slope read channel-wise, as the forward does.
        try Check.run([Check.node(.prelu, ["x", "s"])],
                      trainable: ["x": Check.awayFromZero([2, 3, 2, 2], seed: 33), "s": Check.uniform([3], 0.05, 0.5, seed: 34)])
        try Check.run([Check.node(.prelu, ["x", "s"])],
                      trainable: ["x": Check.awayFromZero([2, 4], seed: 35), "s": Check.uniform([1], 0.05, 0.5, seed: 36)])
    }

    func testSelectRoutesToBothBranches() throws {
        let cond = Tensor(shape: [2, 1], ints: [1, 0], dtype: .bool)
        try Check.run([Check.node(.select, ["c", "x", "y2"])],
                      trainable: ["x": Check.uniform([2, 3], -1, 1, seed: 41), "y2": Check.uniform([3], -1, 1, seed: 42)],
                      constants: ["c": cond])
        let mixed = Tensor(shape: [3], ints: [1, 0, 1], dtype: .bool)
        try Check.run([Check.node(.select, ["c", "x", "y2"])],
                      trainable: ["x": Check.uniform([2, 1], -1, 1, seed: 43), "y2": Check.uniform([2, 3], -1, 1, seed: 44)],
                      constants: ["c": mixed])
    }

    func testCastFloatToFloatIsIdentity() throws {
        try Check.run([Check.node(.cast(to: .float32), ["x"])], trainable: ["x": Check.uniform([4, 2], -1, 1, seed: 51)])
    }

    func testIntegerCastHasNoGradient() throws {
        let graph = Graph(name: "g", inputs: [], outputs: [],
                          initializers: ["x": Check.uniform([2], -1, 1, seed: 1)],
                          nodes: [Check.node(.cast(to: .int64), ["x"], outputs: ["i"]),
                                  Check.node(.cast(to: .float32), ["i"], outputs: ["y"])])
        XCTAssertThrowsError(try TrainingPlan.make(graph: graph, output: "y", trainable: ["x"], feeds: [:]))
    }

    func testReduceRules() throws {
        let cases: [(ReduceFunction, [Int]?, Bool)] = [
            (.sum, [1], false), (.mean, [0, 2], true), (.mean, [2, 3], true), (.sumSquare, [1, 3], false),
            (.l2, [3], true), (.logSumExp, [0, 2], false), (.l1, [1], true), (.prod, [2], false),
            (.logSum, [3], false), (.mean, nil, false), (.sum, [-1], true),
        ]
        for (k, (kind, axes, keep)) in cases.enumerated() {
            let x = kind == .logSum ? Check.uniform([2, 3, 2, 3], 0.5, 2, seed: UInt64(60 + k))
                : Check.awayFromZero([2, 3, 2, 3], seed: UInt64(60 + k))
            try Check.run([Check.node(.reduce(kind, axes: axes, keepDims: keep, noopWithEmptyAxes: false), ["x"])],
                          trainable: ["x": x])
        }
        // Distinct values 0.05 apart (7 is coprime with 36), so h = 0.01 never changes the winner.
        let distinct = Tensor(shape: [2, 3, 2, 3], floats: (0..<36).map { Float(($0 * 7) % 36) * 0.05 - 0.9 })
        for kind: ReduceFunction in [.max, .min] {
            for axes in [[1], [0, 2], [3]] {
                try Check.run([Check.node(.reduce(kind, axes: axes, keepDims: false, noopWithEmptyAxes: false), ["x"])],
                              trainable: ["x": distinct])
            }
        }
    }

    func testReduceAxesFromInputAndNoop() throws {
        try Check.run([Check.node(.reduce(.sum, axes: nil, keepDims: true, noopWithEmptyAxes: false), ["x", "axes"])],
                      trainable: ["x": Check.uniform([3, 4], -1, 1, seed: 91)],
                      constants: ["axes": Tensor(shape: [1], ints: [0])])
        try Check.run([Check.node(.reduce(.sumSquare, axes: nil, keepDims: true, noopWithEmptyAxes: true), ["x"])],
                      trainable: ["x": Check.uniform([3, 4], -1, 1, seed: 92)])
    }

    func testReduceMaxTiesSplit() throws {
        let graph = Graph(name: "g", inputs: [], outputs: [],
                          initializers: ["x": Tensor(shape: [2, 3], floats: [1, 4, 4, 2, 0, -1])],
                          nodes: [Check.node(.reduce(.max, axes: [1], keepDims: false, noopWithEmptyAxes: false), ["x"])])
        let plan = try TrainingPlan.make(graph: graph, output: "y", trainable: ["x"], feeds: [:])
        plan.forward()
        plan.outputGrad.floats.update(from: [6, 5], count: 2)
        plan.backward()
        XCTAssertEqual(plan.grads["x"]!.floatArray, [0, 3, 3, 5, 0, 0])
    }

    func testChainOfMathAndReduce() throws {
        // mean over axis 1 of relu(x * w + b) - sigmoid(x), with w, b broadcast and x used twice.
        let nodes = [
            Node(name: "m", op: .binary(.mul), inputs: ["x", "w"], outputs: ["xw"], sourceOp: "Mul"),
            Node(name: "a", op: .binary(.add), inputs: ["xw", "b"], outputs: ["z"], sourceOp: "Add"),
            Node(name: "r", op: .unary(.relu), inputs: ["z"], outputs: ["h"], sourceOp: "Relu"),
            Node(name: "s", op: .unary(.sigmoid), inputs: ["x"], outputs: ["sx"], sourceOp: "Sigmoid"),
            Node(name: "d", op: .binary(.sub), inputs: ["h", "sx"], outputs: ["e"], sourceOp: "Sub"),
            Node(name: "q", op: .reduce(.mean, axes: [1], keepDims: false, noopWithEmptyAxes: false),
                 inputs: ["e"], outputs: ["y"], sourceOp: "ReduceMean"),
        ]
        // z = x*w + b kept away from 0: x, w positive, b of either sign but |b| small.
        let plan = try Check.run(nodes, trainable: [
            "x": Check.uniform([2, 3, 4], 0.5, 1.5, seed: 301),
            "w": Check.awayFromZero([4], seed: 302),
            "b": Check.uniform([3, 1], -0.1, 0.1, seed: 303),
        ])
        XCTAssertEqual(plan.backwardStepCount, 6)
    }

    func testLargeTensorsTakeTheParallelPaths() throws {
        // 2^17 elements: above the chunking thresholds, so the multi-threaded loops run.
        let shape = [2, 16, 64, 64]
        try Check.run([Check.node(.binary(.mul), ["a", "b"])],
                      trainable: ["a": Check.uniform(shape, -1, 1, seed: 501), "b": Check.uniform([16, 1, 64], -1, 1, seed: 502)],
                      tolerance: 1e-2, samples: 24)
        try Check.run([Check.node(.unary(.sigmoid), ["x"])], trainable: ["x": Check.uniform(shape, -2, 2, seed: 503)],
                      tolerance: 1e-2, samples: 16)
        try Check.run([Check.node(.reduce(.mean, axes: [2, 3], keepDims: true, noopWithEmptyAxes: false), ["x"])],
                      trainable: ["x": Check.uniform(shape, -1, 1, seed: 504)], tolerance: 1e-2, samples: 16)
        try Check.run([Check.node(.reduce(.sum, axes: [1], keepDims: false, noopWithEmptyAxes: false), ["x"])],
                      trainable: ["x": Check.uniform(shape, -1, 1, seed: 505)], tolerance: 1e-2, samples: 16)
    }
}
