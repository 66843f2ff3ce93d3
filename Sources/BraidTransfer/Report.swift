import BraidTraining
import Foundation

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for one value).
public func meanAndStd(_ values: [Double]) -> (mean: Double, std: Double) {
    guard !values.isEmpty else { return (.nan, .nan) }
    let mean = values.reduce(0, +) / Double(values.count)
    guard values.count > 1 else { return (mean, 0) }
    let ss = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
    return (mean, (ss / Double(values.count - 1)).squareRoot())
}

/// One table entry: a row (method, with its source for single-source methods) on a target.
public struct SummaryEntry: Sendable {
    public var row: String
    public var target: String
    /// Test accuracies of the finished seeds, in seed order.
    public var accuracies: [Double]
    public var mean: Double
    public var std: Double
    /// `done`, `not available`, `pending` or `failed` (some seeds may still be missing
    /// when `done`).
    public var status: String
}

/// The aggregated view of an experiment's outcomes that every results file is written from.
public struct ExperimentSummary {
    public let config: ExperimentConfig
    public let outcomes: [CellOutcome]
    /// Row labels in the configuration's order.
    public let rows: [String]
    public let entries: [SummaryEntry]
    /// Every multi-source row against `ensemble` and against the best single source, per
    /// target (`pairedDifferences`).
    public private(set) var paired: [PairedDifference] = []

    public init(config: ExperimentConfig, outcomes: [CellOutcome]) {
        self.config = config
        self.outcomes = outcomes
        var rows: [String] = []
        for o in outcomes where !rows.contains(o.cell.row) { rows.append(o.cell.row) }
        self.rows = rows
        var entries: [SummaryEntry] = []
        for target in config.targets {
            for row in rows {
                let cells = outcomes.filter { $0.cell.target == target && $0.cell.row == row }
                let accs = cells.compactMap { $0.status == .done ? $0.metrics?.testAccuracy : nil }
                let (m, s) = meanAndStd(accs)
                let status: String
                if !accs.isEmpty { status = "done" }
                else if cells.contains(where: { $0.status == .failed }) { status = "failed" }
                else if cells.allSatisfy({ $0.status == .notAvailable }) { status = "not available" }
                else { status = "pending" }
                entries.append(SummaryEntry(row: row, target: target, accuracies: accs, mean: m, std: s, status: status))
            }
        }
        self.entries = entries
        paired = pairedDifferences()
    }

    public func entry(row: String, target: String) -> SummaryEntry? {
        entries.first { $0.row == row && $0.target == target }
    }

    /// The row with the highest mean test accuracy on `target` (the first on ties).
    public func bestRow(target: String) -> String? {
        var best: SummaryEntry?
        for e in entries where e.target == target && !e.accuracies.isEmpty {
            if best == nil || e.mean > best!.mean { best = e }
        }
        return best?.row
    }

    /// Whether `row`'s mean on `target` equals the best one as the tables print it (ties
    /// are all marked).
    public func isBest(row: String, target: String) -> Bool {
        guard let best = bestRow(target: target), let b = entry(row: best, target: target),
              let e = entry(row: row, target: target), !e.accuracies.isEmpty else { return false }
        return Self.percent(e.mean) == Self.percent(b.mean)
    }

    /// The best row's test confusion matrices on `target`, summed over its seeds.
    public func bestConfusion(target: String) -> (row: String, classes: [String], matrix: [[Int]])? {
        guard let row = bestRow(target: target) else { return nil }
        let ms = outcomes.filter { $0.cell.target == target && $0.cell.row == row }.compactMap(\.metrics)
        guard let first = ms.first else { return nil }
        var sum = first.confusion.map { $0.map { _ in 0 } }
        for m in ms where m.confusion.count == sum.count {
            for i in sum.indices { for j in sum[i].indices { sum[i][j] += m.confusion[i][j] } }
        }
        return (row, first.classes, sum)
    }

    /// Mean validation accuracy per epoch of each row on `target`, over its finished seeds.
    public func curves(target: String) -> [(row: String, values: [Double])] {
        rows.compactMap { row in
            let hs = outcomes.filter { $0.cell.target == target && $0.cell.row == row }.compactMap { $0.metrics?.epochs }
            let length = hs.map(\.count).max() ?? 0
            guard length > 0 else { return nil }
            let values = (0..<length).map { e -> Double in
                let vals = hs.compactMap { e < $0.count ? $0[e].validationAccuracy : nil }
                return vals.reduce(0, +) / Double(vals.count)
            }
            return (row, values)
        }
    }

    /// The finished ensemble cells whose depths were searched or given (amcf,
    /// ensemble-searched, amcf-fixed): freeze depth per source.
    public var depthCells: [CellOutcome] {
        outcomes.filter { $0.cell.ensemble && $0.metrics != nil && ["amcf", "ensemble-searched", "amcf-fixed"].contains($0.cell.method) }
    }

    static func percent(_ x: Double) -> String { String(format: "%.2f", x * 100) }

    /// `mean ± std` in percent, or the status when no seed finished.
    public func cellText(_ e: SummaryEntry) -> String {
        guard !e.accuracies.isEmpty else { return e.status }
        let n = e.accuracies.count == config.seeds.count ? "" : " (\(e.accuracies.count)/\(config.seeds.count) seeds)"
        return "\(Self.percent(e.mean)) ± \(Self.percent(e.std))\(n)"
    }

    static func seconds(_ s: Double?) -> String { s.map { String(format: "%.1f", $0) } ?? "" }

    // MARK: - Files

    public func json() throws -> Data {
        func num(_ x: Double) -> Any { x.isFinite ? x : NSNull() }
        let cells: [[String: Any]] = outcomes.map { o in
            var d: [String: Any] = [
                "target": o.cell.target, "method": o.cell.method, "row": o.cell.row, "sources": o.cell.sourceNames,
                "seed": o.cell.seed, "status": o.status.rawValue, "run_dir": o.cell.relativeDir,
            ]
            if !o.note.isEmpty { d["note"] = o.note }
            if let m = o.metrics {
                d["test_accuracy"] = m.testAccuracy
                d["member_test_accuracy"] = m.memberTestAccuracy
                d["depths"] = m.depths
                d["unit_counts"] = m.unitCounts
                d["validation_accuracy"] = m.epochs.map(\.validationAccuracy)
                d["train_seconds"] = m.seconds
                d["search_seconds"] = m.searchSeconds ?? 0
                d["wall_seconds"] = m.wallSeconds ?? m.seconds
                if let c = m.cpuSeconds { d["cpu_seconds"] = c }
                if let v = m.vote { d["vote_weights"] = v.weights }
            }
            return d
        }
        let summary: [[String: Any]] = entries.map {
            ["row": $0.row, "target": $0.target, "test_accuracies": $0.accuracies, "mean": num($0.mean),
             "std": num($0.std), "seeds_done": $0.accuracies.count, "status": $0.status,
             "mean_cpu_seconds": meanCPUSeconds(row: $0.row, target: $0.target) ?? NSNull()]
        }
        let paired: [[String: Any]] = self.paired.map {
            ["row": $0.row, "baseline": $0.baseline, "target": $0.target, "seeds": $0.seeds, "images": $0.images,
             "difference": num($0.difference), "low": num($0.low), "high": num($0.high)]
        }
        var best: [String: Any] = [:]
        for t in config.targets { best[t] = bestRow(target: t) ?? NSNull() }
        let obj: [String: Any] = [
            "name": config.name, "description": config.description, "sources": config.sources,
            "targets": config.targets, "methods": config.methods, "seeds": config.seeds,
            "summary": summary, "best": best, "paired_differences": paired,
            "paired_method": "bootstrap over seeds and test images, 2000 replicates, 95% percentile interval", "cells": cells, "braid_version": braidVersion,
        ]
        return try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
    }

    public func csv() -> String {
        func field(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        var out = "target,method,sources,seed,status,test_accuracy,member_test_accuracy,depths,unit_counts,epochs,final_validation_accuracy,train_seconds,search_seconds,wall_seconds,cpu_seconds,run_dir\n"
        for o in outcomes {
            let m = o.metrics
            let cols: [String] = [
                o.cell.target, o.cell.method, o.cell.sourceNames.joined(separator: ";"), String(o.cell.seed), o.status.rawValue,
                m.map { String($0.testAccuracy) } ?? "",
                m.map { $0.memberTestAccuracy.map { String($0) }.joined(separator: ";") } ?? "",
                m.map { $0.depths.map(String.init).joined(separator: ";") } ?? "",
                m.map { $0.unitCounts.map(String.init).joined(separator: ";") } ?? "",
                m.map { String($0.epochs.count) } ?? "",
                m?.epochs.last.map { String($0.validationAccuracy) } ?? "",
                m.map { String($0.seconds) } ?? "", m.map { String($0.searchSeconds ?? 0) } ?? "",
                m.map { String($0.wallSeconds ?? $0.seconds) } ?? "", m?.cpuSeconds.map { String($0) } ?? "",
                o.cell.relativeDir,
            ]
            out += cols.map(field).joined(separator: ",") + "\n"
        }
        return out
    }

    public func markdown() -> String {
        var out = "# Experiment \(config.name)\n\n"
        if !config.description.isEmpty { out += config.description + "\n\n" }
        out += "Sources: \(config.sources.joined(separator: ", ")). Seeds: \(config.seeds.map(String.init).joined(separator: ", ")). "
        out += "\(config.training.epochs) epoch(s), batch \(config.training.batch), lr \(config.training.lr)"
        if config.trainSubset < 1 { out += String(format: ", %.0f%% of each training split", config.trainSubset * 100) }
        out += ".\n\n## Test accuracy (%), mean ± standard deviation over seeds\n\n"
        out += "| method | " + config.targets.joined(separator: " | ") + " |\n"
        out += "|---|" + config.targets.map { _ in "---:|" }.joined() + "\n"
        for row in rows {
            out += "| \(row) | " + config.targets.map { t in
                guard let e = entry(row: row, target: t) else { return "" }
                let text = cellText(e)
                return isBest(row: row, target: t) ? "**\(text)**" : text
            }.joined(separator: " | ") + " |\n"
        }
        out += "\nBold: the best mean on each target (ties all bold).\n"
        out += pairedMarkdown(paired)
        if !depthCells.isEmpty {
            out += "\n## Freeze depth per source (frozen layer units / the source's layer units)\n\n"
            out += "| target | method | seed | " + config.sources.map(ExperimentConfig.shortName).joined(separator: " | ") + " |\n"
            out += "|---|---|---:|" + config.sources.map { _ in "---:|" }.joined() + "\n"
            for o in depthCells {
                guard let m = o.metrics else { continue }
                out += "| \(o.cell.target) | \(o.cell.method) | \(o.cell.seed) | "
                out += zip(m.depths, m.unitCounts).map { "\($0) / \($1)" }.joined(separator: " | ") + " |\n"
            }
        }
        out += "\n## Cells\n\n| target | method | seed | status | test accuracy (%) | train s | search s | wall s | CPU s |\n"
        out += "|---|---|---:|---|---:|---:|---:|---:|---:|\n"
        for o in outcomes {
            let acc = o.metrics.map { Self.percent($0.testAccuracy) } ?? ""
            let status = o.status == .failed ? "failed: " + o.note.replacingOccurrences(of: "|", with: "/") : o.status.rawValue
            out += "| \(o.cell.target) | \(o.cell.row) | \(o.cell.seed) | \(status) | \(acc) | "
            out += "\(Self.seconds(o.metrics?.seconds)) | \(Self.seconds(o.metrics?.searchSeconds)) | \(Self.seconds(o.metrics?.wallSeconds)) | \(Self.seconds(o.metrics?.cpuSeconds)) |\n"
        }
        let total = outcomes.compactMap { $0.metrics?.wallSeconds }.reduce(0, +)
        out += String(format: "\nTotal wall time of the finished cells: %.1f s.\n", total)
        return out
    }
}
