import XCTest
import BraidTensor
@testable import BraidTraining

final class LossAndOptimizerTests: XCTestCase {
    func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
        var s = seed
        let n = shape.reduce(1, *)
        return Tensor(shape: shape, floats: (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(s >> 40) % 2000 - 1000) / 500
        })
    }

    /// Central finite differences of `f` against the analytic gradient.
    func checkGradient(_ x: Tensor, _ analytic: Tensor, _ f: () -> Float, tol: Float = 2e-3) {
        let h: Float = 1e-2
        for i in 0..<x.count {
            let old = x.floats[i]
            x.floats[i] = old + h; let up = f()
            x.floats[i] = old - h; let down = f()
            x.floats[i] = old
            let numeric = (up - down) / (2 * h)
            XCTAssertEqual(analytic.floats[i], numeric, accuracy: tol * max(1, abs(numeric)), "element \(i)")
        }
    }

    func testCrossEntropyValueAndGradient() {
        // log-softmax of [1, 2, 3] at label 2 is -0.40760596 (computed by hand: 3 - log(e+e^2+e^3)).
        let z = Tensor(shape: [1, 3], floats: [1, 2, 3])
        XCTAssertEqual(softmaxCrossEntropy(logits: z, labels: [2], grad: nil), 0.40760596, accuracy: 1e-6)
        for eps: Float in [0, 0.1] {
            let logits = randomTensor([4, 5], seed: 7)
            let labels = [0, 3, 4, 1]
            let g = Tensor(zeros: [4, 5])
            _ = softmaxCrossEntropy(logits: logits, labels: labels, smoothing: eps, grad: g)
            checkGradient(logits, g) { softmaxCrossEntropy(logits: logits, labels: labels, smoothing: eps, grad: nil) }
        }
    }

    func testConsistencyGradient() {
        let zs = (0..<3).map { randomTensor([2, 4], seed: UInt64(10 + $0)) }
        let grads = (0..<3).map { _ in Tensor(zeros: [2, 4]) }
        _ = logitConsistency(zs, weight: 0.2, grads: grads)
        for j in 0..<3 {
            checkGradient(zs[j], grads[j]) { logitConsistency(zs, weight: 0.2, grads: nil) }
        }
        // Two members at distance d per sample: each is d/2 from the mean; term = w * d / 2.
        let a = Tensor(shape: [1, 2], floats: [0, 0]), b = Tensor(shape: [1, 2], floats: [3, 4])
        XCTAssertEqual(logitConsistency([a, b], weight: 1, grads: nil), 2.5, accuracy: 1e-6)
    }

    func testKLConsistencyGradient() {
        let zs = (0..<3).map { randomTensor([2, 4], seed: UInt64(20 + $0)) }
        let grads = (0..<3).map { _ in Tensor(zeros: [2, 4]) }
        _ = softmaxConsistency(zs, weight: 0.2, grads: grads)
        for j in 0..<3 {
            checkGradient(zs[j], grads[j]) { softmaxConsistency(zs, weight: 0.2, grads: nil) }
        }
        // numpy: p_a = softmax([0, 0]), p_b = softmax([1, -1]), m = (p_a + p_b) / 2,
        // (KL(p_a || m) + KL(p_b || m)) / 2 = 0.0895408965
        let a = Tensor(shape: [1, 2], floats: [0, 0]), b = Tensor(shape: [1, 2], floats: [1, -1])
        XCTAssertEqual(softmaxConsistency([a, b], weight: 1, grads: nil), 0.0895409, accuracy: 1e-6)
        XCTAssertEqual(softmaxConsistency([a, a], weight: 1, grads: nil), 0, accuracy: 1e-7, "identical members agree")
    }

    func testSGDMomentumMatchesPyTorchRule() {
        // PyTorch: buf = g (first step), then buf = mu*buf + g; p -= lr*buf; wd adds wd*p to g.
        let p = Tensor(shape: [1], floats: [1])
        let g = Tensor(shape: [1], floats: [0.5])
        let opt = SGD(momentum: 0.9, weightDecay: 0.1)
        opt.step(params: ["w": p], grads: ["w": g], lr: 0.1)
        // d = 0.5 + 0.1*1 = 0.6; p = 1 - 0.06 = 0.94
        XCTAssertEqual(p.floats[0], 0.94, accuracy: 1e-6)
        opt.step(params: ["w": p], grads: ["w": g], lr: 0.1)
        // d = 0.5 + 0.094 = 0.594; buf = 0.54 + 0.594 = 1.134; p = 0.94 - 0.1134 = 0.8266
        XCTAssertEqual(p.floats[0], 0.8266, accuracy: 1e-6)
        XCTAssertEqual(opt.state.keys.sorted(), ["momentum/w"])
    }

    func testAdamFirstStepMovesByLearningRate() {
        // With bias correction, Adam's first step is lr * g / (|g| + eps) = lr * sign(g).
        let p = Tensor(shape: [2], floats: [1, -1])
        let g = Tensor(shape: [2], floats: [0.3, -2])
        Adam().step(params: ["w": p], grads: ["w": g], lr: 0.01)
        XCTAssertEqual(p.floats[0], 0.99, accuracy: 1e-6)
        XCTAssertEqual(p.floats[1], -0.99, accuracy: 1e-6)
        // AdamW decays the weight directly: 1 - lr*wd*1 first.
        let q = Tensor(shape: [1], floats: [1])
        Adam(weightDecay: 0.5, decoupled: true).step(params: ["w": q], grads: ["w": Tensor(shape: [1], floats: [1])], lr: 0.1)
        XCTAssertEqual(q.floats[0], 1 - 0.05 - 0.1, accuracy: 1e-5)
    }

    func testSchedules() {
        XCTAssertEqual(LRSchedule.step(stepSize: 30, gamma: 0.1).rate(base: 0.01, epoch: 29), 0.01, accuracy: 1e-9)
        XCTAssertEqual(LRSchedule.step(stepSize: 30, gamma: 0.1).rate(base: 0.01, epoch: 30), 0.001, accuracy: 1e-9)
        XCTAssertEqual(LRSchedule.cosine(epochs: 10, minLR: 0).rate(base: 1, epoch: 5), 0.5, accuracy: 1e-6)
        XCTAssertEqual(warmupFactor(step: 0, steps: 4), 0.25)
        XCTAssertEqual(warmupFactor(step: 9, steps: 4), 1)
    }

    func testClipGradientNorm() {
        let g = Tensor(shape: [2], floats: [3, 4])
        XCTAssertEqual(clipGradientNorm(["g": g], maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(g.floats[0], 0.6, accuracy: 1e-5)
        XCTAssertEqual(g.floats[1], 0.8, accuracy: 1e-5)
    }

    /// AutoClip: each step is clipped to the median (nearest rank) of the norms so far, its
    /// own included, so one outlier step moves the weights no further than a typical one.
    func testAdaptiveClipHoldsAnOutlierStepToTheMedianSoFar() {
        var clip = AdaptiveClip(percentile: 50)
        XCTAssertNil(clip.threshold)
        func step(_ values: [Float]) -> (Float, [Float]) {
            let g = Tensor(shape: [values.count], floats: values)
            let r = clip.clip(["a": g])
            return (r.threshold, g.floatArray)
        }
        // The first step is its own median: unchanged.
        XCTAssertEqual(step([3, 4]).1, [3, 4])
        XCTAssertEqual(step([0, 2]).1, [0, 2])   // norms {2, 5}: median (rank 1) 2
        XCTAssertEqual(step([6, 8]).0, 5)        // norms {2, 5, 10}: rank 2 is 5
        // An outlier 100 times the usual norm is scaled to the median so far (5), direction kept.
        let (limit, out) = step([300, 400])
        XCTAssertEqual(limit, 5)                 // {2, 5, 10, 500}: rank 2
        XCTAssertEqual(out[0], 3, accuracy: 1e-4)
        XCTAssertEqual(out[1], 4, accuracy: 1e-4)
        XCTAssertEqual(clip.norms, [2, 5, 10, 500])
        // Percentile 100 never clips.
        var never = AdaptiveClip(percentile: 100)
        let g = Tensor(shape: [2], floats: [1, 0])
        never.clip(["g": g]); g.floats[0] = 1000
        XCTAssertEqual(never.clip(["g": g]).norm, 1000)
        XCTAssertEqual(g.floatArray, [1000, 0])
        // A NaN norm is not recorded (the training loop skips or stops on such a step).
        let bad = Tensor(shape: [1], floats: [.nan])
        XCTAssertTrue(clip.clip(["b": bad]).norm.isNaN)
        XCTAssertEqual(clip.norms.count, 4)
    }

    /// The norm sums in name order, in double precision.
    func testGradientNormAcrossTensors() {
        let grads = ["b": Tensor(shape: [1], floats: [12]), "a": Tensor(shape: [2], floats: [3, 4])]
        XCTAssertEqual(gradientNorm(grads), 13, accuracy: 1e-6)
    }
}
