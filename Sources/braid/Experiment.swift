import ArgumentParser
import BraidTransfer
import Foundation

struct Experiment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run methods x sources x targets x seeds from a configuration and write a report.",
        discussion: """
        Every cell runs in DIR/cells/<target>/<method>[-<source>]/seed<k>; finished cells
        (metrics.json present) are skipped, so the same command resumes an interrupted
        experiment. DIR receives results.md, results.csv, results.json and report.html.

        Examples:
          braid experiment --config Models/experiments/ci-small.json --out runs/ci-small
          braid experiment --config Models/experiments/default.json --out runs/default --only amcf
          braid experiment --config Models/experiments/default.json --out runs/default --report-only
        """)

    @Option(name: .long, help: "Experiment configuration (JSON).") var config: String
    @Option(name: .long, help: "Experiment directory (default: runs/experiment-<name>).") var out: String?
    @Option(name: .long, help: "Run only the cells of this method.") var only: String?
    @Option(name: .long, help: "Models/manifest to read input sizes and normalisation from.") var manifest: String?
    @Flag(name: .long, help: "Run no cell; rewrite the results from the finished ones.") var reportOnly = false
    @Flag(name: .long, help: "No per-epoch progress.") var quiet = false

    func run() {
        reportingErrors {
            let cfg = try ExperimentConfig.load(path: config)
            if let only, !cfg.methods.contains(only) {
                throw ValidationError("--only \(only): \(config) has no such method (\(cfg.methods.joined(separator: ", ")))")
            }
            let dir = try Cluster.runDirectories(out: out ?? "runs/experiment-\(cfg.name)", resume: nil).out!
            let base = ((config as NSString).deletingLastPathComponent as String)
            let runner = try ExperimentRunner(config: cfg, outDir: dir, manifest: try loadManifest(path: manifest),
                                              baseDir: base.isEmpty ? "." : base)
            runner.only = only
            runner.events = ProgressPrinter(quiet: quiet).handle
            runner.group = Cluster.group
            runner.runNothing = reportOnly
            runner.onCellStart = { cell, i, n in
                print("[\(i + 1)/\(n)] \(cell.target) \(cell.row) seed \(cell.seed)")
            }
            let t0 = Date()
            let outcomes = try runner.run()
            let done = outcomes.filter { $0.status == .done }
            let skipped = done.filter(\.skipped).count
            let failed = outcomes.filter { $0.status == .failed }
            let unavailable = outcomes.filter { $0.status == .notAvailable }.count
            print(String(format: "%d cells: %d done (%d finished earlier), %d not available, %d failed, %d pending; %.1fs",
                         outcomes.count, done.count, skipped, unavailable, failed.count,
                         outcomes.count - done.count - unavailable - failed.count, Date().timeIntervalSince(t0)))
            for f in failed { print("  failed \(f.cell.relativeDir): \(f.note)") }
            print("results: \(dir)/results.md, \(dir)/report.html")
            if !failed.isEmpty { throw ValidationError("\(failed.count) cell(s) failed") }
        }
    }
}
