import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

/// A float tensor of `shape` with values spread evenly-ish over `range`, from a seeded LCG.
func gradTestTensor(_ shape: [Int], seed: UInt64, range: ClosedRange<Float> = -1...1) -> Tensor {
    var s = seed &* 0x9E3779B97F4A7C15 | 1
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, floats: (0..<n).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        let u = Float(s >> 40) / Float(1 << 24)
        return range.lowerBound + u * (range.upperBound - range.lowerBound)
    })
}

/// A float tensor whose elements are a random permutation of evenly spaced distinct values
/// in `range`, at least `(range width) / count` apart: keeps max-pooling away from ties.
func gradDistinctTensor(_ shape: [Int], seed: UInt64, range: ClosedRange<Float> = -1...1) -> Tensor {
    let n = shape.reduce(1, *)
    var order = Array(0..<n)
    var s = seed &* 0x9E3779B97F4A7C15 | 1
    for i in stride(from: n - 1, to: 0, by: -1) {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        order.swapAt(i, Int(s >> 33) % (i + 1))
    }
    let width = range.upperBound - range.lowerBound
    return Tensor(shape: shape, floats: order.map { range.lowerBound + width * Float($0) / Float(max(1, n - 1)) })
}

/// Compares `TrainingPlan`'s gradients with central finite differences.
///
/// The scalar differentiated is `sum(output * r)` with `r` a fixed random tensor. Every float
/// feed in `feed` becomes a trainable initializer (so its gradient is checked too) along
/// with the initializers named in `trainable`; non-float feeds stay inputs. Each checked
/// element is moved by `±step` and the forward pass rerun; the loss is summed in Float64.
/// An element passes when `|analytic - numeric| <= tolerance * (|numeric| + scale)`, with
/// `scale` the largest numeric gradient magnitude of that tensor, at least 0.1 and at least a
/// tenth of the largest over all checked tensors (a gradient that is zero in exact arithmetic,
/// like a bias before batch normalisation, is then judged against the float noise of the rest).
/// Returns the plan (after the check) for further assertions.
@discardableResult
func checkGradients(graph: Graph, feed: [String: Tensor], trainable: Set<String>, output: String,
                    step: Float = 1e-2, tolerance: Float = 2e-3, seed: UInt64 = 99,
                    file: StaticString = #filePath, line: UInt = #line) throws -> TrainingPlan {
    var g = graph
    g.initializers = g.initializers.mapValues { $0.copy() }
    var names = trainable
    var feedShapes: [String: [Int]] = [:]
    var intFeeds: [String: Tensor] = [:]
    for (name, t) in feed {
        if t.dtype.isFloat {
            g.initializers[name] = t.copy()
            names.insert(name)
            if !g.inputs.contains(where: { $0.name == name }) {
                g.inputs.append(ValueDecl(name: name, dtype: .float32, shape: t.shape.map { .fixed($0) }))
            }
        } else {
            feedShapes[name] = t.shape
            intFeeds[name] = t
        }
    }
    let plan = try TrainingPlan.make(graph: g, output: output, trainable: names, feeds: feedShapes)
    for (name, t) in plan.inputs {
        if let src = intFeeds[name] { t.buffer.raw.copyMemory(from: src.buffer.raw, byteCount: src.count * 8) }
    }
    let weights = gradTestTensor(plan.output.shape, seed: seed)
    func loss() -> Double {
        plan.forward()
        var s: Double = 0
        for i in 0..<plan.output.count { s += Double(plan.output.floats[i]) * Double(weights.floats[i]) }
        return s
    }
    _ = loss()
    plan.outputGrad.floats.update(from: weights.floats, count: weights.count)
    plan.backward()
    var checks: [(name: String, analytic: [Float], numeric: [Double])] = []
    for name in names.sorted() {
        guard let param = plan.params[name] else {
            XCTFail("'\(name)' is not a trainable parameter of the plan", file: file, line: line)
            continue
        }
        guard let grad = plan.grads[name] else {
            XCTFail("no gradient for '\(name)'", file: file, line: line)
            continue
        }
        var numeric = [Double](repeating: 0, count: param.count)
        for i in 0..<param.count {
            let old = param.floats[i]
            param.floats[i] = old + step
            let up = loss()
            param.floats[i] = old - step
            let down = loss()
            param.floats[i] = old
            numeric[i] = (up - down) / Double(2 * step)
        }
        checks.append((name, grad.floatArray, numeric))
    }
    let globalScale = checks.map { $0.numeric.map(abs).max() ?? 0 }.max() ?? 0
    for (name, analytic, numeric) in checks {
        let scale = max(0.1, numeric.map(abs).max() ?? 0, 0.1 * globalScale)
        var failures = 0
        for i in 0..<numeric.count {
            let err = abs(Double(analytic[i]) - numeric[i])
            // Negated so that a NaN gradient (analytic or numeric) fails.
            if !(err <= Double(tolerance) * (abs(numeric[i]) + scale)) {
                failures += 1
                if failures <= 5 {
                    XCTFail("d/d\(name)[\(i)]: analytic \(analytic[i]), numeric \(numeric[i])", file: file, line: line)
                }
            }
        }
        if failures > 5 { XCTFail("d/d\(name): \(failures) of \(numeric.count) elements differ", file: file, line: line) }
    }
    return plan
}

/// A one-node graph: `inputs` named as given (feeds and initializers), output `"y"` (plus
/// `extraOutputs`).
func singleNodeGraph(_ op: Op, inputs: [String], initializers: [String: Tensor] = [:],
                     extraOutputs: [String] = [], sourceOp: String = "Test") -> Graph {
    let node = Node(name: "n", op: op, inputs: inputs, outputs: ["y"] + extraOutputs, sourceOp: sourceOp)
    return Graph(name: "test", inputs: [], outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                 initializers: initializers, nodes: [node])
}
