import BraidData
import BraidTensor
import BraidTraining
import Foundation

/// A fine-tune's safety net: where a run stands and its checkpoints (at epoch ends, every
/// `checkpointEvery` batches, and when a signal asks it to stop), and naming the member,
/// value or parameter where a NaN or an infinity first shows up.
extension Finetuner {
    /// Where a run stands: finished epochs, batches done in the current one, the global
    /// step and the current epoch's running figures.
    struct Position {
        var epoch: Int
        var batch: Int
        var step: Int
        var tally: Tally
    }

    /// The running figures of an epoch.
    struct Tally: Codable {
        var lossSum = 0.0
        var correct = 0
        var seen = 0
        var batches = 0
        var skipped = 0
        var seconds = 0.0
    }

    /// The periodic checkpoint within an epoch, and a stop requested by a signal.
    func afterBatch(epoch: Int, batch: Int, step: Int, tally: Tally, since t0: Date) throws {
        let signal = StopRequest.pendingSignal
        let periodic = options.checkpointEvery > 0 && batch % options.checkpointEvery == 0
        guard !scoringOnly, signal != nil || periodic else {
            if let signal { throw TrainingInterrupted(signal: signal, epoch: epoch, batch: batch, checkpoint: nil) }
            return
        }
        var t = tally
        t.seconds += Date().timeIntervalSince(t0)
        try saveCheckpoint(Position(epoch: epoch, batch: batch, step: step, tally: t))
        if let signal { throw TrainingInterrupted(signal: signal, epoch: epoch, batch: batch, checkpoint: checkpointPath) }
    }

    /// Names the member whose loss is not finite (or the shared loss terms).
    func lossProblem(_ losses: [Float], total: Float) -> String {
        for (j, m) in members.enumerated() where !losses[j].isFinite {
            var text = "member '\(m.model.name)': loss is \(losses[j])"
            if let v = m.firstNonfiniteValue() {
                text += v.node.map { "; the first non-finite value is '\(v.value)' (output of node '\($0)')" }
                    ?? "; its input batch '\(v.value)' holds NaN or infinity"
            }
            return text
        }
        return "the loss is \(total) (the \(members.count > 1 ? "consistency or " : "")penalty term)"
    }

    /// Names the first gradient (member, parameter, layer) that holds a NaN or an infinity.
    func gradientProblem() -> String? {
        for m in members {
            for name in m.plan.grads.keys.sorted() where !allFinite(m.plan.grads[name]!) {
                let layer = m.layerOf[name].map { " (layer '\($0)')" } ?? ""
                return "member '\(m.model.name)': the gradient of parameter '\(name)'\(layer) holds NaN or infinity"
            }
        }
        return nil
    }

    /// Parameters (all float initializers, so running statistics too), optimiser state and
    /// the run's position. Refuses to write parameters that hold NaN or infinity.
    func saveCheckpoint(_ at: Position) throws {
        if let parallel, parallel.group.rank > 0 { return }
        var tensors: [String: Tensor] = [:]
        var facts: [String: String] = ["epoch": String(at.epoch), "braid_version": braidVersion]
        if at.batch > 0 {
            facts["batch"] = String(at.batch)
            facts["tally"] = String(decoding: try JSONEncoder().encode(at.tally), as: UTF8.self)
        }
        facts["step"] = String(at.step)
        for (j, m) in members.enumerated() {
            for (name, t) in m.model.graph.initializers where t.dtype.isFloat {
                guard allFinite(t) else {
                    throw TrainingError("member '\(m.model.name)': parameter '\(name)' holds NaN or infinity; \(checkpointPath) was not overwritten")
                }
                tensors["m\(j)/\(name)"] = t
            }
            for (name, t) in m.optimizer.state { tensors["m\(j)/opt/\(name)"] = t }
            facts["m\(j)/steps"] = String(m.optimizer.stepCount)
        }
        let history = try JSONEncoder().encode(self.history)
        facts["history"] = String(decoding: history, as: UTF8.self)
        // The losses so far, so that a resumed run's metrics.json lists every step as an
        // uninterrupted run's does.
        facts["step_losses"] = String(decoding: try JSONEncoder().encode(stepLosses), as: UTF8.self)
        try Checkpoint(tensors: tensors, facts: facts).save(to: checkpointPath)
    }

    /// Loads the checkpoint into the members; returns where the run stands.
    func restore() throws -> Position {
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
        if let l = ck.facts["step_losses"] {
            stepLosses = try JSONDecoder().decode([Float].self, from: Data(l.utf8))
        }
        let batch = ck.facts["batch"].flatMap(Int.init) ?? 0
        let tally = try ck.facts["tally"].map { try JSONDecoder().decode(Tally.self, from: Data($0.utf8)) } ?? Tally()
        // -1: a checkpoint from before the step was recorded (written at an epoch end).
        let step = ck.facts["step"].flatMap(Int.init) ?? -1
        return Position(epoch: epoch, batch: batch, step: step, tally: tally)
    }
}

/// A fine-tune stopped by SIGINT or SIGTERM at a batch boundary.
public struct TrainingInterrupted: Error, CustomStringConvertible, Sendable {
    public var signal: Int32
    /// Finished epochs, and batches done in the next one.
    public var epoch: Int
    public var batch: Int
    /// The checkpoint written at the stop (nil for scoring-only fine-tunes).
    public var checkpoint: String?

    public var description: String {
        let name = signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : "signal \(signal)"
        let at = batch > 0 ? "epoch \(epoch + 1), batch \(batch)" : "the end of epoch \(epoch)"
        return "stopped by \(name) at \(at)" + (checkpoint.map { "; checkpoint written to \($0)" } ?? "")
    }
}

/// True when every element of a float tensor is finite (x * 0 is NaN exactly for NaN and
/// infinities, so one sum covers every element without a branch).
func allFinite(_ t: Tensor) -> Bool {
    let p = t.floats
    var acc: Float = 0
    for i in 0..<t.count { acc += p[i] * 0 }
    return acc == 0
}
