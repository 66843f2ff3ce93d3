import Foundation
import Synchronization

/// What a fine-tune, a search or an experiment reports as it runs. The library never
/// prints: a front end receives these through an `events` callback and shows them as it likes.
public enum TrainingEvent: Sendable {
    /// Batches done of one phase (an epoch, the learning-rate range test); `final` once the
    /// phase is over.
    case progress(TrainingProgress)
    /// One line of information for the log (the validation accuracy after an epoch, a
    /// fitness evaluation of a search).
    case note(String)
    /// Something went wrong without stopping the run (a batch update skipped).
    case warning(String)
    /// A line describing the run's setup or outcome (the members and their freeze depths,
    /// the data's split sizes, a search's choice, the learning rate picked).
    case summary(String)
}

/// How far one phase of training is.
public struct TrainingProgress: Sendable, Equatable {
    /// What runs: `epoch 2/10`, `lr range test`.
    public var phase: String
    public var done: Int
    public var total: Int
    /// Images seen so far in the phase.
    public var images: Int
    /// Mean training loss and accuracy so far in the phase.
    public var loss: Double
    public var accuracy: Double
    /// Seconds since the phase started.
    public var seconds: Double
    public var final: Bool

    public init(phase: String, done: Int, total: Int, images: Int, loss: Double, accuracy: Double, seconds: Double,
                final: Bool) {
        self.phase = phase; self.done = done; self.total = total; self.images = images
        self.loss = loss; self.accuracy = accuracy; self.seconds = seconds; self.final = final
    }
}

/// Receives `TrainingEvent`s; nil: nobody listens.
public typealias TrainingEvents = (TrainingEvent) -> Void

private let stopSignal = Atomic<Int32>(0)

/// A request, raised by SIGINT or SIGTERM, that running fine-tunes stop at their next batch
/// boundary after writing a checkpoint.
public enum StopRequest {
    /// Routes SIGINT and SIGTERM to the request. A second signal while the first is pending
    /// exits at once with status 128 + signal (checkpoints are written atomically, so the
    /// last one stays valid).
    public static func install() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { received in
                if stopSignal.exchange(received, ordering: .relaxed) != 0 { _exit(128 + received) }
            }
        }
    }

    /// The signal that asked for a stop, if any.
    public static var pendingSignal: Int32? {
        let s = stopSignal.load(ordering: .relaxed)
        return s == 0 ? nil : s
    }
}
