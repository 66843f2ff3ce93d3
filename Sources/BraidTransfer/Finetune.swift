import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

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
    /// Batches whose update was skipped for a non-finite loss or gradient (nil in records
    /// written before the count existed).
    public var skippedBatches: Int?
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
    /// The nodes the plan runs, in order (the suffix when a prefix is cut).
    let planNodes: [Node]
    /// The first node reading each parameter, to name a layer in messages.
    let layerOf: [String: String]
    /// Running statistics the forward pass updates, and room to restore them when a
    /// batch's update is dropped.
    let runningStats: [(live: Tensor, saved: Tensor)]
    /// `TrainOptions.clipPercentile`'s norms so far (nil: off).
    var adaptiveClip: AdaptiveClip?

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
            planNodes = split.suffix.nodes
        } else {
            prefix = nil
            plan = try TrainingPlan.make(graph: setup.graph, output: "logits", trainable: setup.trainable,
                                         feeds: [model.inputName: batchShape])
            planNodes = setup.graph.nodes
        }
        var layers: [String: String] = [:]
        var stats: [(Tensor, Tensor)] = []
        for node in planNodes {
            for name in node.inputs where layers[name] == nil { layers[name] = node.name }
            if case .batchNormTraining = node.op {
                for name in node.inputs.dropFirst(3).prefix(2) {
                    if let t = setup.graph.initializers[name], t.dtype.isFloat { stats.append((t, t.copy())) }
                }
            }
        }
        layerOf = layers
        runningStats = stats
        let penalised = options.method == .l2sp
        let decay = penalised ? 0 : options.weightDecay
        switch options.optimizer {
        case .sgd: optimizer = SGD(momentum: options.momentum, nesterov: options.nesterov, weightDecay: decay)
        case .adam: optimizer = Adam(weightDecay: decay)
        case .adamw: optimizer = Adam(weightDecay: decay, decoupled: true)
        }
        adaptiveClip = options.clipPercentile > 0 ? AdaptiveClip(percentile: options.clipPercentile) : nil
        l2sp = penalised ? L2SPPenalty(params: plan.params, alpha: options.l2spAlpha, beta: options.l2spBeta) : nil
        if options.method == .childTuning {
            child = try ChildTuningMask(mode: options.childMode, p: options.childP, seed: options.seed)
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

    /// Bytes a member of this model and setup would hold: the prefix's inference plan (when
    /// cut), the training plan (inputs, kept forward values, gradients), the weights and the
    /// optimiser's state (one buffer per trainable parameter for SGD, two for Adam).
    static func memoryNeeded(model: SourceModel, setup: TrainingSetup, options: TrainOptions,
                             caching: Bool) throws -> Int {
        let batchShape = model.spec.batchShape(options.batch)
        var total = 0
        let estimate: MemoryEstimate
        if caching, let split = PrefixSplit.find(graph: setup.graph, input: model.inputName, trainable: setup.trainable) {
            let prefix = try Executor(graph: split.prefix).memoryNeeded([model.inputName: (batchShape, .float32)])
            total += prefix.plannedBytes + prefix.constantBytes
            estimate = try TrainingPlan.memoryNeeded(graph: split.suffix, output: "logits", trainable: setup.trainable,
                                                     feeds: prefix.outputShapes.filter { split.cuts.contains($0.key) })
        } else {
            estimate = try TrainingPlan.memoryNeeded(graph: setup.graph, output: "logits", trainable: setup.trainable,
                                                     feeds: [model.inputName: batchShape])
        }
        let weights = setup.graph.initializers.values.reduce(0) { $0 + $1.buffer.byteCount }
        let trainable = setup.trainable.reduce(0) { $0 + (setup.graph.initializers[$1]?.buffer.byteCount ?? 0) }
        return total + estimate.plannedBytes + estimate.constantBytes + weights + trainable * (options.optimizer == .sgd ? 1 : 2)
    }

    /// Clips the plan's gradients as `options` says (a fixed norm, or a percentile of the
    /// norms so far); returns the norm before clipping when one was computed.
    @discardableResult
    func clipGradients(_ options: TrainOptions) -> Float? {
        if options.clipNorm > 0 { return clipGradientNorm(plan.grads, maxNorm: options.clipNorm) }
        return adaptiveClip?.clip(plan.grads).norm
    }

    /// Forgets the norms `clipGradients` has seen (a fresh start from the initial weights).
    func resetClipping() {
        if let p = adaptiveClip?.percentile { adaptiveClip = AdaptiveClip(percentile: p) }
    }

    /// Copies the running statistics aside before a forward pass.
    func saveRunningStats() {
        for (live, saved) in runningStats { saved.buffer.raw.copyMemory(from: live.buffer.raw, byteCount: live.count * 4) }
    }

    /// Puts back the running statistics saved before the forward pass.
    func restoreRunningStats() {
        for (live, saved) in runningStats { live.buffer.raw.copyMemory(from: saved.buffer.raw, byteCount: live.count * 4) }
    }

    /// The first value of the forward pass (the input slots first) holding a NaN or an
    /// infinity, with the node that made it.
    func firstNonfiniteValue() -> (value: String, node: String?)? {
        for (name, t) in plan.inputs where !allFinite(t) { return (name, nil) }
        for node in planNodes {
            for name in node.outputs where !name.isEmpty {
                if let t = plan.values[name], t.dtype.isFloat, !allFinite(t) { return (name, node.name) }
            }
        }
        return nil
    }
}

/// Trains one or more members in lockstep on the same batches with the collaborative loss
/// sum_j CE(z_j, y) + lambda * (1/N) * sum_j ||z_j - mean_i z_i||_2 (lambda unused for one
/// member), each with its own optimiser, checkpointing after every epoch (and every
/// `checkpointEvery` batches).
public final class Finetuner {
    /// The run's settings (`trainRecoveringRate` lowers `lr` between its attempts).
    public internal(set) var options: TrainOptions
    public let classes: [String]
    let members: [Member]
    let runDir: String
    /// Receives progress, per-epoch notes and warnings (nil: nothing is reported).
    public var events: TrainingEvents?
    /// For fitness evaluations: no checkpoints, and validation (ensemble only) after the
    /// last epoch alone.
    public var scoringOnly = false
    /// Set by `trainRecoveringRate`: a divergence (`DivergenceWatch`) ends `train` with
    /// `TrainingDiverged` instead of a checkpoint and an error.
    var watchDivergence = false
    /// With `watchDivergence`: a first epoch that learned nothing (`DivergenceWatch.learnedNothing`)
    /// ends `train` with `TrainingDiverged` too.
    var watchProgress = false
    public internal(set) var history: [EpochRecord] = []
    /// Each batch's loss (of the whole global batch when data-parallel), in order, from
    /// the run's first batch (a resumed run's include those its checkpoint recorded).
    public internal(set) var stepLosses: [Float] = []
    /// The rates `trainRecoveringRate` trained with, in order, and how each ended (empty
    /// after plain `train`).
    public internal(set) var rateAttempts: [RateAttempt] = []

    /// The prefix cache in use (nil when caching is off).
    public let prefixCache: PrefixCache?
    /// Data-parallel training over several ranks (nil: this process alone).
    let parallel: DataParallel?
    /// Rows of each member's plan: `options.batch`, or one rank's shard of it.
    let memberBatch: Int
    /// With `scoringOnly`: a prefix cache for the validation split's images, through which
    /// members with a cached frozen prefix are scored (nil: scored on whole graphs).
    public var validationPrefixCache: PrefixCache?

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
         prefixCache: PrefixCache?, group: (any ProcessGroup)? = nil) throws {
        try options.validate()
        self.options = options
        let memberOptions = try Self.memberOptions(options, group: group)
        parallel = group.flatMap { $0.size > 1 ? DataParallel(group: $0) : nil }
        memberBatch = memberOptions.batch
        self.classes = classes
        self.runDir = runDir
        let cache = options.prefixCache ? (prefixCache ?? PrefixCache(megabytes: options.cacheMB)) : nil
        self.prefixCache = cache
        if let limit = options.maxMemory {
            let each = try zip(models, setups).map {
                try Member.memoryNeeded(model: $0, setup: $1, options: memberOptions, caching: cache != nil)
            }
            let total = each.reduce(0, +)
            if total > limit {
                let parts = zip(models, each).map { "\($0.name) \(formatBytes($1))" }.joined(separator: ", ")
                throw MemoryLimitError(needed: total, limit: limit,
                                       detail: "training plans, weights and optimiser state at batch \(options.batch): \(parts)")
            }
        }
        members = try zip(models, setups).map { try Member(model: $0, setup: $1, options: memberOptions, cache: cache) }
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
        case .cosine: schedule = .cosine(epochs: options.epochs, minLR: 0)
        case .constant: schedule = .constant
        case .step: schedule = .step(stepSize: options.stepSize, gamma: options.gamma)
        }
        let rate = schedule.rate(base: options.lr, epoch: epoch) * warmupFactor(step: step, steps: options.warmupSteps)
        guard options.rampFrom > 0 && options.rampGrowth > 1 && options.rampFrom < rate else { return rate }
        return min(rate, options.rampFrom * pow(options.rampGrowth, Float(min(step, 10_000))))
    }

    /// Trains from the first epoch, or from where the checkpoint in the run directory left
    /// off when `resume` is set: the epoch after it, or mid-epoch at the batch after it when
    /// it was written within an epoch (the loader's order for an epoch is fixed by the seed,
    /// so the remaining batches are the ones an uninterrupted run would see).
    ///
    /// - Throws: `TrainingInterrupted` after a checkpoint when `StopRequest` was raised
    ///   (SIGINT, SIGTERM); `TrainingError` for a non-finite loss or gradient under
    ///   `onNonfinite == .stop`, after checkpointing the state before that batch.
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
        var position = Position(epoch: 0, batch: 0, step: 0, tally: Tally())
        if resume, FileManager.default.fileExists(atPath: checkpointPath) {
            position = try restore()
            if position.step < 0 { position.step = position.epoch * loader.batchesPerEpoch }
        }
        let k = classes.count
        parallel?.begin()
        defer { parallel?.end() }
        var step = position.step
        var losses = [Float](repeating: 0, count: members.count)
        var watch = watchDivergence ? DivergenceWatch(classes: k) : nil
        for epoch in position.epoch..<options.epochs {
            let first = epoch == position.epoch ? position.batch : 0
            var tally = epoch == position.epoch ? position.tally : Tally()
            let rate = lr(epoch: epoch, step: step - first)
            let phase = "epoch \(epoch + 1)/\(options.epochs)"
            let t0 = Date()
            let it = loader.epoch(epoch, startingAt: first, shard: parallel.map { ($0.group.rank, $0.group.size) })
            // Data-parallel divergence watch: the whole global batch's labels, from the epoch's order
            // (made once an epoch, not once a batch).
            let globalOrder = parallel != nil && watch != nil ? loader.order(epoch: epoch) : []
            var b = first
            while let batch = try it.next() {
                let n = batch.labels.count
                for (j, m) in members.enumerated() {
                    m.saveRunningStats()
                    try m.load(batch.inputs[j], indices: batch.indices)
                    m.plan.forward()
                }
                var loss: Float = 0
                for (j, m) in members.enumerated() {
                    losses[j] = softmaxCrossEntropy(logits: m.plan.output, labels: batch.labels,
                                                    smoothing: options.labelSmoothing, grad: m.plan.outputGrad)
                    loss += losses[j]
                }
                if members.count > 1 && options.lambda > 0 {
                    let consistency = options.consistency == .kl ? softmaxConsistency : logitConsistency
                    loss += consistency(members.map(\.plan.output), options.lambda, members.map(\.plan.outputGrad))
                }
                for m in members {
                    if let l2sp = m.l2sp { loss += l2sp.value(params: m.plan.params) }
                }
                var (correct, rows) = (ensembleCorrect(labels: batch.labels), n)
                if let parallel { (loss, correct, rows) = try parallel.batchFigures(loss: loss, correct: correct, rows: n) }
                let rising = loss.isFinite ? watch?.observe(loss) : nil
                var problem = loss.isFinite ? rising : lossProblem(losses, total: loss)
                if problem == nil {
                    for m in members {
                        m.plan.backward()
                        m.l2sp?.addGradient(params: m.plan.params, grads: m.plan.grads)
                        m.child?.apply(grads: m.plan.grads, step: step)
                    }
                    try parallel?.averageGradients(members)
                    problem = gradientProblem()
                }
                if let problem {
                    let at = "epoch \(epoch + 1), batch \(b + 1)"
                    for m in members { m.restoreRunningStats() }
                    if watch != nil && (rising != nil || options.onNonfinite == .stop) {
                        throw TrainingDiverged(rate: options.lr, at: at, reason: problem)
                    }
                    if options.onNonfinite == .skip {
                        tally.skipped += 1
                        events?(.warning("skipped the update of \(at): \(problem)"))
                        b += 1
                        step += 1
                        try afterBatch(epoch: epoch, batch: b, step: step, tally: tally, since: t0)
                        continue
                    }
                    var kept = ""
                    if !scoringOnly {
                        var t = tally
                        t.seconds += Date().timeIntervalSince(t0)
                        try saveCheckpoint(Position(epoch: epoch, batch: b, step: step, tally: t))
                        kept = "; \(checkpointPath) keeps the state before this batch"
                    }
                    throw TrainingError("\(problem) at \(at)\(kept); lower the learning rate, check the data, or skip such batches",
                                        setting: "onNonfinite")
                }
                for m in members {
                    m.clipGradients(options)
                    m.optimizer.step(params: m.plan.params, grads: m.plan.grads, lr: lr(epoch: epoch, step: step))
                }
                tally.correct += correct
                if watch != nil {
                    // The whole global batch's labels, so that every rank decides alike.
                    let labels = parallel == nil ? batch.labels
                        : globalOrder[(b * options.batch)..<((b + 1) * options.batch)].map(train.label)
                    for label in labels { watch?.tally(label: label) }
                }
                tally.lossSum += Double(loss)
                stepLosses.append(loss)
                tally.seen += rows
                tally.batches += 1
                b += 1
                step += 1
                report(phase, done: b, total: loader.batchesPerEpoch, tally: tally, since: t0, final: false)
                try afterBatch(epoch: epoch, batch: b, step: step, tally: tally, since: t0)
            }
            report(phase, done: b, total: loader.batchesPerEpoch, tally: tally, since: t0, final: true)
            if watchProgress && epoch == 0, let reason = watch?.learnedNothing() {
                throw TrainingDiverged(rate: options.lr, at: "the end of epoch 1", reason: reason)
            }
            let seconds = Date().timeIntervalSince(t0)
            if scoringOnly && epoch + 1 < options.epochs { continue }
            let val = scoringOnly
                ? (ensemble: try validationPrefixCache.map { try evaluateEnsemble(on: validation, prefixCache: $0) }
                       ?? evaluateEnsemble(on: validation), members: [Evaluation]())
                : try evaluateMembers(on: validation)
            history.append(EpochRecord(epoch: epoch + 1, lr: rate, trainLoss: tally.lossSum / Double(max(tally.batches, 1)),
                                       trainAccuracy: Double(tally.correct) / Double(max(tally.seen, 1)),
                                       validationAccuracy: val.ensemble.accuracy,
                                       memberValidationAccuracy: val.members.map(\.accuracy),
                                       seconds: tally.seconds + seconds,
                                       imagesPerSecond: Double(tally.seen) / max(tally.seconds + seconds, 1e-9),
                                       skippedBatches: tally.skipped))
            events?(.note(String(format: "  validation accuracy %.2f%%", val.ensemble.accuracy * 100)))
            if tally.skipped > 0 { events?(.note("  \(tally.skipped) batch update(s) skipped for non-finite values")) }
            if !scoringOnly { try saveCheckpoint(Position(epoch: epoch + 1, batch: 0, step: step, tally: Tally())) }
            if let signal = StopRequest.pendingSignal {
                throw TrainingInterrupted(signal: signal, epoch: epoch + 1, batch: 0, checkpoint: scoringOnly ? nil : checkpointPath)
            }
        }
    }

    /// Sends a progress event for the epoch so far.
    func report(_ phase: String, done: Int, total: Int, tally: Tally, since t0: Date, final: Bool) {
        guard let events else { return }
        events(.progress(TrainingProgress(phase: phase, done: done, total: total, images: tally.seen,
                                          loss: tally.lossSum / Double(max(tally.batches, 1)),
                                          accuracy: Double(tally.correct) / Double(max(tally.seen, 1)),
                                          seconds: Date().timeIntervalSince(t0), final: final)))
    }

    /// Computes every training image's frozen-prefix activations once, in dataset order
    /// (the remainder that `dropLast` leaves out of an epoch included), skipping batches
    /// already cached (by an earlier fine-tune sharing the cache).
    func warmPrefixCache(train: any ImageDataset) throws {
        let staged = members.enumerated().filter { $0.element.prefix != nil }
        guard !staged.isEmpty else { return }
        let loader = try BatchLoader(dataset: train, specs: staged.map(\.element.model.spec), batchSize: memberBatch,
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
        return try evaluate(members: all, on: data, batchSize: options.batch, classes: classes.count,
                                softmaxVote: options.vote == .softmax)
    }

    /// Ensemble and per-member evaluation in inference mode.
    public func evaluateMembers(on data: any ImageDataset) throws -> (ensemble: Evaluation, members: [Evaluation]) {
        let all = members.map { (graph: $0.model.graph, inputName: $0.model.inputName, spec: $0.model.spec) }
        let ensemble = try evaluate(members: all, on: data, batchSize: options.batch, classes: classes.count,
                                softmaxVote: options.vote == .softmax)
        if all.count == 1 { return (ensemble, [ensemble]) }
        let each = try all.map { try evaluate(members: [$0], on: data, batchSize: options.batch, classes: classes.count) }
        return (ensemble, each)
    }
}
