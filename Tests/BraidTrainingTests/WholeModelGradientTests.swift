import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
@testable import BraidTraining
import XCTest
import BraidTestSupport

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

    /// The imported network as the trainer sets it up with nothing frozen: every layer unit
    /// (each Conv and the Gemm, with the BatchNormalization after conv1) trains, and that
    /// batch normalisation runs in training mode.
    func trainingSetup() throws -> TrainingSetup {
        let imported = try importONNX(path: Self.dir.appendingPathComponent("smallcnn.onnx").path)
        let setup = try imported.trainingSetup(freezeDepth: 0)
        let modes = setup.graph.nodes.compactMap { n -> String? in
            switch n.op {
            case .batchNorm: return "inference"
            case .batchNormTraining: return "training"
            default: return nil
            }
        }
        XCTAssertEqual(modes, ["training"], "the BatchNormalization node runs in training mode")
        XCTAssertEqual(setup.trainable, Set(Self.parameters))
        return setup
    }

    func labels() throws -> [Int] {
        let t = try fixture("labels")
        return (0..<t.count).map { Int(t.ints[$0]) }
    }

    func testLogitsLossAndParameterGradientsMatchJAX() throws {
        let setup = try trainingSetup()
        let g = setup.graph
        let plan = try TrainingPlan.make(graph: g, output: "logits", trainable: setup.trainable,
                                         feeds: ["input": [4, 3, 16, 16]])
        let input = try fixture("input")
        XCTAssertEqual(plan.inputs.count, 1)
        plan.inputs[0].tensor.floats.update(from: input.floats, count: input.count)
        plan.forward()
        // Scales at least 1: `conv1.bias`'s true gradient is zero, the batch mean cancels it.
        assertClose(plan.output, try fixture("logits"), tolerance: 1e-4, "logits")
        let loss = softmaxCrossEntropy(logits: plan.output, labels: try labels(), grad: plan.outputGrad)
        let lossTensor = try fixture("loss")
        let refLoss = lossTensor.floats[0]
        XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * max(1, abs(refLoss)), "loss")
        plan.backward()
        XCTAssertEqual(Set(plan.grads.keys), Set(Self.parameters))
        var report: [String] = []
        for name in Self.parameters {
            guard let grad = plan.grads[name] else { XCTFail("no gradient for \(name)"); continue }
            let err = assertClose(grad, try fixture("grad_" + name), tolerance: 1e-4, "d loss / d \(name)")
            report.append("\(name) \(err.worst)")
        }
        print("whole-model gradient, max error / max |ref| per parameter:", report.joined(separator: ", "))

        // One forward pass updated the running statistics with momentum 0.1 from (0, 1).
        assertClose(g.initializers["bn1.running_mean"]!, try fixture("bn1.running_mean"), tolerance: 1e-4, "bn1 running mean")
        assertClose(g.initializers["bn1.running_var"]!, try fixture("bn1.running_var"), tolerance: 1e-4, "bn1 running variance")
    }

    /// The input gradient exercises the first Conv's data gradient, which training itself
    /// never needs: the input becomes a trainable initializer.
    func testInputGradientMatchesJAX() throws {
        let setup = try trainingSetup()
        var g = setup.graph
        g.initializers["input"] = try fixture("input")
        let trainable = setup.trainable.union(["input"])
        let plan = try TrainingPlan.make(graph: g, output: "logits", trainable: trainable, feeds: [:])
        XCTAssertTrue(plan.inputs.isEmpty)
        plan.forward()
        _ = softmaxCrossEntropy(logits: plan.output, labels: try labels(), grad: plan.outputGrad)
        plan.backward()
        guard let grad = plan.grads["input"] else { return XCTFail("no gradient for the input") }
        let err = assertClose(grad, try fixture("grad_input"), tolerance: 1e-4, "d loss / d input")
        print("whole-model gradient, d loss / d input: max error / max |ref| \(err.worst)")
    }
}
