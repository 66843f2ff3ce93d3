import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

/// How a fine-tuning run trains its members.
public struct TrainOptions: Codable, Sendable, Equatable {
    /// `standard` (all layers), `linear-probe` (head only), `freeze` (first `freeze[j]` units
    /// frozen), `scratch` (re-initialised, all layers), `amcf-fixed` (collaborative loss with
    /// the given freeze depths), `l2sp`, `child-tuning`, `als` (a searched freeze bitmask).
    public var method = "standard"
    public var freeze: [Int] = []
    public var epochs = 10
    public var batch = 64
    public var lr: Float = 0.01
    public var optimizer = "sgd"
    public var momentum: Float = 0.9
    public var nesterov = false
    public var weightDecay: Float = 5e-4
    /// `step` (StepLR stepSize/gamma), `cosine`, or `constant`.
    public var schedule = "step"
    public var stepSize = 30
    public var gamma: Float = 0.1
    public var warmupSteps = 0
    public var labelSmoothing: Float = 0
    /// Weight of the collaborative consistency term (used with several members).
    public var lambda: Float = 0.2
    public var clipNorm: Float = 0
    public var seed: UInt64 = 0
    public var valFraction = 0.1
    public var testFraction = 0.2
    /// L2-SP: weight of alpha/2 ||w - w0||^2 on the backbone and beta/2 ||w||^2 on the head.
    public var l2spAlpha: Float = 0.01
    public var l2spBeta: Float = 0.01
    /// Child-Tuning: kept fraction p, and `d` (Bernoulli mask) or `f` (Fisher mask).
    public var childP: Float = 0.3
    public var childMode = "d"
    /// Reuse frozen-prefix activations across epochs (when no augmentation changes images).
    public var prefixCache = true
    /// In-memory budget of the prefix cache in MiB (beyond it, activations spill to disk).
    public var cacheMB = 2048

    public init() {}
}

extension TrainOptions {
    private enum Keys: String, CodingKey {
        case method, freeze, epochs, batch, lr, optimizer, momentum, nesterov, weightDecay, schedule, stepSize
        case gamma, warmupSteps, labelSmoothing, lambda, clipNorm, seed, valFraction, testFraction
        case l2spAlpha, l2spBeta, childP, childMode, prefixCache, cacheMB
    }

    /// Decodes a run record; settings missing from older records keep their defaults.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: Keys.self)
        func get<T: Decodable>(_ key: Keys, _ value: inout T) throws {
            if let v = try c.decodeIfPresent(T.self, forKey: key) { value = v }
        }
        try get(.method, &method); try get(.freeze, &freeze); try get(.epochs, &epochs); try get(.batch, &batch)
        try get(.lr, &lr); try get(.optimizer, &optimizer); try get(.momentum, &momentum)
        try get(.nesterov, &nesterov); try get(.weightDecay, &weightDecay); try get(.schedule, &schedule)
        try get(.stepSize, &stepSize); try get(.gamma, &gamma); try get(.warmupSteps, &warmupSteps)
        try get(.labelSmoothing, &labelSmoothing); try get(.lambda, &lambda); try get(.clipNorm, &clipNorm)
        try get(.seed, &seed); try get(.valFraction, &valFraction); try get(.testFraction, &testFraction)
        try get(.l2spAlpha, &l2spAlpha); try get(.l2spBeta, &l2spBeta); try get(.childP, &childP)
        try get(.childMode, &childMode); try get(.prefixCache, &prefixCache); try get(.cacheMB, &cacheMB)
    }
}

/// One epoch's figures.
public struct EpochRecord: Codable, Sendable {
    public var epoch: Int
    public var lr: Float
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var validationAccuracy: Double
    public var memberValidationAccuracy: [Double]
    public var seconds: Double
    public var imagesPerSecond: Double
}

/// A member under training: its model, its training plan and its optimiser, the frozen
/// prefix whose output is cached (if any) and the baseline's gradient rules.
final class Member {
    var model: SourceModel
    let setup: TrainingSetup
    let plan: TrainingPlan
    let optimizer: any Optimizer
    let prefix: PrefixStage?
    let l2sp: L2SPPenalty?
    let child: ChildTuningMask?

    init(model: SourceModel, setup: TrainingSetup, options: TrainOptions, cache: PrefixCache?) throws {
        self.model = model
        self.setup = setup
        let batchShape = model.spec.batchShape(options.batch)
        if let cache, let split = PrefixSplit.find(graph: setup.graph, input: model.inputName, trainable: setup.trainable) {
            let stage = try PrefixStage(member: model.name, split: split, input: model.inputName,
                                        batchShape: batchShape, cache: cache)
            prefix = stage
            plan = try TrainingPlan.make(graph: split.suffix, output: "logits", trainable: setup.trainable,
                                         feeds: stage.cutShapes)
        } else {
            prefix = nil
            plan = try TrainingPlan.make(graph: setup.graph, output: "logits", trainable: setup.trainable,
                                         feeds: [model.inputName: batchShape])
        }
        let penalised = options.method == "l2sp"
        let decay = penalised ? 0 : options.weightDecay
        switch options.optimizer {
        case "sgd": optimizer = SGD(momentum: options.momentum, nesterov: options.nesterov, weightDecay: decay)
        case "adam": optimizer = Adam(weightDecay: decay)
        case "adamw": optimizer = Adam(weightDecay: decay, decoupled: true)
        default: throw TrainingError("unknown optimizer '\(options.optimizer)' (expected sgd, adam or adamw)")
        }
        l2sp = penalised ? L2SPPenalty(params: plan.params, alpha: options.l2spAlpha, beta: options.l2spBeta) : nil
        if options.method == "child-tuning" {
            guard let mode = ChildTuningMask.Mode(rawValue: options.childMode) else {
                throw TrainingError("unknown --child-mode '\(options.childMode)' (expected d or f)")
            }
            child = try ChildTuningMask(mode: mode, p: options.childP, seed: options.seed)
        } else {
            child = nil
        }
    }

    /// Fills the plan's input from the batch's images (through the prefix cache when cut).
    func load(_ images: Tensor, indices: [Int]) throws {
        if let prefix {
            try prefix.fill(plan.inputs, images: images, indices: indices)
        } else {
            let slot = plan.inputs[0].tensor
            slot.buffer.raw.copyMemory(from: images.buffer.raw, byteCount: slot.count * 4)
        }
    }
}

/// Trains one or more members in lockstep on the same batches with the collaborative loss
/// sum_j CE(z_j, y) + lambda * (1/N) * sum_j ||z_j - mean_i z_i||_2 (lambda unused for one
/// member), each with its own optimiser, checkpointing after every epoch.
public final class Finetuner {
    public let options: TrainOptions
    public let classes: [String]
    let members: [Member]
    let runDir: String
    public var quiet = false
    /// For fitness evaluations: no checkpoints, and validation (ensemble only) after the
    /// last epoch alone.
    public var scoringOnly = false
    public private(set) var history: [EpochRecord] = []

    /// The prefix cache in use (nil when caching is off).
    public let prefixCache: PrefixCache?

    /// `depths[j]` is member j's freeze depth. `prefixCache` is shared with other fine-tunes
    /// on the same training data and pretrained weights; without one, a private cache is
    /// made when `options.prefixCache` is on.
    public convenience init(models: [SourceModel], depths: [Int], classes: [String], options: TrainOptions, runDir: String,
                            prefixCache: PrefixCache? = nil) throws {
        precondition(models.count == depths.count)
        let setups = try zip(models, depths).map { try $0.graph.trainingSetup(freezeDepth: $1) }
        try self.init(models: models, setups: setups, classes: classes, options: options, runDir: runDir, prefixCache: prefixCache)
    }

    /// Member j freezes exactly the backbone units in `frozenUnits[j]` (ALS).
    public convenience init(models: [SourceModel], frozenUnits: [Set<Int>], classes: [String], options: TrainOptions,
                            runDir: String, prefixCache: PrefixCache? = nil) throws {
        precondition(models.count == frozenUnits.count)
        let setups = try zip(models, frozenUnits).map { try $0.graph.trainingSetup(frozenUnits: $1) }
        try self.init(models: models, setups: setups, classes: classes, options: options, runDir: runDir, prefixCache: prefixCache)
    }

    init(models: [SourceModel], setups: [TrainingSetup], classes: [String], options: TrainOptions, runDir: String,
         prefixCache: PrefixCache?) throws {
        self.options = options
        self.classes = classes
        self.runDir = runDir
        let cache = options.prefixCache ? (prefixCache ?? PrefixCache(megabytes: options.cacheMB)) : nil
        self.prefixCache = cache
        members = try zip(models, setups).map { try Member(model: $0, setup: $1, options: options, cache: cache) }
    }

    /// For each member, the values where its cached frozen prefix ends (empty: not cut).
    public var prefixCuts: [[String]] { members.map { $0.prefix?.cuts ?? [] } }

    public var depths: [Int] { members.map(\.setup.frozenDepth) }
    public var unitCounts: [Int] { members.map(\.setup.units.count) }
    public var models: [SourceModel] { members.map(\.model) }

    var checkpointPath: String { runDir + "/checkpoint.bin" }

    func lr(epoch: Int, step: Int) -> Float {
        let schedule: LRSchedule
        switch options.schedule {
        case "cosine": schedule = .cosine(epochs: options.epochs, minLR: 0)
        case "constant": schedule = .constant
        default: schedule = .step(stepSize: options.stepSize, gamma: options.gamma)
        }
        return schedule.rate(base: options.lr, epoch: epoch) * warmupFactor(step: step, steps: options.warmupSteps)
    }

    /// Trains from the first epoch, or from the epoch after the checkpoint in the run
    /// directory when `resume` is set.
    public func train(train: any ImageDataset, validation: any ImageDataset, resume: Bool) throws {
        let loader = try BatchLoader(dataset: train, specs: members.map(\.model.spec), batchSize: options.batch,
                                     shuffle: true, dropLast: true, seed: options.seed)
        guard loader.batchesPerEpoch > 0 else {
            throw TrainingError("the training split holds \(train.count) images, fewer than one batch of \(options.batch)")
        }
        try warmPrefixCache(train: train)
        if members.contains(where: { $0.child?.mode == .f }) {
            try accumulateFisher(loader: loader)
        }
        var startEpoch = 0
        if resume, FileManager.default.fileExists(atPath: checkpointPath) {
            startEpoch = try restore()
        }
        let k = classes.count
        var step = startEpoch * loader.batchesPerEpoch
        for epoch in startEpoch..<options.epochs {
            let rate = lr(epoch: epoch, step: step)
            var bar = ProgressBar(label: "epoch \(epoch + 1)/\(options.epochs)", total: loader.batchesPerEpoch)
            bar.quiet = quiet
            let t0 = Date()
            var lossSum = 0.0, correct = 0, seen = 0, batches = 0
            let it = loader.epoch(epoch)
            while let batch = try it.next() {
                let n = batch.labels.count
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
                    loss += logitConsistency(members.map(\.plan.output), weight: options.lambda,
                                             grads: members.map(\.plan.outputGrad))
                }
                for m in members {
                    if let l2sp = m.l2sp { loss += l2sp.value(params: m.plan.params) }
                }
                guard loss.isFinite else {
                    throw TrainingError("loss became \(loss) at epoch \(epoch + 1), batch \(batches + 1): lower --lr or check the data")
                }
                for m in members {
                    m.plan.backward()
                    m.l2sp?.addGradient(params: m.plan.params, grads: m.plan.grads)
                    m.child?.apply(grads: m.plan.grads)
                    if options.clipNorm > 0 { clipGradientNorm(m.plan.grads, maxNorm: options.clipNorm) }
                    m.optimizer.step(params: m.plan.params, grads: m.plan.grads, lr: lr(epoch: epoch, step: step))
                }
                for r in 0..<n {
                    var best = 0, bestScore = -Float.infinity
                    for c in 0..<k {
                        var s: Float = 0
                        for m in members { s += m.plan.output.floats[r * k + c] }
                        if s > bestScore { bestScore = s; best = c }
                    }
                    if best == batch.labels[r] { correct += 1 }
                }
                lossSum += Double(loss)
                seen += n
                batches += 1
                step += 1
                bar.update(done: batches, images: seen, loss: lossSum / Double(batches),
                           accuracy: Double(correct) / Double(seen))
            }
            bar.update(done: batches, images: seen, loss: lossSum / Double(max(batches, 1)),
                       accuracy: Double(correct) / Double(max(seen, 1)), final: true)
            let seconds = Date().timeIntervalSince(t0)
            if scoringOnly && epoch + 1 < options.epochs { continue }
            let val = scoringOnly
                ? (ensemble: try evaluateEnsemble(on: validation), members: [Evaluation]())
                : try evaluateMembers(on: validation)
            history.append(EpochRecord(epoch: epoch + 1, lr: rate, trainLoss: lossSum / Double(max(batches, 1)),
                                       trainAccuracy: Double(correct) / Double(max(seen, 1)),
                                       validationAccuracy: val.ensemble.accuracy,
                                       memberValidationAccuracy: val.members.map(\.accuracy),
                                       seconds: seconds, imagesPerSecond: Double(seen) / max(seconds, 1e-9)))
            if !quiet {
                FileHandle.standardError.write(Data(String(format: "  validation accuracy %.2f%%\n", val.ensemble.accuracy * 100).utf8))
            }
            if !scoringOnly { try saveCheckpoint(epoch: epoch + 1) }
        }
    }

    /// Computes every training image's frozen-prefix activations once, in dataset order
    /// (the remainder that `dropLast` leaves out of an epoch included), skipping batches
    /// already cached (by an earlier fine-tune sharing the cache).
    func warmPrefixCache(train: any ImageDataset) throws {
        let staged = members.enumerated().filter { $0.element.prefix != nil }
        guard !staged.isEmpty else { return }
        let loader = try BatchLoader(dataset: train, specs: staged.map(\.element.model.spec), batchSize: options.batch,
                                     shuffle: false, dropLast: false, seed: options.seed)
        let it = loader.epoch(0)
        while let batch = try it.next() {
            for (k, (_, m)) in staged.enumerated() where !m.prefix!.isCached(batch.indices) {
                try m.prefix!.compute(images: batch.inputs[k], indices: batch.indices)
            }
        }
    }

    /// Child-Tuning-F: one pass over the training data accumulating squared backbone
    /// gradients, then the fixed masks. Running statistics are left as they were.
    func accumulateFisher(loader: BatchLoader) throws {
        let saved = members.map { m in m.model.graph.initializers.filter { $0.value.dtype.isFloat }.mapValues { $0.copy() } }
        let it = loader.epoch(0)
        while let batch = try it.next() {
            for (j, m) in members.enumerated() {
                guard let child = m.child, child.mode == .f else { continue }
                try m.load(batch.inputs[j], indices: batch.indices)
                m.plan.forward()
                _ = softmaxCrossEntropy(logits: m.plan.output, labels: batch.labels, grad: m.plan.outputGrad)
                m.plan.backward()
                child.accumulateFisher(grads: m.plan.grads)
            }
        }
        for (j, m) in members.enumerated() {
            m.child?.freezeFisherMask()
            for (name, t) in m.model.graph.initializers where t.dtype.isFloat {
                if let old = saved[j][name] { t.buffer.raw.copyMemory(from: old.buffer.raw, byteCount: t.count * 4) }
            }
        }
    }

    /// The ensemble's evaluation alone, in inference mode.
    public func evaluateEnsemble(on data: any ImageDataset) throws -> Evaluation {
        let all = members.map { (graph: $0.model.graph, inputName: $0.model.inputName, spec: $0.model.spec) }
        return try evaluate(members: all, on: data, batchSize: options.batch, classes: classes.count)
    }

    /// Ensemble and per-member evaluation in inference mode.
    public func evaluateMembers(on data: any ImageDataset) throws -> (ensemble: Evaluation, members: [Evaluation]) {
        let all = members.map { (graph: $0.model.graph, inputName: $0.model.inputName, spec: $0.model.spec) }
        let ensemble = try evaluate(members: all, on: data, batchSize: options.batch, classes: classes.count)
        if all.count == 1 { return (ensemble, [ensemble]) }
        let each = try all.map { try evaluate(members: [$0], on: data, batchSize: options.batch, classes: classes.count) }
        return (ensemble, each)
    }

    /// Parameters (all float initializers, so running statistics too) and optimiser state.
    func saveCheckpoint(epoch: Int) throws {
        var tensors: [String: Tensor] = [:]
        var facts: [String: String] = ["epoch": String(epoch), "braid_version": braidVersion]
        for (j, m) in members.enumerated() {
            for (name, t) in m.model.graph.initializers where t.dtype.isFloat { tensors["m\(j)/\(name)"] = t }
            for (name, t) in m.optimizer.state { tensors["m\(j)/opt/\(name)"] = t }
            facts["m\(j)/steps"] = String(m.optimizer.stepCount)
        }
        let history = try JSONEncoder().encode(self.history)
        facts["history"] = String(decoding: history, as: UTF8.self)
        try Checkpoint(tensors: tensors, facts: facts).save(to: checkpointPath)
    }

    /// Loads the checkpoint into the members; returns the number of finished epochs.
    func restore() throws -> Int {
        let ck = try Checkpoint.load(from: checkpointPath)
        guard let epoch = ck.facts["epoch"].flatMap(Int.init) else {
            throw TrainingError("\(checkpointPath): no epoch recorded")
        }
        for (j, m) in members.enumerated() {
            for (name, t) in m.model.graph.initializers where t.dtype.isFloat {
                guard let saved = ck.tensors["m\(j)/\(name)"], saved.shape == t.shape else {
                    throw TrainingError("\(checkpointPath): parameter '\(name)' of member \(j) is missing or has another shape; was the run started with other sources?")
                }
                t.buffer.raw.copyMemory(from: saved.buffer.raw, byteCount: t.count * 4)
            }
            var state: [String: Tensor] = [:]
            for (name, t) in ck.tensors where name.hasPrefix("m\(j)/opt/") {
                state[String(name.dropFirst("m\(j)/opt/".count))] = t
            }
            m.optimizer.state = state
            m.optimizer.stepCount = ck.facts["m\(j)/steps"].flatMap(Int.init) ?? 0
        }
        if let h = ck.facts["history"] {
            history = try JSONDecoder().decode([EpochRecord].self, from: Data(h.utf8))
        }
        return epoch
    }
}

/// The version written into checkpoints and exported files.
public let braidVersion = "0.1.0"
