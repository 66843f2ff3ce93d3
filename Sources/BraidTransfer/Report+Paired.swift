import BraidTensor
import Foundation

/// A method's test accuracy minus a baseline's on one target, paired by seed and test image.
public struct PairedDifference: Sendable {
    public var row: String
    /// The row compared with (`ensemble`, or the best single-source row).
    public var baseline: String
    public var target: String
    /// Seeds where both cells finished with per-image results on the same test split.
    public var seeds: Int
    /// Test images over those seeds.
    public var images: Int
    /// Mean over the seeds of the accuracy difference (a fraction; 0.012 is 1.2 points).
    public var difference: Double
    /// 95% interval: 2.5th and 97.5th percentiles of the bootstrap distribution.
    public var low: Double
    public var high: Double
}

/// The paired bootstrap over seeds and test images behind every interval of the reports.
///
/// `deltas[s][i]` is, for seed s and test image i, `correct(method) - correct(baseline)`
/// (-1, 0 or 1). The statistic is the mean over seeds of each seed's mean delta (the mean
/// accuracy difference). Each of `resamples` replicates draws the seeds with replacement,
/// then, within each drawn seed, its images with replacement, and recomputes the statistic;
/// the interval is the replicates' 2.5th and 97.5th percentiles. Seeded, so reports are
/// reproducible.
public func pairedBootstrap(_ deltas: [[Int8]], resamples: Int = 2000, seed: UInt64 = 0xB007)
    -> (difference: Double, low: Double, high: Double) {
    let used = deltas.filter { !$0.isEmpty }
    guard !used.isEmpty else { return (.nan, .nan, .nan) }
    func mean(_ d: [Int8]) -> Double { Double(d.reduce(0) { $0 + Int($1) }) / Double(d.count) }
    let observed = used.map(mean).reduce(0, +) / Double(used.count)
    var rng = SplitMix64(seed: seed)
    var stats = [Double](repeating: 0, count: resamples)
    for r in 0..<resamples {
        var total = 0.0
        for _ in used.indices {
            let d = used[Int.random(in: 0..<used.count, using: &rng)]
            var sum = 0
            d.withUnsafeBufferPointer { p in
                for _ in 0..<p.count { sum += Int(p[Int.random(in: 0..<p.count, using: &rng)]) }
            }
            total += Double(sum) / Double(d.count)
        }
        stats[r] = total / Double(used.count)
    }
    stats.sort()
    func quantile(_ q: Double) -> Double {
        let pos = q * Double(resamples - 1)
        let i = Int(pos.rounded(.down)), f = pos - Double(i)
        return i + 1 < resamples ? stats[i] * (1 - f) + stats[i + 1] * f : stats[i]
    }
    return (observed, quantile(0.025), quantile(0.975))
}

extension ExperimentSummary {
    /// Single-source rows (one source per cell).
    public var singleSourceRows: [String] {
        rows.filter { row in outcomes.contains { $0.cell.row == row && !$0.cell.ensemble } }
    }

    /// The single-source row with the highest mean test accuracy on `target` (chosen on the
    /// test results, which favours the baseline).
    public func bestSingleSource(target: String) -> String? {
        var best: SummaryEntry?
        for row in singleSourceRows {
            guard let e = entry(row: row, target: target), !e.accuracies.isEmpty else { continue }
            if best == nil || e.mean > best!.mean { best = e }
        }
        return best?.row
    }

    /// `row` against `baseline` on `target`, over the seeds where both finished with
    /// per-image test results of equal length; nil when there are none.
    public func pairedDifference(row: String, baseline: String, target: String, resamples: Int = 2000) -> PairedDifference? {
        func bySeed(_ r: String) -> [UInt64: String] {
            var out: [UInt64: String] = [:]
            for o in outcomes where o.cell.row == r && o.cell.target == target && o.status == .done {
                if let c = o.metrics?.testCorrect { out[o.cell.seed] = c }
            }
            return out
        }
        let a = bySeed(row), b = bySeed(baseline)
        var deltas: [[Int8]] = []
        for s in config.seeds {
            guard let x = a[s], let y = b[s], x.utf8.count == y.utf8.count, !x.isEmpty else { continue }
            deltas.append(zip(x.utf8, y.utf8).map { Int8($0 == UInt8(ascii: "1") ? 1 : 0) - Int8($1 == UInt8(ascii: "1") ? 1 : 0) })
        }
        guard !deltas.isEmpty else { return nil }
        let (d, lo, hi) = pairedBootstrap(deltas, resamples: resamples)
        return PairedDifference(row: row, baseline: baseline, target: target, seeds: deltas.count,
                                images: deltas.map(\.count).reduce(0, +), difference: d, low: lo, high: hi)
    }

    /// Every multi-source row other than `ensemble` against `ensemble`, and every
    /// multi-source row against the best single source, per target.
    public func pairedDifferences(resamples: Int = 2000) -> [PairedDifference] {
        let multi = rows.filter { !singleSourceRows.contains($0) }
        var out: [PairedDifference] = []
        for t in config.targets {
            for row in multi {
                if row != "ensemble", multi.contains("ensemble"),
                   let d = pairedDifference(row: row, baseline: "ensemble", target: t, resamples: resamples) {
                    out.append(d)
                }
                if let best = bestSingleSource(target: t),
                   let d = pairedDifference(row: row, baseline: best, target: t, resamples: resamples) {
                    out.append(d)
                }
            }
        }
        return out
    }

    /// Mean CPU seconds per cell of `row` on `target` (search included), over the cells that
    /// recorded them; nil when none did.
    public func meanCPUSeconds(row: String, target: String) -> Double? {
        let s = outcomes.filter { $0.cell.row == row && $0.cell.target == target }.compactMap { $0.metrics?.cpuSeconds }
        return s.isEmpty ? nil : s.reduce(0, +) / Double(s.count)
    }

    /// `+1.20 [-0.35, +2.70]` in percentage points.
    static func pointsText(_ d: PairedDifference) -> String {
        String(format: "%+.2f [%+.2f, %+.2f]", d.difference * 100, d.low * 100, d.high * 100)
    }

    /// How the intervals were computed, for the reports.
    static let pairedNote = "Paired differences in percentage points (method minus baseline), with 95% intervals from a paired bootstrap over seeds and test images: 2,000 replicates, each drawing the seeds with replacement and then, within each drawn seed, its test images with replacement (every method of a seed is tested on the same split). The best single source is the single-source row with the highest mean test accuracy on the target, picked on the test results (which favours it)."

    /// The markdown sections: paired differences and CPU seconds.
    func pairedMarkdown(_ diffs: [PairedDifference]) -> String {
        var out = ""
        if !diffs.isEmpty {
            out += "\n## Paired differences, percentage points [95% interval]\n\n\(Self.pairedNote)\n\n"
            out += "| method | against | " + config.targets.joined(separator: " | ") + " |\n"
            out += "|---|---|" + config.targets.map { _ in "---:|" }.joined() + "\n"
            var pairs: [(String, String)] = []
            for d in diffs {
                let key = (d.row, d.baseline == "ensemble" ? "ensemble" : "best single source")
                if !pairs.contains(where: { $0 == key }) { pairs.append(key) }
            }
            for (row, against) in pairs {
                out += "| \(row) | \(against) | " + config.targets.map { t in
                    guard let d = diffs.first(where: { $0.row == row && $0.target == t
                        && ($0.baseline == "ensemble") == (against == "ensemble") }) else { return "" }
                    let n = d.seeds == config.seeds.count ? "" : " (\(d.seeds)/\(config.seeds.count) seeds)"
                    let who = against == "ensemble" ? "" : " vs \(d.baseline)"
                    return Self.pointsText(d) + n + who
                }.joined(separator: " | ") + " |\n"
            }
        }
        let cpu = rows.map { r in config.targets.map { meanCPUSeconds(row: r, target: $0) } }
        if cpu.contains(where: { $0.contains { $0 != nil } }) {
            out += "\n## CPU seconds per cell, mean over seeds (search included)\n\n"
            out += "| method | " + config.targets.joined(separator: " | ") + " |\n"
            out += "|---|" + config.targets.map { _ in "---:|" }.joined() + "\n"
            for (r, values) in zip(rows, cpu) {
                out += "| \(r) | " + values.map { $0.map { String(format: "%.1f", $0) } ?? "" }.joined(separator: " | ") + " |\n"
            }
        }
        return out
    }
}
