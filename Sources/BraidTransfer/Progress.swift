import Foundation
import Synchronization

/// A one-line progress bar on standard error: epoch, batches, loss, accuracy, images/s, ETA.
///
/// On a terminal the line redraws in place; otherwise only each epoch's final line prints,
/// so logs stay readable.
public struct ProgressBar {
    let label: String
    let total: Int
    let start = Date()
    var lastDraw = Date.distantPast
    let isTTY = isatty(2) != 0
    public var quiet = false

    public init(label: String, total: Int) {
        self.label = label; self.total = max(total, 1)
    }

    public mutating func update(done: Int, images: Int, loss: Double, accuracy: Double, final: Bool = false) {
        if quiet { return }
        let now = Date()
        guard final || (isTTY && now.timeIntervalSince(lastDraw) > 0.2) else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(images) / elapsed : 0
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let width = 24
        let filled = min(width, width * done / total)
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "")
            + String(repeating: " ", count: max(0, width - filled - 1))
        let text = String(format: "%@ [%@] %d/%d loss %.4f acc %.1f%% %.0f img/s %@ %@",
                          label as NSString, bar as NSString, done, total, loss, accuracy * 100, rate,
                          (final ? "took" : "ETA") as NSString, Self.clock(final ? elapsed : eta) as NSString)
        let line = isTTY ? "\r" + text + (final ? "\n" : "") : text + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}

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
