import BraidData
import BraidTensor
import BraidTraining
import Foundation

/// Settings of ALS's genetic algorithm over a per-unit freeze bitmask.
public struct GeneticOptions: Codable, Sendable, Equatable {
    public var population: Int = 8
    /// Generations after the initial population's evaluation.
    public var generations: Int = 4
    /// Probability that two selected parents are crossed (single point) rather than copied.
    public var crossover: Double = 0.8
    /// Per-bit flip probability of a child.
    public var mutation: Double = 0.1
    public var seed: UInt64 = 0

    public init() {}
}

/// One evaluated bitmask (true: the unit is frozen).
public struct MaskEvaluation: Codable, Sendable, Equatable {
    public var generation: Int
    public var mask: [Bool]
    public var fitness: Double
    public var seconds: Double
}

/// What the genetic search did.
public struct GeneticResult: Codable, Sendable {
    public var evaluations: [MaskEvaluation]
    /// Best fitness after each generation (index 0: the initial population).
    public var bestPerGeneration: [Double]
    public var bestMask: [Bool]
    public var bestFitness: Double
    public var cacheHits: Int
}

/// A genetic algorithm maximising a fitness over bit vectors of length `bits`.
///
/// The initial population is uniform random bits. Each generation keeps the best individual
/// (elitism) and fills the rest with children of parents chosen by binary tournament:
/// crossed at one uniform point with probability `crossover`, then every bit flipped with
/// probability `mutation`. Identical masks are evaluated once. Seeded and deterministic.
public struct GeneticSearch {
    public let options: GeneticOptions
    public let bits: Int

    public init(bits: Int, options: GeneticOptions) throws {
        guard bits >= 1 else { throw TrainingError("the genetic search needs at least one bit") }
        guard options.population >= 2, options.generations >= 0 else {
            throw TrainingError("the genetic search needs a population of at least 2 and non-negative generations, got \(options.population) and \(options.generations)",
                                setting: "gaPopulation")
        }
        guard (0...1).contains(options.crossover), (0...1).contains(options.mutation) else {
            throw TrainingError("the genetic crossover and mutation are probabilities in [0, 1], got \(options.crossover) and \(options.mutation)",
                                setting: "gaCrossover")
        }
        self.bits = bits; self.options = options
    }

    public func run(onEvaluation: (MaskEvaluation) throws -> Void = { _ in },
                    fitness: ([Bool]) throws -> Double) throws -> GeneticResult {
        var rng = SplitMix64(seed: options.seed ^ 0x6A5)
        func unit() -> Double { Double(rng.next() >> 11) * 0x1p-53 }
        var cache: [[Bool]: Double] = [:]
        var evaluations: [MaskEvaluation] = []
        var hits = 0
        func score(_ mask: [Bool], generation: Int) throws -> Double {
            if let f = cache[mask] { hits += 1; return f }
            let t0 = Date()
            let f = try fitness(mask)
            cache[mask] = f
            let e = MaskEvaluation(generation: generation, mask: mask, fitness: f, seconds: Date().timeIntervalSince(t0))
            evaluations.append(e)
            try onEvaluation(e)
            return f
        }
        var population = (0..<options.population).map { _ in (0..<bits).map { _ in rng.next() & 1 == 1 } }
        var scores = try population.map { try score($0, generation: 0) }
        var bestPer: [Double] = [scores.max()!]
        for g in stride(from: 1, through: options.generations, by: 1) {
            let elite = scores.indices.max { scores[$0] < scores[$1] }!
            var next = [population[elite]]
            func pick() -> [Bool] {
                let a = Int(rng.next() % UInt64(population.count)), b = Int(rng.next() % UInt64(population.count))
                return scores[a] >= scores[b] ? population[a] : population[b]
            }
            while next.count < options.population {
                var x = pick(), y = pick()
                if bits > 1 && unit() < options.crossover {
                    let point = 1 + Int(rng.next() % UInt64(bits - 1))
                    let (hx, hy) = (x, y)
                    x = Array(hx[..<point] + hy[point...])
                    y = Array(hy[..<point] + hx[point...])
                }
                for i in 0..<bits {
                    if unit() < options.mutation { x[i].toggle() }
                    if unit() < options.mutation { y[i].toggle() }
                }
                next.append(x)
                if next.count < options.population { next.append(y) }
            }
            population = next
            scores = try population.map { try score($0, generation: g) }
            bestPer.append(max(bestPer.last!, scores.max()!))
        }
        var best = evaluations[0]
        for e in evaluations where e.fitness > best.fitness { best = e }
        return GeneticResult(evaluations: evaluations, bestPerGeneration: bestPer, bestMask: best.mask,
                             bestFitness: best.fitness, cacheHits: hits)
    }
}

/// ALS: a genetic search over which layer units of one source to freeze, each mask scored by
/// validation accuracy after a short fine-tune of a fresh copy of the model.
public final class ALSSearch {
    public let model: SourceModel
    public let classes: [String]
    public let training: TrainOptions
    public let options: GeneticOptions
    /// Shared by every fitness evaluation (frozen prefixes of the same cut recur).
    public let cache: PrefixCache?
    /// Receives one note per fitness evaluation (nil: nothing is reported).
    public var events: TrainingEvents?

    public init(model: SourceModel, classes: [String], training: TrainOptions, epochs: Int,
                options: GeneticOptions, cache: PrefixCache?) throws {
        guard epochs >= 1 else { throw TrainingError("search epochs must be at least 1", setting: "searchEpochs") }
        self.model = model; self.classes = classes; self.options = options; self.cache = cache
        var t = training
        t.epochs = epochs
        t.method = .als
        self.training = t
    }

    /// Validation accuracy after the short fine-tune with units frozen where `mask` is true.
    public func fitness(of mask: [Bool], train: any ImageDataset, validation: any ImageDataset, workDir: String) throws -> Double {
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workDir) }
        let frozen = Set(mask.indices.filter { mask[$0] })
        let tuner = try Finetuner(models: [model.pristineCopy()], frozenUnits: [frozen], classes: classes,
                                  options: training, runDir: workDir, prefixCache: cache)
        tuner.scoringOnly = true
        try tuner.train(train: train, validation: validation, resume: false)
        guard let last = tuner.history.last else { throw TrainingError("the short fine-tune ran no epoch") }
        return last.validationAccuracy
    }

    /// Runs the search, writing `als.json` into `runDir`; returns the chosen frozen units.
    public func run(train: any ImageDataset, validation: any ImageDataset, runDir: String) throws -> (frozen: Set<Int>, result: GeneticResult) {
        let ga = try GeneticSearch(bits: model.units.count, options: options)
        let result = try ga.run(onEvaluation: { e in
            self.events?(.note(String(format: "als generation %d: %d frozen of %d -> validation %.2f%% in %.1fs",
                                      e.generation, e.mask.filter { $0 }.count, e.mask.count, e.fitness * 100, e.seconds)))
        }, fitness: { mask in
            try fitness(of: mask, train: train, validation: validation, workDir: runDir + "/als-work")
        })
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try enc.encode(result), to: runDir + "/als.json")
        return (Set(result.bestMask.indices.filter { result.bestMask[$0] }), result)
    }
}
