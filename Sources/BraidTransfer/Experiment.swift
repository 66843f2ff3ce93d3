import BraidData
import BraidTensor
import BraidTraining
import Foundation

/// What a finished cell wrote to its `metrics.json` (the keys `braid finetune` writes, plus
/// the cell's identity and its wall time).
public struct CellMetrics: Codable, Sendable {
    public var testAccuracy: Double
    public var memberTestAccuracy: [Double]
    /// `confusion[true][predicted]` on the test split, ensemble prediction.
    public var confusion: [[Int]]
    public var classes: [String]
    public var depths: [Int]
    public var unitCounts: [Int]
    public var epochs: [EpochRecord]
    /// Training and test evaluation.
    public var seconds: Double
    public var method: String?
    public var target: String?
    public var seed: UInt64?
    public var sources: [String]?
    /// The freeze-depth search (amcf), 0 otherwise.
    public var searchSeconds: Double?
    /// The whole cell: data, model import, search, training, test.
    public var wallSeconds: Double?
    /// Per member (by name), how its input was prepared and where each setting came from.
    public var preprocessing: [String: InputReport]?
    /// CPU seconds (user + system, all threads) of the whole cell, search included (nil in
    /// cells written before they were counted).
    public var cpuSeconds: Double?
    /// Per test image in the split's order, "1" where the ensemble's prediction was right:
    /// what paired comparisons between methods resample (nil in older cells).
    public var testCorrect: String?
    /// amcf-weighted: the vote chosen on the validation split.
    public var vote: WeightedVote?

    enum CodingKeys: String, CodingKey {
        case testAccuracy = "test_accuracy", memberTestAccuracy = "member_test_accuracy", confusion, classes, depths
        case unitCounts = "unit_counts", epochs, seconds, method, target, seed, sources
        case searchSeconds = "search_seconds", wallSeconds = "wall_seconds", preprocessing
        case cpuSeconds = "cpu_seconds", testCorrect = "test_correct", vote
    }
}

/// A cell and how it ended.
public struct CellOutcome: Sendable {
    public enum Status: String, Sendable { case done, notAvailable = "not available", pending, failed }
    public var cell: ExperimentCell
    public var status: Status
    public var metrics: CellMetrics?
    /// Why the cell failed or is not available.
    public var note: String
    /// Finished before this run started (its `metrics.json` was found).
    public var skipped: Bool
}

/// Runs an experiment's cells (methods x sources x targets x seeds), each in its own run
/// directory under `outDir/cells/`, and writes `results.md`, `results.csv`, `results.json`
/// and `report.html` into `outDir`.
///
/// Resumable: a cell whose `metrics.json` exists is read, not run again; a cell interrupted
/// mid-training continues from its last epoch checkpoint, an interrupted search from its
/// progress file.
public final class ExperimentRunner {
    public let config: ExperimentConfig
    public let outDir: String
    public let cacheDir: String
    public let manifest: [ModelManifest]
    /// Model file per configured source.
    public let sourcePaths: [String]
    /// Run only the cells of this method (the report still lists every finished cell).
    public var only: String?
    /// Receives the cells' training progress and notes, and a warning for each failed cell
    /// (nil: nothing is reported).
    public var events: TrainingEvents?
    /// Run no cell: only rewrite the results from the finished ones.
    public var runNothing = false
    /// Called with each cell as it starts (index, total).
    public var onCellStart: (ExperimentCell, Int, Int) -> Void = { _, _, _ in }
    /// The ranks the cells are spread over (nil: this process runs them all). Every rank
    /// calls `run`; rank 0 hands out cells as ranks free up, runs some itself, receives the
    /// others' cell directories and alone writes the experiment directory and the results.
    public var group: (any ProcessGroup)?

    /// `baseDir` resolves relative source paths (the configuration file's folder).
    public init(config: ExperimentConfig, outDir: String, cacheDir: String = ExperimentConfig.defaultCacheDir(),
                manifest: [ModelManifest], baseDir: String = FileManager.default.currentDirectoryPath) throws {
        self.config = config
        self.outDir = outDir
        self.cacheDir = cacheDir
        self.manifest = manifest
        sourcePaths = try config.sources.map { try ExperimentConfig.resolveSource($0, cacheDir: cacheDir, baseDir: baseDir) }
    }

    public func runDir(_ cell: ExperimentCell) -> String { outDir + "/" + cell.relativeDir }

    /// Runs every unfinished cell (of `only`, when set), then writes the results. A failing
    /// cell is recorded as failed and the others still run.
    @discardableResult
    public func run() throws -> [CellOutcome] {
        if let only, !config.methods.contains(only) {
            throw TrainingError("the configuration has no method '\(only)' (\(config.methods.joined(separator: ", ")))", setting: "only")
        }
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let spread = group.flatMap { $0.size > 1 ? $0 : nil }
        if let spread, spread.rank > 0 {
            try serveCells(group: spread)
            return []
        }
        var opened: [String: OpenedData] = [:]
        var outcomes: [CellOutcome] = []
        var handedOut: [(index: Int, cell: ExperimentCell)] = []
        var positions: [ExperimentCell: Int] = [:]
        // Seed-major, so an experiment stopped early has every target and method at the first seeds.
        let cells = config.cells.enumerated().sorted { a, b in
            let sa = config.seeds.firstIndex(of: a.element.seed)!, sb = config.seeds.firstIndex(of: b.element.seed)!
            return sa != sb ? sa < sb : a.offset < b.offset
        }.map(\.element)
        for (i, cell) in cells.enumerated() {
            if let finished = try finishedOutcome(cell) {
                outcomes.append(finished)
                continue
            }
            guard ExperimentConfig.availableMethods.contains(cell.method) else {
                outcomes.append(CellOutcome(cell: cell, status: .notAvailable,
                                            note: "method '\(cell.method)' is not implemented by this engine yet", skipped: false))
                continue
            }
            if runNothing || (only != nil && cell.method != only) {
                outcomes.append(CellOutcome(cell: cell, status: .pending, note: "", skipped: false))
                continue
            }
            if spread != nil {
                handedOut.append((config.cells.firstIndex(of: cell)!, cell))
                positions[cell] = i
                continue
            }
            onCellStart(cell, i, cells.count)
            outcomes.append(runOne(cell, opened: &opened))
        }
        if let spread {
            let start = onCellStart, total = cells.count, order = positions
            let done = try runSpread(handedOut, group: spread) { cell in start(cell, order[cell]!, total) }
            outcomes += handedOut.map { done[$0.index]! }
        }
        let order = Dictionary(uniqueKeysWithValues: config.cells.enumerated().map { ($1, $0) })
        outcomes.sort { order[$0.cell]! < order[$1.cell]! }
        try writeResults(outcomes)
        return outcomes
    }

    /// The outcome of a cell finished earlier, or nil.
    func finishedOutcome(_ cell: ExperimentCell) throws -> CellOutcome? {
        let path = runDir(cell) + "/metrics.json"
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            let m = try JSONDecoder().decode(CellMetrics.self, from: data)
            return CellOutcome(cell: cell, status: .done, metrics: m, note: "", skipped: true)
        } catch {
            throw TrainingError("\(path): unreadable cell metrics (\(error)); delete it to run the cell again")
        }
    }

    /// Trains and tests one cell in its run directory, writing `run.json`, (amcf)
    /// `search.json`, and last `metrics.json`.
    func runCell(_ cell: ExperimentCell, data: OpenedData) throws -> CellMetrics {
        let t0 = Date()
        let cpu0 = processCPUSeconds()
        let dir = runDir(cell)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        guard let method = TrainOptions.Method(rawValue: cell.method) else {
            throw TrainingError("method '\(cell.method)' is not available")
        }
        var o = config.training
        o.method = method
        o.seed = cell.seed
        o = o.forMethod
        if method == .amcfFixed { o.freeze = cell.sourceIndices.map { config.training.freeze[$0] } }
        let split = try data.splits(validationFraction: o.valFraction, testFraction: o.testFraction, seed: o.seed)
        var train: any ImageDataset = split.train
        let fraction = config.targetSubsets[cell.target] ?? config.trainSubset
        if fraction < 1 {
            let s = try stratifiedSplit(labels: split.train.labels, validationFraction: 0,
                                        testFraction: 1 - fraction, seed: o.seed &+ 0x7A1)
            train = DatasetSubset(split.train, indices: s.train)
        }
        let paths = cell.sourceIndices.map { sourcePaths[$0] }
        var record = RunRecord(sources: paths, featureNodes: paths.map { _ in nil }, data: cell.target,
                               classes: data.classes, depths: [], options: o)
        let sizes = cell.sourceIndices.map { config.inputSizes[config.sources[$0]] }
        if sizes.contains(where: { $0 != nil }) { record.inputSizes = sizes }
        let preprocess = cell.sourceIndices.map { config.preprocess[config.sources[$0]] }
        if preprocess.contains(where: { $0 != nil }) { record.preprocess = preprocess }
        let earlier = try? RunRecord.load(runDir: dir)
        let models = try record.buildModels(manifest: manifest)
        var searchSeconds = 0.0
        var searchCPUBeforeResume = 0.0
        var depths: [Int]
        var frozenUnits: Set<Int>?
        switch method {
        case .standard, .scratch, .l2sp, .childTuning, .ensemble, .collab, .amcfWeighted: depths = models.map { _ in 0 }
        case .linearProbe: depths = models.map(\.units.count)
        case .freeze, .amcfFixed:
            depths = o.freeze
            for (m, k) in zip(models, depths) where k < 0 || k > m.units.count {
                throw TrainingError("training.freeze: depth \(k) for \(m.name) is outside 0...\(m.units.count)")
            }
        case .amcf, .ensembleSearched:
            if let earlier, earlier.depths.count == models.count {
                depths = earlier.depths
                let done = try? LayerSearch.loadRecord(runDir: dir)
                searchSeconds = done?.totalSeconds ?? 0
                searchCPUBeforeResume = done?.cpuSeconds ?? 0
            } else {
                try record.save(runDir: dir)
                var s = config.search
                s.swarm.seed = o.seed
                let search = try LayerSearch(models: models, classes: data.classes, training: o, options: s)
                search.events = events
                let found = try search.run(train: train, validation: split.validation, runDir: dir)
                depths = found.chosenScheme
                searchSeconds = found.totalSeconds
            }
        case .als:
            let t1 = Date()
            let frozen = try alsFrozenUnits(model: models[0], classes: data.classes, training: o, seed: o.seed,
                                            train: train, validation: split.validation, runDir: dir)
            frozenUnits = frozen
            depths = [frozen.count]
            searchSeconds = Date().timeIntervalSince(t1)
        }
        record.depths = depths
        try record.save(runDir: dir)
        let tuner = try frozenUnits.map {
            try Finetuner(models: models, frozenUnits: [$0], classes: data.classes, options: o, runDir: dir)
        } ?? Finetuner(models: models, depths: depths, classes: data.classes, options: o, runDir: dir)
        tuner.events = events
        let trainStart = Date()
        try tuner.train(train: train, validation: split.validation, resume: true)
        let ensemble: Evaluation, memberTests: [Evaluation], testCorrect: String
        var vote: WeightedVote?
        var voting = tuner
        if method == .amcfWeighted {
            // The same members trained each on its own, in a directory of their own.
            var alone = o
            alone.lambda = 0
            try FileManager.default.createDirectory(atPath: dir + "/independent", withIntermediateDirectories: true)
            let independent = try Finetuner(models: try record.buildModels(manifest: manifest), depths: depths,
                                             classes: data.classes, options: alone, runDir: dir + "/independent")
            independent.events = events
            try independent.train(train: train, validation: split.validation, resume: true)
            let chosen = try tuner.weightedChoice(independent: independent, validation: split.validation, test: split.test)
            (ensemble, memberTests, testCorrect, vote, voting) = (chosen.ensemble, chosen.members, chosen.testCorrect,
                                                                  chosen.vote, chosen.tuner)
            if !config.keepCheckpoints { try? FileManager.default.removeItem(atPath: dir + "/independent") }
        } else {
            let softmax = o.vote == .softmax
            let logits = try tuner.memberLogits(on: split.test)
            ensemble = logits.evaluation(softmax: softmax)
            memberTests = logits.logits.indices.map { logits.memberEvaluation($0) }
            testCorrect = logits.correctness(softmax: softmax)
        }
        let metrics = CellMetrics(testAccuracy: ensemble.accuracy, memberTestAccuracy: memberTests.map(\.accuracy),
                                  confusion: ensemble.confusion, classes: data.classes, depths: tuner.depths,
                                  unitCounts: tuner.unitCounts, epochs: voting.history,
                                  seconds: Date().timeIntervalSince(trainStart), method: cell.method, target: cell.target,
                                  seed: cell.seed, sources: paths, searchSeconds: searchSeconds,
                                  wallSeconds: Date().timeIntervalSince(t0) + searchSecondsBeforeResume(earlier, searchSeconds, cell),
                                  preprocessing: Dictionary(tuner.models.map { ($0.name, $0.input.report) }, uniquingKeysWith: { a, _ in a }),
                                  cpuSeconds: processCPUSeconds() - cpu0 + searchCPUBeforeResume,
                                  testCorrect: testCorrect, vote: vote)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try enc.encode(metrics), to: dir + "/metrics.json")
        if !config.keepCheckpoints { try? FileManager.default.removeItem(atPath: dir + "/checkpoint.bin") }
        return metrics
    }

    /// ALS's genetic search for one source (replayed from `als.json` when an earlier process
    /// finished it); the fitness fine-tunes use `alsSubset` of the training split.
    func alsFrozenUnits(model: SourceModel, classes: [String], training: TrainOptions, seed: UInt64,
                        train: any ImageDataset, validation: any ImageDataset, runDir: String) throws -> Set<Int> {
        if let data = FileManager.default.contents(atPath: runDir + "/als.json"),
           let done = try? JSONDecoder().decode(GeneticResult.self, from: data), done.bestMask.count == model.units.count {
            return Set(done.bestMask.indices.filter { done.bestMask[$0] })
        }
        var ga = config.als
        ga.seed = seed
        var searchTrain = train
        if config.alsSubset < 1 {
            let s = try stratifiedSplit(labels: train.labels, validationFraction: 0, testFraction: 1 - config.alsSubset,
                                        seed: seed &+ 0xA15)
            searchTrain = DatasetSubset(train, indices: s.train)
        }
        let cache = training.prefixCache ? PrefixCache(megabytes: training.cacheMB) : nil
        let search = try ALSSearch(model: model, classes: classes, training: training, epochs: config.alsEpochs,
                                   options: ga, cache: cache)
        search.events = events
        return try search.run(train: searchTrain, validation: validation, runDir: runDir).frozen
    }

    /// A resumed amcf cell did its search in an earlier process; its time still counts.
    private func searchSecondsBeforeResume(_ earlier: RunRecord?, _ searchSeconds: Double, _ cell: ExperimentCell) -> Double {
        ["amcf", "ensemble-searched", "als"].contains(cell.method) && earlier?.depths.isEmpty == false ? searchSeconds : 0
    }

    /// Writes `results.json`, `results.csv`, `results.md` and `report.html` for `outcomes`.
    public func writeResults(_ outcomes: [CellOutcome]) throws {
        let summary = ExperimentSummary(config: config, outcomes: outcomes)
        try writeAtomically(try summary.json(), to: outDir + "/results.json")
        try writeAtomically(Data(summary.csv().utf8), to: outDir + "/results.csv")
        try writeAtomically(Data(summary.markdown().utf8), to: outDir + "/results.md")
        try writeAtomically(Data(summary.html().utf8), to: outDir + "/report.html")
    }
}
