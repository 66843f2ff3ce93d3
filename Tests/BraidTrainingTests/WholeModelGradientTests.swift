import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
@testable import BraidTraining
import XCTest

/// One whole-model check against JAX: logits, loss and every parameter gradient of a small
/// CNN (Conv, training-mode BatchNormalization, Relu, MaxPool, depthwise strided Conv,
/// HardSwish, 1x1 Convs, a residual Add, GlobalAveragePool, Flatten, Gemm) trained with
/// softmax cross-entropy. The reference numbers come from `tools/make-grad-reference`, which
/// computes them in float64 with jax 0.10.2 and checks that onnxruntime runs `smallcnn.onnx`
/// the same as the JAX model.
final class WholeModelGradientTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/gradref")

    static let parameters = ["conv1.weight", "conv1.bias", "bn1.scale", "bn1.bias", "dw.weight",
                             "dw.bias", "pw.weight", "pw.bias", "proj.weight", "fc.weight", "fc.bias"]

    func fixture(_ name: String) throws -> Tensor {
        try Npy.read(path: Self.dir.appendingPathComponent(name + ".npy").path)
    }

    /// The imported network with its batch normalisation in training mode, as the trainer
    /// sees it with nothing frozen.
    func trainingGraph() throws -> Graph {
        let imported = try importONNX(path: Self.dir.appendingPathComponent("smallcnn.onnx").path)
        var g = try imported.trainingSetup(freezeDepth: 0).graph
        for i in g.nodes.indices {
            guard case .batchNorm(let eps) = g.nodes[i].op else { continue }
            g.nodes[i].op = .batchNormTraining(epsilon: eps, momentum: 0.1)
            g.nodes[i].outputs = [g.nodes[i].outputs[0], g.nodes[i].name + "::batch_mean",
                                  g.nodes[i].name + "::batch_invstd"]
        }
        let training = g.nodes.filter {
            if case .batchNormTraining = $0.op { return true } else { return false }
        }
        XCTAssertEqual(training.count, 1, "the BatchNormalization node runs in training mode")
        return g
    }

    /// Every float initializer except the running statistics, which the forward pass updates.
    func trainableSet(_ g: Graph) -> Set<String> {
        var running = Set<String>()
        for n in g.nodes {
            if case .batchNormTraining = n.op { running.formUnion(n.inputs[3...4]) }
        }
        return Set(g.initializers.filter { $0.value.dtype.isFloat && !running.contains($0.key) }.keys)
    }

    func labels() throws -> [Int] {
        let t = try fixture("labels")
        return (0..<t.count).map { Int(t.ints[$0]) }
    }

    /// Asserts `actual` matches `expected` within `rel` of the reference's largest magnitude
    /// (at least 1: `conv1.bias`'s true gradient is zero, the batch mean cancels it), and
    /// returns the largest difference relative to that scale.
    @discardableResult
    func assertClose(_ actual: Tensor, _ expected: Tensor, _ what: String, rel: Float = 1e-4) -> Float {
        XCTAssertEqual(actual.shape, expected.shape, "\(what): shape")
        guard actual.count == expected.count else { return .infinity }
        var scale: Float = 1
        for i in 0..<expected.count { scale = max(scale, abs(expected.floats[i])) }
        var worst: Float = 0, worstAt = 0
        for i in 0..<expected.count {
            let d = abs(actual.floats[i] - expected.floats[i])
            if !(d <= worst) { worst = d; worstAt = i }
        }
        XCTAssertLessThanOrEqual(worst / scale, rel,
            "\(what): element \(worstAt) is \(actual.floats[worstAt]), JAX says \(expected.floats[worstAt]) (max |ref| \(scale))")
        return worst / scale
    }

    func testLogitsLossAndParameterGradientsMatchJAX() throws {
        let g = try trainingGraph()
        let trainable = trainableSet(g)
        XCTAssertEqual(trainable, Set(Self.parameters))
        let plan = try TrainingPlan.make(graph: g, output: "logits", trainable: trainable,
                                         feeds: ["input": [4, 3, 16, 16]])
        let input = try fixture("input")
        XCTAssertEqual(plan.inputs.count, 1)
        plan.inputs[0].tensor.floats.update(from: input.floats, count: input.count)
        plan.forward()
        assertClose(plan.output, try fixture("logits"), "logits")
        let loss = softmaxCrossEntropy(logits: plan.output, labels: try labels(), grad: plan.outputGrad)
        let refLoss = try fixture("loss").floats[0]
        XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * max(1, abs(refLoss)), "loss")
        plan.backward()
        XCTAssertEqual(Set(plan.grads.keys), Set(Self.parameters))
        var report: [String] = []
        for name in Self.parameters {
            guard let grad = plan.grads[name] else { XCTFail("no gradient for \(name)"); continue }
            let err = assertClose(grad, try fixture("grad_" + name), "d loss / d \(name)")
            report.append("\(name) \(err)")
        }
        print("whole-model gradient, max error / max |ref| per parameter:", report.joined(separator: ", "))

        // One forward pass updated the running statistics with momentum 0.1 from (0, 1).
        assertClose(g.initializers["bn1.running_mean"]!, try fixture("bn1.running_mean"), "bn1 running mean")
        assertClose(g.initializers["bn1.running_var"]!, try fixture("bn1.running_var"), "bn1 running variance")
    }

    /// The input gradient exercises the first Conv's data gradient, which training itself
    /// never needs: the input becomes a trainable initializer.
    func testInputGradientMatchesJAX() throws {
        var g = try trainingGraph()
        let input = try fixture("input")
        g.initializers["input"] = input
        let trainable = trainableSet(g)
        XCTAssertTrue(trainable.contains("input"))
        let plan = try TrainingPlan.make(graph: g, output: "logits", trainable: trainable, feeds: [:])
        XCTAssertTrue(plan.inputs.isEmpty)
        plan.forward()
        _ = softmaxCrossEntropy(logits: plan.output, labels: try labels(), grad: plan.outputGrad)
        plan.backward()
        guard let grad = plan.grads["input"] else { return XCTFail("no gradient for the input") }
        let err = assertClose(grad, try fixture("grad_input"), "d loss / d input")
        print("whole-model gradient, d loss / d input: max error / max |ref| \(err)")
    }
}
