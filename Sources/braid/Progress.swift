import BraidTransfer
import Foundation

/// Shows the library's training events: summary lines on standard output; progress bars,
/// notes and warnings on standard error. `quiet` hides bars and notes, never warnings.
final class ProgressPrinter: @unchecked Sendable {
    let quiet: Bool
    let isTTY = isatty(2) != 0
    var lastDraw = Date.distantPast

    init(quiet: Bool) { self.quiet = quiet }

    func handle(_ event: TrainingEvent) {
        switch event {
        case .summary(let line): print(line)
        case .warning(let line): standardError("braid: warning: \(line)\n")
        case .note(let line): if !quiet { standardError(line + "\n") }
        case .progress(let p): if !quiet { draw(p) }
        }
    }

    /// One line: phase, bar, batches, loss, accuracy, images/s, ETA. On a terminal the line
    /// redraws in place; otherwise only each phase's final line prints, so logs stay readable.
    func draw(_ p: TrainingProgress) {
        let now = Date()
        guard p.final || (isTTY && now.timeIntervalSince(lastDraw) > 0.2) else { return }
        lastDraw = now
        let total = max(p.total, 1)
        let rate = p.seconds > 0 ? Double(p.images) / p.seconds : 0
        let eta = p.done > 0 ? p.seconds / Double(p.done) * Double(total - p.done) : 0
        let width = 24
        let filled = min(width, width * p.done / total)
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "")
            + String(repeating: " ", count: max(0, width - filled - 1))
        let text = String(format: "%@ [%@] %d/%d loss %.4f acc %.1f%% %.0f img/s %@ %@",
                          p.phase as NSString, bar as NSString, p.done, total, p.loss, p.accuracy * 100, rate,
                          (p.final ? "took" : "ETA") as NSString, clock(p.final ? p.seconds : eta) as NSString)
        standardError(isTTY ? "\r" + text + (p.final ? "\n" : "") : text + "\n")
    }

    func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }

    func standardError(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}
