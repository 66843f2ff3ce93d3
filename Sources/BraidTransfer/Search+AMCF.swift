import BraidData
import BraidTensor
import BraidTraining
import Foundation

/// AMCF's layer-selection settings: the swarm and the short fine-tune that scores a scheme.
public struct SearchOptions: Codable, Sendable, Equatable {
    public var swarm = SwarmOptions()
    /// Epochs of the collaborative fine-tune behind each fitness value.
    public var epochs = 5
    /// Fraction (0, 1] of the training split, stratified, used by the short fine-tunes.
    public var subset = 1.0
    /// Evaluate each distinct scheme once (false: at every visit, to measure the saving).
    public var reuseSchemes = true
    /// How schemes are searched.
    public enum Strategy: String, Codable, Sendable, CaseIterable {
        /// AMCF's particle swarm, every fitness at the full `epochs`.
        case swarm
        /// Successive halving over the swarm's initial schemes (`HalvingPlan`): many schemes
        /// on short budgets, the full budget only for the best.
        case halving
    }
    public var strategy = Strategy.swarm
    /// Halving: schemes drawn at the start (the all-zero scheme is added), and the factor
    /// eta by which each rung divides them.
    public var halvingCandidates = 27
    public var halvingEta = 3

    public init() {}

    enum CodingKeys: String, CodingKey { case swarm, epochs, subset, reuseSchemes, strategy, halvingCandidates, halvingEta }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        swarm = try c.decode(SwarmOptions.self, forKey: .swarm)
        epochs = try c.decode(Int.self, forKey: .epochs)
        subset = try c.decode(Double.self, forKey: .subset)
        reuseSchemes = try c.decodeIfPresent(Bool.self, forKey: .reuseSchemes) ?? true
        strategy = try c.decodeIfPresent(Strategy.self, forKey: .strategy) ?? .swarm
        halvingCandidates = try c.decodeIfPresent(Int.self, forKey: .halvingCandidates) ?? 27
        halvingEta = try c.decodeIfPresent(Int.self, forKey: .halvingEta) ?? 3
    }
}

/// What the search wrote to `search.json`.
public struct SearchRecord: Codable, Sendable {
    public var sources: [String]
    /// L_j: layer units of each member's backbone.
    public var unitCounts: [Int]
    public var options: SearchOptions
    /// The training settings of each short fine-tune (their `epochs` is `options.epochs`).
    public var training: TrainOptions
    public var trainImages: Int
    public var validationImages: Int
    /// Every computed evaluation, in order.
    public var evaluations: [SchemeEvaluation]
    public var globalBest: [IterationBest]
    public var trajectory: [[ParticleState]]
    public var cacheHits: Int
    public var chosenScheme: [Int]
    /// Validation accuracy of the chosen scheme after the short fine-tune.
    public var chosenFitness: Double
    /// Wall time of the whole search, replayed evaluations of an interrupted one included.
    public var totalSeconds: Double
    /// What the prefix caches did (nil without them, and in records written before).
    public var prefixReuse: PrefixReuse?
    /// CPU seconds (user + system, all threads) this process spent in the search, replayed
    /// evaluations excluded: less sensitive than wall time to other work on the machine.
    public var cpuSeconds: Double?
}

/// Work the frozen-prefix caches of a search did and saved, for its training subset and its
/// validation split: images run through a whole prefix (`computed`), images whose prefix
/// output was derived from a shallower cached cut (`derived`), and activations served from
/// the cache (`served`, one per image and cut).
public struct PrefixReuse: Codable, Sendable, Equatable {
    public var trainComputed: Int
    public var trainDerived: Int
    public var trainServed: Int
    public var validationComputed: Int
    public var validationDerived: Int
    public var validationServed: Int
}

/// The state of a search in progress (`search-progress.json`), replayed on resume.
struct SearchProgress: Codable {
    var options: SearchOptions
    var sources: [String]
    var evaluations: [SchemeEvaluation]
}

/// AMCF's adaptive layer selection: a particle swarm over the members' freeze depths whose
/// fitness is the ensemble's validation accuracy after a short collaborative fine-tune.
///
/// Each fitness evaluation starts from the pretrained weights and the same fresh heads: the
/// members given to `init` are never trained; each evaluation trains deep copies. Only the
/// training and validation splits are ever read.
public final class LayerSearch {
    public let models: [SourceModel]
    public let classes: [String]
    public let training: TrainOptions
    public let options: SearchOptions
    /// Receives one note per fitness evaluation (nil: nothing is reported).
    public var events: TrainingEvents?
    /// The processes the fitness evaluations are spread over (nil: this one). Every rank
    /// runs the same search; each computes its share of an iteration's schemes with its own
    /// prefix caches, and all receive every fitness, so all choose the same depths.
    public var group: (any ProcessGroup)?
    /// Frozen-prefix activations shared by every fitness evaluation: a prefix depends only
    /// on pretrained weights and the (fixed) search subset, so schemes that freeze the same
    /// prefix reuse it.
    public let prefixCache: PrefixCache?
    /// The same for the validation split's images, through which schemes are scored; it
    /// shares `prefixCache`'s in-memory budget (`training.cacheMB`).
    public let validationPrefixCache: PrefixCache?

    /// `training` configures each short fine-tune (its epochs are replaced by `options.epochs`).
    public init(models: [SourceModel], classes: [String], training: TrainOptions, options: SearchOptions) throws {
        guard options.epochs >= 1 else { throw TrainingError("search epochs must be at least 1", setting: "searchEpochs") }
        guard options.halvingCandidates >= 1, options.halvingEta >= 2 else {
            throw TrainingError("halving needs at least one candidate and eta of at least 2, got \(options.halvingCandidates) and \(options.halvingEta)",
                                setting: "halvingEta")
        }
        guard options.subset > 0 && options.subset <= 1 else {
            throw TrainingError("the search subset must be in (0, 1], got \(options.subset)", setting: "searchSubset")
        }
        self.models = models
        self.classes = classes
        var t = training
        t.epochs = options.epochs
        self.training = t
        self.options = options
        prefixCache = t.prefixCache ? PrefixCache(megabytes: t.cacheMB) : nil
        validationPrefixCache = prefixCache.map { PrefixCache(sharingBudgetWith: $0) }
    }

    public var unitCounts: [Int] { models.map(\.units.count) }

    /// The stratified `options.subset` part of `train` (all of it at 1).
    public func searchSubset(of train: any ImageDataset) throws -> any ImageDataset {
        guard options.subset < 1 else { return train }
        let s = try stratifiedSplit(labels: train.labels, validationFraction: 0, testFraction: 1 - options.subset,
                                    seed: training.seed &+ 0x5EA)
        return DatasetSubset(train, indices: s.train)
    }

    /// The fitness of one scheme: ensemble validation accuracy after `options.epochs` epochs
    /// of collaborative fine-tuning of fresh copies of the members, frozen to `scheme`.
    /// `workDir` is the short run's directory, removed afterwards. Every call on one search
    /// must pass the same `train` and `validation` datasets: the prefix caches are keyed by
    /// their image indices.
    public func fitness(of scheme: [Int], train: any ImageDataset, validation: any ImageDataset,
                        workDir: String) throws -> Double {
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workDir) }
        let tuner = try Finetuner(models: models.map { $0.pristineCopy() }, depths: scheme, classes: classes,
                                  options: training, runDir: workDir, prefixCache: prefixCache)
        tuner.scoringOnly = true
        tuner.validationPrefixCache = validationPrefixCache
        try tuner.train(train: train, validation: validation, resume: false)
        guard let last = tuner.history.last else { throw TrainingError("the short fine-tune ran no epoch") }
        return last.validationAccuracy
    }

    /// Runs the search, writing `search-progress.json` after every evaluation and, at the
    /// end, `search.json` and `search.svg` into `runDir`. An interrupted search of the same
    /// options and sources in `runDir` is replayed rather than recomputed.
    public func run(train: any ImageDataset, validation: any ImageDataset, runDir: String,
                    onEvaluation: (SchemeEvaluation) throws -> Void = { _ in }) throws -> SearchRecord {
        if options.strategy == .halving {
            return try runHalving(train: train, validation: validation, runDir: runDir, onEvaluation: onEvaluation)
        }
        let swarm = try ParticleSwarm(upperBounds: unitCounts, options: options.swarm)
        let cpuAtStart = processCPUSeconds()
        let subset = try searchSubset(of: train)
        let progressPath = runDir + "/search-progress.json"
        let names = models.map(\.path)
        var replay: [SchemeEvaluation] = []
        if let data = FileManager.default.contents(atPath: progressPath),
           let old = try? Self.decoder.decode(SearchProgress.self, from: data),
           old.options == options, old.sources == names {
            replay = old.evaluations
        }
        let replayedSeconds = Dictionary(replay.map { ($0.scheme, $0.seconds) }, uniquingKeysWith: { a, _ in a })
        var progress = SearchProgress(options: options, sources: names, evaluations: [])
        var replayedTime = 0.0
        let total = options.swarm.particles * options.swarm.iterations
        let workDir = runDir + "/search-work" + (group.map { $0.rank > 0 ? "-rank\($0.rank)" : "" } ?? "")
        let spread = group.flatMap { g -> (([[Int]]) throws -> [(fitness: Double, seconds: Double)])? in
            guard g.size > 1 else { return nil }
            return { schemes in
                try g.spread(schemes.count) { i -> [Double] in
                    let t0 = Date()
                    let f = try self.fitness(of: schemes[i], train: subset, validation: validation, workDir: workDir)
                    return [f, Date().timeIntervalSince(t0)]
                }.map { (fitness: $0[0], seconds: $0[1]) }
            }
        }
        let result = try swarm.run(replay: options.reuseSchemes ? replay : [], reuse: options.reuseSchemes, onEvaluation: { e in
            progress.evaluations.append(e)
            if replayedSeconds[e.scheme] != nil { replayedTime += e.seconds }
            try writeAtomically(try Self.encoder.encode(progress), to: progressPath)
            events?(.note(String(format: "search %d/%d (iteration %d, particle %d): freeze %@ -> validation %.2f%% in %.1fs",
                                 e.iteration * options.swarm.particles + e.particle + 1, total, e.iteration + 1,
                                 e.particle + 1, e.scheme.map(String.init).joined(separator: ","), e.fitness * 100, e.seconds)))
            try onEvaluation(e)
        }, evaluateAll: spread, fitness: { scheme in
            return try fitness(of: scheme, train: subset, validation: validation, workDir: workDir)
        })
        let record = SearchRecord(sources: names, unitCounts: unitCounts, options: options, training: training,
                                  trainImages: subset.count, validationImages: validation.count,
                                  evaluations: result.evaluations, globalBest: result.globalBest,
                                  trajectory: result.trajectory, cacheHits: result.cacheHits,
                                  chosenScheme: result.bestScheme, chosenFitness: result.bestFitness,
                                  totalSeconds: result.seconds + replayedTime, prefixReuse: prefixReuse,
                                  cpuSeconds: processCPUSeconds() - cpuAtStart)
        try writeAtomically(try Self.encoder.encode(record), to: runDir + "/search.json")
        try writeAtomically(Data(searchChart(record, names: models.map(\.name)).utf8), to: runDir + "/search.svg")
        try? FileManager.default.removeItem(atPath: progressPath)
        return record
    }

    /// The prefix caches' counts so far (nil when caching is off).
    public var prefixReuse: PrefixReuse? {
        guard let t = prefixCache, let v = validationPrefixCache else { return nil }
        return PrefixReuse(trainComputed: t.imagesComputed, trainDerived: t.imagesDerived, trainServed: t.hits,
                           validationComputed: v.imagesComputed, validationDerived: v.imagesDerived,
                           validationServed: v.hits)
    }

    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.keyEncodingStrategy = .convertToSnakeCase
        return e
    }

    static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }

    /// Reads a run directory's `search.json`.
    public static func loadRecord(runDir: String) throws -> SearchRecord {
        let path = runDir + "/search.json"
        guard let data = FileManager.default.contents(atPath: path) else { throw TrainingError("\(path): no such file") }
        do { return try decoder.decode(SearchRecord.self, from: data) } catch {
            throw TrainingError("\(path): unreadable search record (\(error))")
        }
    }
}

/// User plus system CPU seconds of this process so far, all threads.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

extension SourceModel {
    /// A copy whose float parameters (running statistics included) live in new buffers, so
    /// training it leaves this model untouched.
    public func pristineCopy() -> SourceModel {
        var m = self
        for (name, t) in graph.initializers where t.dtype.isFloat { m.graph.initializers[name] = t.copy() }
        return m
    }
}
