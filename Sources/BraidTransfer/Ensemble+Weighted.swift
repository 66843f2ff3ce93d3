import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

extension TrainOptions.Method {
    /// Whether the members train with the collaborative loss (weighted by `lambda`).
    /// `ensemble` and `ensemble-searched` train each member on its own cross-entropy.
    public var usesCollaborativeLoss: Bool { [.amcf, .amcfFixed, .collab, .amcfWeighted].contains(self) }

    /// Whether the freeze depths are searched by AMCF's swarm (when `freeze` is not given).
    public var searchesDepths: Bool { self == .amcf || self == .ensembleSearched }
}

extension TrainOptions {
    /// The settings the method trains with: `lambda` is 0 for several members trained each
    /// on its own (`ensemble`, `ensemble-searched`), whatever the configuration says.
    public var forMethod: TrainOptions {
        var o = self
        if !method.isSingleSource && !method.usesCollaborativeLoss { o.lambda = 0 }
        return o
    }
}

/// Every member's logits on a dataset, in the dataset's order, with its labels.
public struct MemberLogits: Sendable {
    public var classes: Int
    public var labels: [Int]
    /// `logits[j][i * classes + c]`: member j's logit of class c on image i.
    public var logits: [[Float]]

    public var count: Int { labels.count }

    /// Each image's predicted class: the argmax of the members' logits (or, with `softmax`,
    /// of their probabilities) summed with `weights` (nil: all 1; a 0 drops a member). The
    /// first class wins ties.
    public func predictions(weights: [Double]? = nil, softmax: Bool = false) -> [Int] {
        let k = classes
        var sum = [Double](repeating: 0, count: k)
        var out = [Int](repeating: 0, count: count)
        let useSoftmax = softmax && logits.count > 1
        for i in 0..<count {
            for c in 0..<k { sum[c] = 0 }
            for (j, z) in logits.enumerated() {
                let w = weights?[j] ?? 1
                guard w != 0 else { continue }
                if useSoftmax {
                    var top = z[i * k]
                    for c in 1..<k { top = max(top, z[i * k + c]) }
                    var total = 0.0
                    for c in 0..<k { total += Double(expf(z[i * k + c] - top)) }
                    for c in 0..<k { sum[c] += w * Double(expf(z[i * k + c] - top)) / total }
                } else {
                    for c in 0..<k { sum[c] += w * Double(z[i * k + c]) }
                }
            }
            var best = 0
            for c in 1..<k where sum[c] > sum[best] { best = c }
            out[i] = best
        }
        return out
    }

    /// The vote's evaluation (see `predictions`).
    public func evaluation(weights: [Double]? = nil, softmax: Bool = false) -> Evaluation {
        var e = Evaluation(classes: classes)
        for (p, y) in zip(predictions(weights: weights, softmax: softmax), labels) { e.add(predicted: p, label: y) }
        return e
    }

    /// Member j alone.
    public func memberEvaluation(_ j: Int) -> Evaluation {
        MemberLogits(classes: classes, labels: labels, logits: [logits[j]]).evaluation()
    }

    /// Per image, whether the vote was right: "1" or "0" per image, in order (compact in JSON).
    public func correctness(weights: [Double]? = nil, softmax: Bool = false) -> String {
        String(zip(predictions(weights: weights, softmax: softmax), labels).map { $0 == $1 ? "1" : "0" })
    }
}

/// Runs each member in inference mode over `data` (in order) and keeps its logits.
///
/// - Throws: `GraphError` when a member has no `logits` output.
public func memberLogits(members: [(graph: Graph, inputName: String, spec: InputSpec)], on data: any ImageDataset,
                         batchSize: Int, classes: Int) throws -> MemberLogits {
    var out = MemberLogits(classes: classes, labels: [], logits: members.map { _ in [] })
    out.labels.reserveCapacity(data.count)
    for j in members.indices { out.logits[j].reserveCapacity(data.count * classes) }
    let loader = try BatchLoader(dataset: data, specs: members.map(\.spec), batchSize: batchSize,
                                 shuffle: false, dropLast: false, seed: 0)
    let executors = members.map { Executor(graph: $0.graph) }
    let it = loader.epoch(0)
    while let batch = try it.next() {
        let n = batch.labels.count
        out.labels += batch.labels
        for (j, m) in members.enumerated() {
            let result = try executors[j].run([m.inputName: batch.inputs[j]])
            guard let z = result["logits"] else { throw GraphError(node: nil, "member \(j) has no 'logits' output") }
            out.logits[j] += UnsafeBufferPointer(start: z.floats, count: n * classes)
        }
    }
    return out
}

/// `amcf-weighted`'s vote: the members weighted by their validation accuracies, or equally
/// when that scores as well on validation (the plain sum: ties keep it); then, one at a
/// time, the member whose removal raises the ensemble's validation accuracy most is dropped
/// (weight 0), while some removal raises it (one member may be all that is left). Only the
/// validation split is read, and the vote never scores below the plain sum there.
public struct WeightedVote: Codable, Sendable, Equatable {
    /// Per member, its weight in the vote (0: dropped).
    public var weights: [Double]
    /// Whether the weights are the validation accuracies (false: all 1 before dropping).
    public var byAccuracy: Bool
    /// Per member, its validation accuracy alone.
    public var memberValidationAccuracy: [Double]
    /// The chosen vote's validation accuracy, and that of the plain sum over all members.
    public var validationAccuracy: Double
    public var unweightedValidationAccuracy: Double
    /// Indices of the dropped members, in the order they were dropped.
    public var dropped: [Int]
    /// Whether the members voting are the collaboratively trained ones (false: the ones
    /// trained each on its own, which scored higher on validation; nil: not compared).
    public var collaborative: Bool?

    enum CodingKeys: String, CodingKey {
        case weights, byAccuracy = "by_accuracy", memberValidationAccuracy = "member_validation_accuracy"
        case validationAccuracy = "validation_accuracy", unweightedValidationAccuracy = "unweighted_validation_accuracy"
        case dropped, collaborative
    }

    /// Chooses the weights from the members' validation logits.
    public static func choose(validation v: MemberLogits, softmax: Bool) -> WeightedVote {
        let n = v.logits.count
        let each = (0..<n).map { v.memberEvaluation($0).accuracy }
        let plain = v.evaluation(softmax: softmax).accuracy
        let weighted = v.evaluation(weights: each, softmax: softmax).accuracy
        let byAccuracy = weighted > plain
        var weights = byAccuracy ? each : [Double](repeating: 1, count: n)
        var current = max(weighted, plain)
        var dropped: [Int] = []
        while weights.filter({ $0 != 0 }).count >= 2 {
            var best: (j: Int, accuracy: Double)?
            for j in 0..<n where weights[j] != 0 {
                var w = weights
                w[j] = 0
                let a = v.evaluation(weights: w, softmax: softmax).accuracy
                // Among equal gains, drop the weaker member.
                if a > current && (best == nil || a > best!.accuracy || (a == best!.accuracy && each[j] < each[best!.j])) {
                    best = (j, a)
                }
            }
            guard let best else { break }
            weights[best.j] = 0
            dropped.append(best.j)
            current = best.accuracy
        }
        return WeightedVote(weights: weights, byAccuracy: byAccuracy, memberValidationAccuracy: each,
                            validationAccuracy: current, unweightedValidationAccuracy: plain, dropped: dropped,
                            collaborative: nil)
    }
}

extension Finetuner {
    /// Every member's logits on `data`, in inference mode, in the dataset's order.
    public func memberLogits(on data: any ImageDataset) throws -> MemberLogits {
        let all = members.map { (graph: $0.model.graph, inputName: $0.model.inputName, spec: $0.model.spec) }
        return try BraidTransfer.memberLogits(members: all, on: data, batchSize: options.batch, classes: classes.count)
    }
}

/// What amcf-weighted chose and how it tested.
public struct WeightedChoice {
    public var vote: WeightedVote
    /// The tuner whose members vote: the collaborative one or the independent one.
    public var tuner: Finetuner
    public var ensemble: Evaluation
    /// Each voting member's own test evaluation (unweighted).
    public var members: [Evaluation]
    /// Per test image, "1" where the vote was right.
    public var testCorrect: String
}

extension Finetuner {
    /// amcf-weighted: a vote (`WeightedVote`) for the members trained with the collaborative
    /// loss (`self`) and one for the same members trained each on its own (`independent`),
    /// both on `validation`; the higher-scoring one is kept (ties: the collaborative) and
    /// tested on `test`.
    public func weightedChoice(independent: Finetuner, validation: any ImageDataset, test: any ImageDataset)
        throws -> WeightedChoice {
        var a = WeightedVote.choose(validation: try memberLogits(on: validation), softmax: false)
        var b = WeightedVote.choose(validation: try independent.memberLogits(on: validation), softmax: false)
        a.collaborative = true
        b.collaborative = false
        let (vote, tuner) = b.validationAccuracy > a.validationAccuracy ? (b, independent) : (a, self)
        let t = try tuner.memberLogits(on: test)
        return WeightedChoice(vote: vote, tuner: tuner, ensemble: t.evaluation(weights: vote.weights),
                              members: t.logits.indices.map { t.memberEvaluation($0) },
                              testCorrect: t.correctness(weights: vote.weights))
    }
}

extension SourceModel {
    /// Multiplies the new head's parameters (`head.*`) by `weight`, so the member's logits
    /// are scaled by it: a weighted vote becomes a plain sum of logits.
    public mutating func scaleHead(by weight: Double) {
        for (name, t) in graph.initializers where name.hasPrefix("head.") && t.dtype == .float32 {
            let scaled = t.copy()
            let p = scaled.floats
            for i in 0..<scaled.count { p[i] *= Float(weight) }
            graph.initializers[name] = scaled
        }
    }
}

extension FinetuneRun {
    /// amcf-weighted after its collaborative training: trains the same members each on its
    /// own in `independent/`, keeps the set whose vote scores higher on validation (its
    /// checkpoint becomes the run's, and `run.json` records lambda 0 when it is the
    /// independent one), and writes `vote.json`.
    func weightedChoice(_ tuner: Finetuner, models: [SourceModel], depths: [Int], options o: TrainOptions,
                        split: (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset))
        throws -> WeightedChoice {
        var alone = o
        alone.lambda = 0
        let dir = runDir + "/independent"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let independent = try Finetuner(models: try record.buildModels(manifest: manifest), depths: depths,
                                         classes: record.classes, options: alone, runDir: dir)
        independent.events = events
        summary("amcf-weighted: training the same members each on its own (lambda 0) to compare on validation")
        try independent.train(train: split.train, validation: split.validation, resume: resuming)
        let chosen = try tuner.weightedChoice(independent: independent, validation: split.validation, test: split.test)
        if chosen.vote.collaborative == false {
            let fm = FileManager.default
            try? fm.removeItem(atPath: runDir + "/checkpoint.bin")
            try fm.copyItem(atPath: dir + "/checkpoint.bin", toPath: runDir + "/checkpoint.bin")
            var saved = record
            saved.options.lambda = 0
            try saved.save(runDir: runDir)
        }
        try writeAtomically(try JSONEncoder().encode(chosen.vote), to: runDir + "/vote.json")
        summary(String(format: "vote: the %@ members, validation %.2f%%, weights %@ (0: dropped)",
                       chosen.vote.collaborative == false ? "independently trained" : "collaboratively trained",
                       chosen.vote.validationAccuracy * 100,
                       chosen.vote.weights.map { String(format: "%.3f", $0) }.joined(separator: ", ")))
        return chosen
    }
}
