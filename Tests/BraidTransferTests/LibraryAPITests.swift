import BraidRuntime
import Foundation
import XCTest
@testable import BraidTransfer

/// The library products' public surface: `Model` and `ModelFile` (BraidRuntime), and
/// `TrainOptions`, `FinetuneRun` and `TrainingEvent` (BraidTransfer).
final class LibraryAPITests: XCTestCase {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "braid-lib-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Largest |a - b| over the scale of `b`; NaN when any value is NaN, so `!(err <= tol)`
    /// fails on it.
    func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        let x = a.floatArray, y = b.floatArray
        guard x.count == y.count else { return .nan }
        var scale: Float = 1e-6, worst: Float = 0
        for v in y { scale = max(scale, abs(v)) }
        for (u, v) in zip(x, y) {
            let d = abs(u - v)
            if d.isNaN { return .nan }
            worst = max(worst, d)
        }
        return worst / scale
    }

    /// `Model.run` (optimised and fused graph) gives what the executor gives on the graph as
    /// imported; a file saved by `Model.save` and loaded again gives the same outputs; a graph
    /// traced at batch 1 runs at batch 5.
    func testModelRunsSavesAndReloads() throws {
        let dir = try tempDir()
        try writeTinyClassifier(to: dir + "/m.onnx", input: [.fixed(1), .fixed(3), .fixed(8), .fixed(8)], bakedBatch: true)
        let model = try Model(contentsOf: dir + "/m.onnx")
        XCTAssertEqual(model.inputs.map(\.name), ["input"])
        XCTAssertEqual(model.outputs.map(\.name), ["y"])
        let x = Tensor(shape: [5, 3, 8, 8], floats: (0..<(5 * 192)).map { Float(($0 * 29) % 97) / 48 - 1 })
        let y = try model.run(x)
        XCTAssertEqual(y.shape, [5, 3])
        // The reference: each sample alone through the unoptimised graph at its traced batch 1.
        let plain = Executor(graph: try ModelFile.load(path: dir + "/m.onnx"))
        for i in 0..<5 {
            let xi = Tensor(shape: [1, 3, 8, 8], floats: Array(x.floatArray[(i * 192)..<((i + 1) * 192)]))
            let yi = try XCTUnwrap(try plain.run(["input": xi])["y"])
            let got = Tensor(shape: [1, 3], floats: Array(y.floatArray[(i * 3)..<((i + 1) * 3)]))
            let err = relativeError(got, yi)
            XCTAssertTrue(err <= 1e-5, "sample \(i): relative error \(err)")
        }
        try model.save(to: dir + "/again.onnx")
        let again = try Model(contentsOf: dir + "/again.onnx").run(x)
        let err = relativeError(again, y)
        XCTAssertTrue(err <= 1e-5, "reloaded: relative error \(err)")
    }

    func testModelFileErrorsNameTheFile() throws {
        let dir = try tempDir()
        XCTAssertThrowsError(try Model(contentsOf: dir + "/none.onnx")) { e in
            XCTAssertTrue(e is ModelLoadError && "\(e)".contains("none.onnx: no such file"), "\(e)")
        }
        FileManager.default.createFile(atPath: dir + "/m.pt", contents: Data([1, 2, 3]))
        XCTAssertThrowsError(try ModelFile.load(path: dir + "/m.pt")) { e in
            XCTAssertTrue("\(e)".contains("m.pt: unknown model format"), "\(e)")
        }
    }

    /// An experiment's `training` object decodes into `TrainOptions` by snake_case keys, with
    /// enums by their names; missing keys keep the defaults; unknown keys, wrong types and
    /// values out of range are errors naming the key.
    func testTrainOptionsDecodeFromConfigs() throws {
        func decode(_ json: String) throws -> TrainOptions {
            try TrainOptions.decode(json: Data(json.utf8), place: "training", extraKeys: ["train_subset"])
        }
        let o = try decode(#"{"epochs": 3, "weight_decay": 0.001, "optimizer": "adamw", "schedule": "cosine", "consistency": "kl", "vote": "softmax", "on_nonfinite": "skip", "child_mode": "f", "cache_mb": 64, "train_subset": 0.5}"#)
        XCTAssertEqual(o.epochs, 3)
        XCTAssertEqual(o.weightDecay, 0.001)
        XCTAssertEqual(o.optimizer, .adamw)
        XCTAssertEqual(o.schedule, .cosine)
        XCTAssertEqual(o.consistency, .kl)
        XCTAssertEqual(o.vote, .softmax)
        XCTAssertEqual(o.onNonfinite, .skip)
        XCTAssertEqual(o.childMode, .f)
        XCTAssertEqual(o.cacheMB, 64)
        XCTAssertEqual(o.batch, TrainOptions.defaults.batch)
        func fails(_ json: String, _ words: [String]) {
            XCTAssertThrowsError(try decode(json), json) { e in
                for w in words { XCTAssertTrue("\(e)".contains(w), "'\(w)' not in: \(e)") }
                XCTAssertFalse("\(e)".contains("--"), "\(e)")
            }
        }
        fails(#"{"epoch": 3}"#, ["epoch", "unknown key"])
        fails(#"{"optimizer": "rmsprop"}"#, ["training.optimizer"])
        fails(#"{"epochs": 1.5}"#, ["training.epochs"])
        fails(#"{"lr": "fast"}"#, ["training.lr", "number"])
        fails(#"{"lr": -1}"#, ["training.lr", "positive"])
        fails(#"{"val_fraction": 0.5, "test_fraction": 0.6}"#, ["training.test_fraction"])
        fails(#"{"method": "amcf"}"#, ["unknown key", "method"])
    }

    /// run.json round trip: enums as their names; a record from before a setting existed
    /// decodes with that setting's default.
    func testTrainOptionsRunRecordRoundTrip() throws {
        var o = TrainOptions()
        o.method = .childTuning; o.childMode = .f; o.optimizer = .adam; o.maxMemory = 1 << 30; o.freeze = [2, 3]
        let data = try JSONEncoder().encode(o)
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.contains(#""method":"child-tuning""#) && text.contains(#""childMode":"f""#), text)
        XCTAssertEqual(try JSONDecoder().decode(TrainOptions.self, from: data), o)
        let old = try JSONDecoder().decode(TrainOptions.self, from: Data(#"{"method": "amcf-fixed", "freeze": [1, 2], "lr": 0.05}"#.utf8))
        XCTAssertEqual(old.method, .amcfFixed)
        XCTAssertEqual(old.lr, 0.05)
        XCTAssertEqual(old.consistency, .l2)
        XCTAssertNil(old.maxMemory)
        XCTAssertEqual(TrainOptions.keys.count, Set(TrainOptions.keys).count)
    }

    /// Methods resolve into freeze depths per member; a depth beyond a model's units and a
    /// method that needs depths without them are errors naming the `freeze` setting.
    func testFreezeDepthsFromMethods() throws {
        let dir = try tempDir()
        try writeTinyClassifier(to: dir + "/a.onnx", input: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)])
        let m = try SourceModel.load(path: dir + "/a.onnx", classes: 2, seed: 0, manifest: [])
        let units = m.units.count
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .standard, freeze: [], models: [m, m]), [0, 0])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .linearProbe, freeze: [], models: [m]), [units])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .amcf, freeze: [], models: [m, m]), [-1, -1])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .amcf, freeze: [], models: [m, m], chosen: [1, 0]), [1, 0])
        XCTAssertEqual(try FinetuneRun.freezeDepths(method: .amcfFixed, freeze: [1], models: [m, m]), [1, 1])
        for (method, freeze) in [(TrainOptions.Method.freeze, [Int]()), (.amcfFixed, [units + 1])] {
            XCTAssertThrowsError(try FinetuneRun.freezeDepths(method: method, freeze: freeze, models: [m])) { e in
                XCTAssertEqual((e as? TrainingError)?.setting, "freeze", "\(e)")
            }
        }
        XCTAssertThrowsError(try FinetuneRun.freezeDepths(method: .als, freeze: [], models: [m, m]))
    }

    /// A whole run through the library on the digits: events arrive (a final progress event
    /// per epoch, the summary lines), metrics.json is written, and the run exports and
    /// evaluates from its directory.
    func testFinetuneRunReportsEventsAndWritesItsDirectory() throws {
        let cache = ProcessInfo.processInfo.environment["BRAID_CACHE"] ?? ""
        guard FileManager.default.fileExists(atPath: DataCatalog.defaultDataFolder() + "/digits.csv.gz") else {
            throw XCTSkip("no digits in \(cache) (tools/fetch-data)")
        }
        let dir = try tempDir()
        try writeTinyClassifier(to: dir + "/a.onnx", input: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)])
        var setup = FinetuneSetup(sources: [dir + "/a.onnx"], data: "digits")
        setup.options.epochs = 2
        setup.options.batch = 32
        setup.options.lr = 0.05
        let run = try FinetuneRun(setup, runDir: dir + "/run", manifest: [])
        var finals: [String] = [], summaries: [String] = []
        run.events = { e in
            switch e {
            case .progress(let p) where p.final: finals.append(p.phase)
            case .summary(let line): summaries.append(line)
            default: break
            }
        }
        let result = try run.run()
        XCTAssertEqual(finals, ["epoch 1/2", "epoch 2/2"])
        XCTAssertTrue(summaries.contains { $0.hasPrefix("a: ") && $0.contains("layer units, freezing 0") }, "\(summaries)")
        XCTAssertTrue(summaries.contains { $0.hasPrefix("data digits: ") }, "\(summaries)")
        XCTAssertEqual(result.history.count, 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/metrics.json"))
        let trained = try TrainedRun.load(runDir: dir + "/run", manifest: [])
        let test = try trained.evaluate(on: try trained.images(of: try DataCatalog.open("digits"), split: .test))
        XCTAssertEqual(test.correct, result.test.correct)
        let graph = try trained.export(to: dir + "/digits.onnx")
        XCTAssertEqual(graph.outputs.first?.name, EnsembleNames.logits)
        XCTAssertEqual(try EnsembleClassifier(path: dir + "/digits.onnx").info.classes, result.classes)
    }
}
