import BraidData
import BraidTensor
import BraidTraining
import Foundation

/// A learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
/// 2017): training steps whose rate grows geometrically from `minLR` to `maxLR`, the loss
/// recorded at each, and a rate suggested from the curve.
public struct LearningRateRange: Codable, Sendable, Equatable {
    public var minLR: Float
    public var maxLR: Float
    /// The rate of each step taken, and the loss before that step's update.
    public var rates: [Float]
    public var losses: [Float]
    /// The losses smoothed by an exponential moving average (weight 0.9, bias-corrected).
    public var smoothed: [Float]
    /// A third of the edge rate: the largest rate, from the lowest smoothed loss on, up to
    /// which the smoothed loss stays within 5% of that minimum (`suggestion(rates:smoothed:minLR:)`);
    /// nil when fewer than three steps ran.
    public var suggested: Float?
    /// Why the test ended before its last step (`diverged`: the smoothed loss passed 4x its
    /// minimum or went non-finite), or nil.
    public var stoppedEarly: String?
    /// What the run was keyed on, so a cached result is reused only for the same setting.
    public var key: String
    /// Each step's gradient norm before clipping (the largest over members); nil in tests
    /// recorded before it was kept.
    public var gradientNorms: [Float]? = nil

    /// JSON for lr-range.json: a diverged step's loss is written as the string "nan" or "inf".
    public func json() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try enc.encode(self)
    }

    /// The rate to train with: the suggestion, or `fallback` when there is none.
    public func rate(fallback: Float) -> Float { suggested ?? fallback }

    /// A few lines summarising the curve: rate against smoothed loss at about eight points,
    /// the minimum and the suggestion.
    public func summary() -> String {
        guard !rates.isEmpty else { return "learning-rate range test: no steps ran" }
        var lines = ["learning-rate range test: \(rates.count) steps, rate \(fmtRate(minLR)) -> \(fmtRate(rates.last!))"
                     + (stoppedEarly.map { " (stopped: \($0))" } ?? "")]
        let picks = Set(stride(from: 0, to: rates.count, by: max(1, rates.count / 8)).map { $0 } + [rates.count - 1])
        for i in picks.sorted() {
            lines.append(String(format: "  rate %@  loss %.4f", fmtRate(rates[i]) as NSString, smoothed[i]))
        }
        if let norms = gradientNorms?.sorted(), !norms.isEmpty {
            lines.append(String(format: "  gradient norm: median %.3g, largest %.3g", norms[norms.count / 2], norms.last!))
        }
        if let best = bestIndex { lines.append("  lowest smoothed loss \(String(format: "%.4f", smoothed[best])) at rate \(fmtRate(rates[best]))") }
        if let suggested {
            lines.append("  suggested rate \(fmtRate(suggested)) (a third of the largest rate still within 5% of the lowest loss)")
        } else {
            lines.append("  too few steps before the loss diverged: no suggestion")
        }
        return lines.joined(separator: "\n")
    }

    /// The suggestion rule. A tenth of the rate at the minimum (the rule Braid used first) is
    /// too timid for short fine-tuning: on small targets the curve is flat and noisy until the
    /// loss turns up, so its minimum lands anywhere in the flat part; a tenth of it (1e-5 to
    /// 2e-4) left five small random-weight torchvision networks at chance after one epoch on a
    /// two-class digits task, in PyTorch as in Braid. The edge is where the smoothed loss
    /// first leaves the minimum's 5% band after the minimum; the minimum is looked for from
    /// the sixth step on (a quarter of the steps on short tests).
    public static func suggestion(rates: [Float], smoothed: [Float], minLR: Float) -> Float? {
        let n = min(rates.count, smoothed.count)
        guard n >= 3 else { return nil }
        // The first steps' smoothed loss is one or two batches' loss (the average is
        // bias-corrected), as noisy as a single batch: a minimum there is noise, not a rate.
        let skip = min(5, (n - 1) / 4)
        guard let best = (skip..<n).filter({ smoothed[$0].isFinite }).min(by: { smoothed[$0] < smoothed[$1] }) else { return nil }
        let band = smoothed[best] + 0.05 * abs(smoothed[best])
        var edge = best
        while edge + 1 < n, smoothed[edge + 1].isFinite, smoothed[edge + 1] <= band { edge += 1 }
        return max(minLR, rates[edge] / 3)
    }

    var bestIndex: Int? {
        smoothed.indices.filter { smoothed[$0].isFinite }.min { smoothed[$0] < smoothed[$1] }
    }

    /// The curve as a small SVG line chart (log-scaled rate against smoothed loss, the
    /// suggestion marked).
    public func svg() -> String {
        let w = 480.0, h = 300.0, left = 56.0, right = 16.0, top = 16.0, bottom = 40.0
        let pts = rates.indices.filter { smoothed[$0].isFinite }
        guard pts.count > 1 else { return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"40\"><text x=\"8\" y=\"24\">no finite losses</text></svg>" }
        let lo = log10(Double(minLR)), hi = log10(Double(max(rates.last!, minLR * 1.0001)))
        let ys = pts.map { Double(smoothed[$0]) }
        let ylo = ys.min()!, yhi = min(ys.max()!, ys.min()! + 4 * max(Double(smoothed[pts[0]]) - ys.min()!, 1e-6))
        func x(_ r: Float) -> Double { left + (w - left - right) * (log10(Double(r)) - lo) / max(hi - lo, 1e-9) }
        func y(_ v: Double) -> Double { top + (h - top - bottom) * (1 - (min(v, yhi) - ylo) / max(yhi - ylo, 1e-9)) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"11\">"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
        s += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"#444\"/>"
        s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"#444\"/>"
        for e in Int(lo.rounded(.up))...Int(hi.rounded(.down)) {
            let px = x(Float(pow(10, Double(e))))
            s += "<line x1=\"\(f1(px))\" y1=\"\(h - bottom)\" x2=\"\(f1(px))\" y2=\"\(h - bottom + 4)\" stroke=\"#444\"/>"
            s += "<text x=\"\(f1(px))\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">1e\(e)</text>"
        }
        s += "<text x=\"\((left + w - right) / 2)\" y=\"\(h - 6)\" text-anchor=\"middle\">learning rate (log scale)</text>"
        s += "<text transform=\"translate(14 \(f1((top + h - bottom) / 2))) rotate(-90)\" text-anchor=\"middle\">smoothed loss</text>"
        s += "<text x=\"\(left - 6)\" y=\"\(f1(y(ylo)))\" text-anchor=\"end\">\(String(format: "%.3f", ylo))</text>"
        s += "<text x=\"\(left - 6)\" y=\"\(f1(y(yhi)) )\" text-anchor=\"end\">\(String(format: "%.3f", yhi))</text>"
        let path = pts.map { "\(f1(x(rates[$0]))),\(f1(y(Double(smoothed[$0]))))" }.joined(separator: " ")
        s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>"
        if let suggested {
            let px = x(suggested)
            s += "<line x1=\"\(f1(px))\" y1=\"\(top)\" x2=\"\(f1(px))\" y2=\"\(h - bottom)\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>"
            s += "<text x=\"\(f1(px + 4))\" y=\"\(top + 12)\" fill=\"#d62728\">suggested \(fmtRate(suggested))</text>"
        }
        return s + "</svg>\n"
    }
}

extension LearningRateRange {
    /// Reads what `json()` wrote (in an extension, so the memberwise initialiser stays).
    public init(json data: Data) throws {
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        self = try dec.decode(LearningRateRange.self, from: data)
    }
}

private func f1(_ v: Double) -> String { String(format: "%.1f", v) }
private func fmtRate(_ r: Float) -> String { String(format: "%.2g", r) }

extension Finetuner {
    /// Runs a learning-rate range test on `train` and puts every member back as it was
    /// (weights, running statistics, optimiser state).
    ///
    /// Each step takes the next shuffled batch (seeded by the run's seed), computes the run's
    /// loss (cross-entropy per member, plus the collaborative term with several members) and
    /// updates with rate `minLR * (maxLR / minLR)^(i / (steps - 1))`, the gradient clipped
    /// as `options` says (`clipNorm`, `clipPercentile`). The test stops early
    /// when the smoothed loss passes 4x its minimum or turns non-finite.
    public func learningRateRange(train: any ImageDataset, minLR: Float = 1e-5, maxLR: Float = 1, steps: Int = 100,
                                  key: String = "", onStep: ((Int, Float, Float) -> Void)? = nil) throws -> LearningRateRange {
        precondition(steps >= 2 && minLR > 0 && maxLR > minLR)
        let loader = try BatchLoader(dataset: train, specs: members.map(\.model.spec), batchSize: options.batch,
                                     shuffle: true, dropLast: true, seed: options.seed ^ 0x4C52)
        guard loader.batchesPerEpoch > 0 else {
            throw TrainingError("the training split holds \(train.count) images, fewer than one batch of \(options.batch)")
        }
        try warmPrefixCache(train: train)
        let saved = members.map { m in m.setup.graph.initializers.filter { $0.value.dtype.isFloat }.mapValues { $0.copy() } }
        defer {
            for (j, m) in members.enumerated() {
                for (name, t) in m.setup.graph.initializers where t.dtype.isFloat {
                    if let old = saved[j][name] { t.buffer.raw.copyMemory(from: old.buffer.raw, byteCount: t.count * 4) }
                }
                m.optimizer.state = [:]
                m.optimizer.stepCount = 0
                m.resetClipping()
            }
        }
        var result = LearningRateRange(minLR: minLR, maxLR: maxLR, rates: [], losses: [], smoothed: [], suggested: nil,
                                       stoppedEarly: nil, key: key)
        var average: Double = 0, best = Float.infinity
        var epoch = 0
        var it = loader.epoch(epoch)
        let ratio = Double(maxLR / minLR)
        for i in 0..<steps {
            var next = try it.next()
            if next == nil {
                epoch += 1
                it = loader.epoch(epoch)
                next = try it.next()
            }
            guard let batch = next else { break }
            let rate = Float(Double(minLR) * pow(ratio, Double(i) / Double(steps - 1)))
            for (j, m) in members.enumerated() {
                try m.load(batch.inputs[j], indices: batch.indices)
                m.plan.forward()
            }
            var loss: Float = 0
            for m in members {
                loss += softmaxCrossEntropy(logits: m.plan.output, labels: batch.labels,
                                            smoothing: options.labelSmoothing, grad: m.plan.outputGrad)
            }
            if members.count > 1 && options.lambda > 0 {
                let consistency = options.consistency == .kl ? softmaxConsistency : logitConsistency
                loss += consistency(members.map(\.plan.output), options.lambda, members.map(\.plan.outputGrad))
            }
            average = 0.9 * average + 0.1 * Double(loss)
            let smooth = Float(average / (1 - pow(0.9, Double(i + 1))))
            result.rates.append(rate)
            result.losses.append(loss)
            result.smoothed.append(loss.isFinite ? smooth : .nan)
            onStep?(i, rate, loss)
            if !loss.isFinite || !smooth.isFinite { result.stoppedEarly = "diverged (non-finite loss)"; break }
            best = min(best, smooth)
            if i > 4 && smooth > 4 * best { result.stoppedEarly = "diverged (loss above 4x its minimum)"; break }
            var finite = true
            for m in members {
                m.plan.backward()
                for g in m.plan.grads.values where !allFinite(g) { finite = false }
            }
            if !finite { result.stoppedEarly = "diverged (non-finite gradient)"; break }
            // Clipped as the training will be, so that the rate it picks is one for that training.
            var norm: Float = 0
            for m in members {
                norm = max(norm, m.clipGradients(options) ?? gradientNorm(m.plan.grads))
                m.optimizer.step(params: m.plan.params, grads: m.plan.grads, lr: rate)
            }
            result.gradientNorms = (result.gradientNorms ?? []) + [norm]
        }
        result.suggested = LearningRateRange.suggestion(rates: result.rates, smoothed: result.smoothed, minLR: minLR)
        return result
    }
}
