import BraidData
import BraidTensor
import BraidTraining
import Foundation

/// Successive halving over freeze schemes: the multi-fidelity alternative to the swarm
/// (`SearchOptions.strategy == .halving`).
///
/// The candidates are `halvingCandidates` schemes drawn as the swarm draws its initial
/// particles (a Latin hypercube over `[0, L_j]`, floored), plus the all-zero scheme, without
/// repeats. With eta = `halvingEta` and R rungs (dividing the candidates by eta R times
/// leaves one), rung r (0..<R) brings every survivor to a cumulative budget of
/// `epochs * eta^(r - R)` epochs of the search subset, continuing from the weights it had (a
/// budget below one epoch is one epoch over the first part of a fixed shuffled order of the
/// subset; the parts are nested, so the prefix caches see each image at one index
/// throughout); each survivor is scored on the validation split and the best 1/eta go on.
/// The last rung's best is chosen: the one survivor a further rung would have trained to
/// `epochs`, a swarm fitness's budget. The cost is about `candidates * epochs * R / eta^R`
/// epochs instead of the swarm's `particles * iterations * epochs`.
public struct HalvingPlan: Sendable, Equatable {
    /// Survivors entering each rung.
    public var survivors: [Int]
    /// Epochs of the search subset each survivor has trained after each rung (cumulative).
    public var budgets: [Double]

    /// The plan for `candidates` schemes, `eta` and a top budget of `epochs`.
    public init(candidates: Int, eta: Int, epochs: Int) {
        var counts = [max(candidates, 1)]
        while counts.last! > 1 { counts.append(max(1, counts.last! / eta)) }
        // The lone survivor is the choice: it is not trained further here.
        let rungs = max(counts.count - 1, 1)
        survivors = Array(counts.prefix(rungs))
        budgets = (0..<rungs).map { r in Double(epochs) * pow(Double(eta), Double(r - rungs)) }
    }

    /// Epoch-equivalents of the search subset the plan trains, summed over candidates.
    public var cost: Double {
        var total = 0.0, done = 0.0
        for (n, b) in zip(survivors, budgets) { total += Double(n) * (b - done); done = b }
        return total
    }
}

extension LayerSearch {
    /// The candidate schemes: a Latin hypercube of `count` points over `[0, L_j]` (seeded as
    /// the swarm), floored, then the all-zero scheme, repeats removed (order kept).
    func halvingCandidates(count: Int) -> [[Int]] {
        var rng = SplitMix64(seed: options.swarm.seed ^ 0x4841_4C56)
        func unit() -> Double { Double(rng.next() >> 11) * 0x1p-53 }
        let bounds = unitCounts
        var points = [[Double]](repeating: [Double](repeating: 0, count: bounds.count), count: count)
        for (d, l) in bounds.enumerated() {
            var strata = Array(0..<count)
            for i in stride(from: count - 1, to: 0, by: -1) { strata.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            for i in 0..<count { points[i][d] = (Double(strata[i]) + unit()) / Double(count) * Double(l + 1) }
        }
        var out: [[Int]] = []
        for p in points.map({ ParticleSwarm.scheme(of: $0, upperBounds: bounds) }) + [bounds.map { _ in 0 }]
        where !out.contains(p) { out.append(p) }
        return out
    }

    /// Runs successive halving (see `HalvingPlan`) and writes `search.json` and `search.svg`
    /// like the swarm. Not resumable mid-search, and computed on this process alone.
    func runHalving(train: any ImageDataset, validation: any ImageDataset, runDir: String,
                    onEvaluation: (SchemeEvaluation) throws -> Void) throws -> SearchRecord {
        let start = Date()
        let cpuAtStart = processCPUSeconds()
        let subset = try searchSubset(of: train)
        var candidates = halvingCandidates(count: options.halvingCandidates)
        let plan = HalvingPlan(candidates: candidates.count, eta: options.halvingEta, epochs: options.epochs)
        // One shuffled order of the subset; each fractional budget trains on its first part.
        var order = Array(0..<subset.count)
        var rng = SplitMix64(seed: training.seed ^ 0x5348_5546)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        var models: [[SourceModel]] = candidates.map { _ in self.models.map { $0.pristineCopy() } }
        var evaluations: [SchemeEvaluation] = []
        var bests: [IterationBest] = []
        var trained = [Double](repeating: 0, count: candidates.count)
        let workDir = runDir + "/search-work"
        var alive = Array(candidates.indices)
        for (rung, budget) in plan.budgets.enumerated() {
            alive = Array(alive.prefix(plan.survivors[rung]))
            var scored: [(index: Int, fitness: Double)] = []
            for (k, c) in alive.enumerated() {
                let t0 = Date()
                let more = budget - trained[c]
                var o = training
                let data: any ImageDataset
                if more < 1 {
                    o.epochs = 1
                    data = DatasetSubset(subset, indices: Array(order.prefix(max(o.batch, Int((more * Double(order.count)).rounded())))))
                } else {
                    o.epochs = Int(more.rounded())
                    data = DatasetSubset(subset, indices: order)
                }
                trained[c] = budget
                try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
                let tuner = try Finetuner(models: models[c], depths: candidates[c], classes: classes, options: o,
                                          runDir: workDir, prefixCache: prefixCache)
                tuner.scoringOnly = true
                tuner.validationPrefixCache = validationPrefixCache
                try tuner.train(train: data, validation: validation, resume: false)
                try? FileManager.default.removeItem(atPath: workDir)
                guard let last = tuner.history.last else { throw TrainingError("the short fine-tune ran no epoch") }
                models[c] = tuner.models
                let e = SchemeEvaluation(iteration: rung, particle: k, scheme: candidates[c], fitness: last.validationAccuracy,
                                         seconds: Date().timeIntervalSince(t0))
                evaluations.append(e)
                scored.append((c, e.fitness))
                events?(.note(String(format: "halving rung %d/%d (%.2f epochs), scheme %d/%d: freeze %@ -> validation %.2f%% in %.1fs",
                                     rung + 1, plan.budgets.count, budget, k + 1, alive.count,
                                     e.scheme.map(String.init).joined(separator: ","), e.fitness * 100, e.seconds)))
                try onEvaluation(e)
            }
            // Best first; ties keep the earlier candidate.
            alive = scored.enumerated().sorted { a, b in
                a.element.fitness != b.element.fitness ? a.element.fitness > b.element.fitness : a.offset < b.offset
            }.map(\.element.index)
            bests.append(IterationBest(iteration: rung, scheme: candidates[alive[0]], fitness: scored.first { $0.index == alive[0] }!.fitness))
        }
        candidates = [] // the trained copies are no longer needed
        models = []
        let best = bests.last!
        let record = SearchRecord(sources: self.models.map(\.path), unitCounts: unitCounts, options: options, training: training,
                                  trainImages: subset.count, validationImages: validation.count, evaluations: evaluations,
                                  globalBest: bests, trajectory: [], cacheHits: 0, chosenScheme: best.scheme,
                                  chosenFitness: best.fitness, totalSeconds: Date().timeIntervalSince(start),
                                  prefixReuse: prefixReuse, cpuSeconds: processCPUSeconds() - cpuAtStart)
        try writeAtomically(try Self.encoder.encode(record), to: runDir + "/search.json")
        try writeAtomically(Data(searchChart(record, names: self.models.map(\.name)).utf8), to: runDir + "/search.svg")
        return record
    }
}
