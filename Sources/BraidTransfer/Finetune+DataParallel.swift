import BraidData
import BraidGraph
import BraidKernels
import BraidTensor
import BraidTraining
import Foundation

/// Data-parallel training over a process group: every rank holds the same members, takes
/// its consecutive `1/size` shard of each global batch (the batches one process would
/// train on, in the same order), and after the backward pass the gradients are averaged
/// over the ranks with all-reduces over 4 MiB buckets, so that every rank applies the same
/// update as one process training on the whole global batch would.
///
/// Batch norms in training mode are synchronised (`BatchStatisticsSync`): each normalises
/// its shard with the global batch's mean and variance (per channel, sums all-reduced) and
/// its backward all-reduces `sum(dy)` and `sum(dy * xhat)`, so the forward values, the
/// running statistics and the gradients are those of the whole batch up to float
/// summation order. The loss, accuracy and non-finite checks use the global batch's
/// figures, so every rank takes the same decisions. The all-reduces run after the backward
/// pass, not overlapped with it.
final class DataParallel {
    let group: any ProcessGroup
    private let bucket: UnsafeMutableBufferPointer<Float>
    /// Floats per all-reduce.
    static let bucketFloats = 1 << 20

    init(group: any ProcessGroup) {
        self.group = group
        bucket = .allocate(capacity: Self.bucketFloats)
    }

    deinit { bucket.deallocate() }

    /// Turns the synchronised batch norms on (until `end`).
    func begin() {
        let group = self.group
        BatchStatisticsSync.processes = group.size
        BatchStatisticsSync.allReduce = { values in
            do { try group.allReduceSum(values) } catch {
                FileHandle.standardError.write(Data("braid: error: rank \(group.rank): batch-norm statistics: \(error)\n".utf8))
                exit(1)
            }
        }
    }

    func end() {
        BatchStatisticsSync.allReduce = nil
        BatchStatisticsSync.processes = 1
    }

    /// The global batch's mean loss (the ranks' shard means averaged), correct predictions
    /// and rows.
    func batchFigures(loss: Float, correct: Int, rows: Int) throws -> (loss: Float, correct: Int, rows: Int) {
        var figures = [Double(loss), Double(correct), Double(rows)]
        try figures.withUnsafeMutableBufferPointer { try group.allReduceSum($0) }
        return (Float(figures[0] / Double(group.size)), Int(figures[1]), Int(figures[2]))
    }

    /// Replaces every trainable parameter's gradient by its mean over the ranks.
    func averageGradients(_ members: [Member]) throws {
        let scale = 1 / Float(group.size)
        var pending: [(tensor: Tensor, from: Int, count: Int, at: Int)] = []
        var used = 0
        func flush() throws {
            guard used > 0 else { return }
            try group.allReduceSum(UnsafeMutableBufferPointer(rebasing: bucket[0..<used]))
            for p in pending {
                let dst = p.tensor.floats + p.from
                for i in 0..<p.count { dst[i] = bucket[p.at + i] * scale }
            }
            pending.removeAll(keepingCapacity: true)
            used = 0
        }
        for m in members {
            for name in m.plan.grads.keys.sorted() {
                let g = m.plan.grads[name]!
                var from = 0
                while from < g.count {
                    if used == bucket.count { try flush() }
                    let n = min(g.count - from, bucket.count - used)
                    let src = g.floats + from
                    for i in 0..<n { bucket[used + i] = src[i] }
                    pending.append((g, from, n, used))
                    used += n
                    from += n
                }
            }
        }
        try flush()
    }
}

extension Finetuner {
    /// A data-parallel fine-tune (see `DataParallel`) over `group`: on each rank, the
    /// members' plans hold `options.batch / group.size` rows, which must be a whole number.
    /// Rank 0 alone writes checkpoints; a checkpoint resumes on any number of ranks.
    public convenience init(models: [SourceModel], depths: [Int], classes: [String], options: TrainOptions, runDir: String,
                            prefixCache: PrefixCache? = nil, dataParallel group: any ProcessGroup) throws {
        precondition(models.count == depths.count)
        let setups = try zip(models, depths).map { try $0.graph.trainingSetup(freezeDepth: $1) }
        try self.init(models: models, setups: setups, classes: classes, options: options, runDir: runDir,
                      prefixCache: prefixCache, group: group)
    }

    /// Member j freezes exactly the backbone units in `frozenUnits[j]` (ALS), data-parallel over `group`.
    public convenience init(models: [SourceModel], frozenUnits: [Set<Int>], classes: [String], options: TrainOptions,
                            runDir: String, prefixCache: PrefixCache? = nil, dataParallel group: any ProcessGroup) throws {
        precondition(models.count == frozenUnits.count)
        let setups = try zip(models, frozenUnits).map { try $0.graph.trainingSetup(frozenUnits: $1) }
        try self.init(models: models, setups: setups, classes: classes, options: options, runDir: runDir,
                      prefixCache: prefixCache, group: group)
    }

    /// The options each member's plan is built with: the global batch, or a rank's shard of it.
    static func memberOptions(_ options: TrainOptions, group: (any ProcessGroup)?) throws -> TrainOptions {
        guard let group, group.size > 1 else { return options }
        guard options.batch % group.size == 0 else {
            throw TrainingError("--data-parallel on \(group.size) ranks needs a batch that is a multiple of \(group.size), got \(options.batch)", setting: "batch")
        }
        guard !(options.method == .childTuning && options.childMode == .f) else {
            throw TrainingError("--data-parallel does not run child-tuning with a Fisher mask yet; use --child-mode d or one rank")
        }
        var o = options
        o.batch = options.batch / group.size
        return o
    }

    /// Floats of gradient the members' trainable parameters have (what a data-parallel step
    /// all-reduces).
    public var gradientFloats: Int {
        members.reduce(0) { $0 + $1.plan.grads.values.reduce(0) { $0 + $1.count } }
    }

    /// Batch norms in training mode in the members' plans (each synchronised three times per
    /// data-parallel step).
    public var trainingBatchNorms: Int {
        members.reduce(0) { total, m in
            total + m.planNodes.filter { if case .batchNormTraining = $0.op { return true } else { return false } }.count
        }
    }

    /// Sum over the batch's rows of correct ensemble predictions (argmax of the summed logits).
    func ensembleCorrect(labels: [Int]) -> Int {
        let k = classes.count
        var correct = 0
        for r in 0..<labels.count {
            var best = 0, bestScore = -Float.infinity
            for c in 0..<k {
                var s: Float = 0
                for m in members { s += m.plan.output.floats[r * k + c] }
                if s > bestScore { bestScore = s; best = c }
            }
            if best == labels[r] { correct += 1 }
        }
        return correct
    }
}
