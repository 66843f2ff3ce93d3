import BraidData
import BraidTraining
import Foundation

/// What a new fine-tuning run is made of: sources, target data and every setting
/// (`braid finetune`'s flags decode into it).
public struct FinetuneSetup: Sendable {
    /// Model files (`.onnx`, `.h5`, `.keras`), one member each.
    public var sources: [String]
    /// Target data as `DataCatalog.open` takes it: `digits`, `mnist-5k`, `textures`, a folder
    /// of class folders, `FILE.h5#IMAGES,LABELS`.
    public var data: String
    /// Per source, the value or node whose output feeds the new head (nil: found).
    public var featureNodes: [String?] = []
    /// Per source, `[height, width]` it is fed at (nil: its own size).
    public var inputSizes: [[Int]?]?
    /// Per source, preprocessing over its metadata, manifest entry or defaults.
    public var preprocess: [PreprocessOverride?]?
    public var options = TrainOptions()
    /// Steps of a learning-rate range test choosing `options.lr` (nil: use `options.lr`).
    public var learningRateRangeSteps: Int?
    /// AMCF's freeze-depth search; its `epochs` also set each ALS fitness fine-tune's.
    public var search = SearchOptions()
    /// ALS's genetic search (its seed is the run's).
    public var als = GeneticOptions()

    public init(sources: [String], data: String) {
        self.sources = sources; self.data = data
    }
}

/// What a finished run measured on the test split.
public struct FinetuneResult: Sendable {
    public var runDir: String
    public var classes: [String]
    /// Member names, their freeze depths and layer-unit counts.
    public var members: [String]
    public var depths: [Int]
    public var unitCounts: [Int]
    /// The ensemble's and each member's test evaluation.
    public var test: Evaluation
    public var memberTests: [Evaluation]
    public var history: [EpochRecord]
    /// Training and test, in seconds.
    public var seconds: Double
    /// The prefix cache's use: activations held, MiB in memory and spilled, hits, misses.
    public var prefixCache: (count: Int, mibInMemory: Double, mibSpilled: Double, hits: Int, misses: Int)?
}

/// One fine-tuning run in its directory, from the sources to `metrics.json`: resolves the
/// method into freeze depths (or searches them: AMCF's swarm, ALS's genetic search), picks
/// the learning rate when asked, trains with checkpoints, tests, and writes `run.json`,
/// `metrics.json` and the searches' records. A run stopped by a signal or an error resumes
/// with `init(resuming:)`.
///
/// ```swift
/// var setup = FinetuneSetup(sources: ["resnet18.onnx"], data: "digits")
/// setup.options.epochs = 1
/// let run = try FinetuneRun(setup, runDir: "runs/r18", manifest: [])
/// run.events = { if case .note(let line) = $0 { print(line) } }
/// let result = try run.run()
/// print(result.test.accuracy)
/// ```
public final class FinetuneRun {
    public let runDir: String
    /// What `run.json` records (sources, data, classes, options, chosen depths).
    public private(set) var record: RunRecord
    /// The settings this process trains with: the record's, where `checkpointEvery`,
    /// `onNonfinite` and `maxMemory` may be changed before `run()` (also on resumption).
    public var options: TrainOptions
    /// Receives progress, notes, warnings and summary lines (nil: nothing is reported).
    public var events: TrainingEvents?
    public let resuming: Bool
    /// The ranks of an MPI job (nil: this process alone). The AMCF search spreads its
    /// fitness evaluations over them; with `dataParallel` every rank trains its shard of
    /// each batch, otherwise rank 0 alone trains the chosen scheme and `run()` returns on
    /// the other ranks after the search, with no test figures.
    public var group: (any ProcessGroup)?
    public var dataParallel = false
    let manifest: [ModelManifest]
    let onCorrupt: CorruptImagePolicy
    let learningRateRangeSteps: Int?
    let search: SearchOptions
    let als: GeneticOptions
    var opened: OpenedData?

    /// Prepares a new run: opens the data (for its classes) and checks the settings.
    ///
    /// - Throws: `TrainingError` naming the setting out of range; `DataError` when the data
    ///   cannot be opened.
    public init(_ setup: FinetuneSetup, runDir: String, manifest: [ModelManifest],
                onCorrupt: CorruptImagePolicy = .fail) throws {
        guard !setup.sources.isEmpty else { throw TrainingError("a fine-tune needs at least one source", setting: "source") }
        try setup.options.validate()
        if let steps = setup.learningRateRangeSteps, steps < 10 {
            throw TrainingError("the learning-rate range test needs 10 or more steps, got \(steps)", setting: "lrRangeSteps")
        }
        let opened = try DataCatalog.open(setup.data, onCorrupt: onCorrupt)
        // Absolute paths, so the run directory can be exported or resumed from anywhere.
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath + "/")
        let sources = setup.sources.map { URL(fileURLWithPath: $0, relativeTo: cwd).standardized.path }
        let nodes = setup.sources.indices.map { $0 < setup.featureNodes.count ? setup.featureNodes[$0] : nil }
        var record = RunRecord(sources: sources, featureNodes: nodes, data: setup.data, classes: opened.classes,
                               depths: [], options: setup.options)
        record.inputSizes = setup.inputSizes
        record.preprocess = setup.preprocess
        self.record = record
        self.options = setup.options
        self.opened = opened
        self.runDir = runDir
        self.resuming = false
        self.manifest = manifest
        self.onCorrupt = onCorrupt
        self.learningRateRangeSteps = setup.learningRateRangeSteps
        var search = setup.search
        search.swarm.seed = setup.options.seed
        self.search = search
        var als = setup.als
        als.seed = setup.options.seed
        self.als = als
    }

    /// Reopens the run in `runDir` to continue from its last checkpoint (or its search's
    /// progress file).
    ///
    /// - Throws: `TrainingError` when `runDir` holds no readable `run.json`.
    public init(resuming runDir: String, manifest: [ModelManifest], onCorrupt: CorruptImagePolicy = .fail) throws {
        record = try RunRecord.load(runDir: runDir)
        options = record.options
        self.runDir = runDir
        resuming = true
        self.manifest = manifest
        self.onCorrupt = onCorrupt
        learningRateRangeSteps = nil
        var search = SearchOptions()
        search.swarm.seed = record.options.seed
        if let data = FileManager.default.contents(atPath: runDir + "/search-options.json") {
            search = try JSONDecoder().decode(SearchOptions.self, from: data)
        }
        self.search = search
        var als = GeneticOptions()
        als.seed = record.options.seed
        self.als = als
    }

    /// Trains and tests the run, writing its files into `runDir`.
    ///
    /// - Throws: `TrainingInterrupted` after a checkpoint when `StopRequest` was raised;
    ///   `TrainingError` for a setting that does not fit the sources (a freeze depth beyond
    ///   a model's layer units), a non-finite loss under `onNonfinite == .stop`, or memory
    ///   beyond `maxMemory`.
    @discardableResult
    public func run() throws -> FinetuneResult {
        var o = options.forMethod
        try o.validate()
        let opened = try self.opened ?? DataCatalog.open(record.data, onCorrupt: onCorrupt)
        for (path, reason) in opened.skipped { events?(.warning("skipping \(path): \(reason)")) }
        let split = try opened.splits(validationFraction: o.valFraction, testFraction: o.testFraction, seed: o.seed)
        let models = try record.buildModels(manifest: manifest)
        var depths = try Self.freezeDepths(method: o.method, freeze: o.freeze, models: models, chosen: record.depths)
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        var range: LearningRateRange?
        if let steps = learningRateRangeSteps, !resuming {
            if o.clipNorm == 0 && o.clipPercentile == 0 {
                o.clipPercentile = TrainOptions.autoRateClipPercentile
                record.options.clipPercentile = o.clipPercentile
            }
            let found = try autoLearningRate(models: models, depths: depths.map { max($0, 0) }, options: o,
                                             train: split.train, steps: steps)
            (o.lr, range) = (found.rate, found.range)
            record.options.lr = o.lr
        }
        var saved = record
        saved.options = o
        if depths.contains(-1) {
            try record.save(runDir: runDir)
            depths = try searchDepths(models: models, split: split)
        }
        let cache = o.prefixCache ? PrefixCache(megabytes: o.cacheMB) : nil
        var frozenUnits: Set<Int>?
        if o.method == .als {
            let frozen = try searchALS(model: models[0], split: split, cache: cache)
            frozenUnits = frozen
            depths = [frozen.count]
        }
        saved.depths = depths
        try saved.save(runDir: runDir)
        record = saved
        if let group, group.rank > 0, !dataParallel {
            return FinetuneResult(runDir: runDir, classes: record.classes, members: models.map(\.name), depths: depths,
                                  unitCounts: models.map(\.units.count), test: Evaluation(classes: record.classes.count),
                                  memberTests: [], history: [], seconds: 0, prefixCache: nil)
        }
        let parallel = dataParallel ? group.flatMap { $0.size > 1 ? $0 : nil } : nil
        let tuner = try frozenUnits.map { frozen in
            try parallel.map { try Finetuner(models: models, frozenUnits: [frozen], classes: record.classes, options: o,
                                             runDir: runDir, prefixCache: cache, dataParallel: $0) }
                ?? Finetuner(models: models, frozenUnits: [frozen], classes: record.classes, options: o, runDir: runDir, prefixCache: cache)
        } ?? parallel.map { try Finetuner(models: models, depths: depths, classes: record.classes, options: o, runDir: runDir,
                                          prefixCache: cache, dataParallel: $0) }
            ?? Finetuner(models: models, depths: depths, classes: record.classes, options: o, runDir: runDir, prefixCache: cache)
        tuner.events = events
        for (m, d) in zip(models, depths) {
            summary("\(m.name): \(m.units.count) layer units, freezing \(d); input \(m.spec.sampleShape) \(m.spec.layout)")
            summary("  preprocessing: \(m.input.summary)")
        }
        for (m, cuts) in zip(models, tuner.prefixCuts) where !cuts.isEmpty {
            summary("\(m.name): frozen prefix ends at \(cuts.joined(separator: ", ")); its activations are cached")
        }
        summary("data \(record.data): \(split.train.count) train, \(split.validation.count) validation, \(split.test.count) test, \(record.classes.count) classes")
        let t0 = Date()
        if learningRateRangeSteps != nil && !resuming {
            // A rate the range test chose may still prove too high: restart lower (and record it).
            // Restarts climb to their rate as the range test did.
            try tuner.trainRecoveringRate(train: split.train, validation: split.validation, range: range) { next in
                self.record.options = next
                try self.record.save(runDir: self.runDir)
            }
        } else {
            try tuner.train(train: split.train, validation: split.validation, resume: resuming)
        }
        var test = try tuner.evaluateMembers(on: split.test)
        if o.method == .amcfWeighted {
            let chosen = try weightedChoice(tuner, models: models, depths: depths, options: o, split: split)
            test = (chosen.ensemble, chosen.members)
        }
        let seconds = Date().timeIntervalSince(t0)
        try writeMetrics(tuner: tuner, test: test, seconds: seconds)
        return FinetuneResult(runDir: runDir, classes: record.classes, members: models.map(\.name), depths: tuner.depths,
                              unitCounts: tuner.unitCounts, test: test.ensemble, memberTests: test.members,
                              history: tuner.history, seconds: seconds,
                              prefixCache: cache.map { ($0.count, Double($0.bytesInMemory) / 1_048_576,
                                                       Double($0.bytesSpilled) / 1_048_576, $0.hits, $0.misses) })
    }

    /// Each member's freeze depth as the method says: 0 (all layers train), its unit count
    /// (linear probe), `freeze[j]` (one value for every member, or one per member), or -1
    /// where AMCF searches it (`chosen` holds the depths a resumed run already chose).
    ///
    /// - Throws: `TrainingError` when the method needs `freeze` and has none, when a depth is
    ///   beyond a model's layer units, or when ALS is given more than one source.
    public static func freezeDepths(method: TrainOptions.Method, freeze: [Int], models: [SourceModel],
                                    chosen: [Int] = []) throws -> [Int] {
        try models.enumerated().map { j, m -> Int in
            let units = m.units.count
            switch method {
            case .standard, .scratch, .l2sp, .childTuning, .ensemble: return 0
            case .als:
                guard models.count == 1 else { throw TrainingError("ALS takes exactly one source", setting: "source") }
                return 0
            case .linearProbe: return units
            case .collab where freeze.isEmpty, .amcfWeighted where freeze.isEmpty: return 0
            case .amcf where freeze.isEmpty, .ensembleSearched where freeze.isEmpty:
                return j < chosen.count ? chosen[j] : -1
            case .freeze, .amcfFixed, .amcf, .ensembleSearched, .collab, .amcfWeighted:
                guard !freeze.isEmpty else {
                    throw TrainingError("method \(method.rawValue) needs freeze depths", setting: "freeze")
                }
                let k = freeze.count == 1 ? freeze[0] : (j < freeze.count ? freeze[j] : -1)
                guard k >= 0 && k <= units else {
                    throw TrainingError("freeze depth for \(m.name) must be in 0...\(units) (its layer units)", setting: "freeze")
                }
                return k
            }
        }
    }

    func summary(_ line: String) { events?(.summary(line)) }

    /// Runs the learning-rate range test for these members (or reuses the one cached in the
    /// run directory for the same setting), writes `lr-range.json` and `lr-range.svg`, and
    /// returns the rate to train with and the test it came from.
    func autoLearningRate(models: [SourceModel], depths: [Int], options: TrainOptions, train: any ImageDataset,
                          steps: Int) throws -> (rate: Float, range: LearningRateRange) {
        let key = "\(record.sources)|\(record.data)|\(record.inputSizes)|\(options.method.rawValue)|\(depths)|\(options.batch)|\(options.optimizer.rawValue)|\(options.seed)|\(steps)|clip \(options.clipNorm) \(options.clipPercentile)"
        let path = runDir + "/lr-range.json"
        var found: LearningRateRange
        if let data = FileManager.default.contents(atPath: path),
           let cached = try? LearningRateRange(json: data), cached.key == key {
            found = cached
            summary("learning rate: reusing the range test in \(path)")
        } else {
            var o = options
            o.prefixCache = false
            let tuner = try Finetuner(models: models, depths: depths, classes: record.classes, options: o, runDir: runDir)
            let t0 = Date()
            let events = self.events
            func report(_ done: Int, _ loss: Float, final: Bool) {
                events?(.progress(TrainingProgress(phase: "lr range test", done: done, total: steps, images: done * o.batch,
                                                   loss: Double(loss), accuracy: 0, seconds: Date().timeIntervalSince(t0),
                                                   final: final)))
            }
            found = try tuner.learningRateRange(train: train, steps: steps, key: key) { i, _, loss in report(i + 1, loss, final: false) }
            report(found.rates.count, found.losses.last ?? 0, final: true)
            try writeAtomically(try found.json(), to: path)
            try writeAtomically(Data(found.svg().utf8), to: runDir + "/lr-range.svg")
        }
        summary(found.summary())
        let rate = found.rate(fallback: options.lr)
        if found.suggested == nil {
            summary("learning rate: the range test gave no suggestion; training at \(options.lr)")
        } else {
            summary("learning rate: \(rate) (curve: \(runDir)/lr-range.svg)")
        }
        return (rate, found)
    }

    /// ALS's genetic search over one source's freeze bitmask (replayed from `als.json` when
    /// a resumed run finished it); returns the frozen units.
    func searchALS(model: SourceModel, split: (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset),
                   cache: PrefixCache?) throws -> Set<Int> {
        if let data = FileManager.default.contents(atPath: runDir + "/als.json"),
           let done = try? JSONDecoder().decode(GeneticResult.self, from: data), done.bestMask.count == model.units.count {
            return Set(done.bestMask.indices.filter { done.bestMask[$0] })
        }
        let search = try ALSSearch(model: model, classes: record.classes, training: record.options, epochs: self.search.epochs,
                               options: als, cache: cache)
        search.events = events
        summary("ALS search: population \(als.population) x \(als.generations) generation(s) over \(model.units.count) units, \(self.search.epochs) epoch(s) per fitness")
        let t0 = Date()
        let found = try search.run(train: split.train, validation: split.validation, runDir: runDir)
        summary(String(format: "chosen: %d of %d units frozen, validation %.2f%%; %d masks evaluated, %d cache hits, search took %.1fs",
                       found.frozen.count, model.units.count, found.result.bestFitness * 100,
                       found.result.evaluations.count, found.result.cacheHits, Date().timeIntervalSince(t0)))
        return found.frozen
    }

    /// Runs AMCF's freeze-depth search (or replays an interrupted one), recording its options
    /// in `search-options.json` so a resumption searches the same way.
    func searchDepths(models: [SourceModel],
                      split: (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset)) throws -> [Int] {
        let optionsPath = runDir + "/search-options.json"
        if !resuming || !FileManager.default.fileExists(atPath: optionsPath) {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try writeAtomically(try enc.encode(search), to: optionsPath)
        }
        let layerSearch = try LayerSearch(models: models, classes: record.classes, training: record.options.forMethod, options: search)
        layerSearch.events = events
        layerSearch.group = group
        summary("AMCF search: \(search.swarm.particles) particles x \(search.swarm.iterations) iterations, \(search.epochs) epoch(s) per fitness on \(search.subset < 1 ? String(format: "%.0f%% of ", search.subset * 100) : "")the training split, scored on validation")
        let found = try layerSearch.run(train: split.train, validation: split.validation, runDir: runDir)
        summary(String(format: "chosen freeze depths %@ (of %@ layer units), validation %.2f%% after %d epoch(s); %d schemes evaluated, %d cache hits, search took %.1fs",
                       found.chosenScheme.map(String.init).joined(separator: ",") as NSString,
                       found.unitCounts.map(String.init).joined(separator: ",") as NSString,
                       found.chosenFitness * 100, search.epochs, found.evaluations.count, found.cacheHits, found.totalSeconds))
        return found.chosenScheme
    }

    /// Writes `metrics.json`: test accuracy (ensemble and members), confusion matrix, classes,
    /// depths, unit counts, the epochs' records, seconds, the learning rate and its source,
    /// and each member's preprocessing.
    func writeMetrics(tuner: Finetuner, test: (ensemble: Evaluation, members: [Evaluation]), seconds: Double) throws {
        let history = try JSONSerialization.jsonObject(with: JSONEncoder().encode(tuner.history))
        let auto = learningRateRangeSteps != nil || FileManager.default.fileExists(atPath: runDir + "/lr-range.json")
        let obj: [String: Any] = [
            "test_accuracy": test.ensemble.accuracy,
            "member_test_accuracy": test.members.map(\.accuracy),
            "confusion": test.ensemble.confusion,
            "classes": tuner.classes,
            "depths": tuner.depths,
            "unit_counts": tuner.unitCounts,
            "epochs": history,
            "seconds": seconds,
            "learning_rate": Double(tuner.options.lr),
            "learning_rate_source": auto ? "auto (range test, lr-range.json)" : "fixed",
            "learning_rate_attempts": tuner.rateAttempts.map { ["rate": Double($0.rate), "outcome": $0.outcome] as [String: Any] },
            "step_losses": tuner.stepLosses.map(Double.init),
            "gradient_floats": tuner.gradientFloats,
            "training_batch_norms": tuner.trainingBatchNorms,
            "preprocessing": Dictionary(tuner.models.map { ($0.name, $0.input.report.jsonObject) }, uniquingKeysWith: { a, _ in a }),
        ]
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
        try writeAtomically(data, to: runDir + "/metrics.json")
    }
}
