import BraidONNX
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// `braid finetune` under the accidents of a long run: SIGKILL at random moments, Ctrl-C,
/// NaN in the data or an exploding learning rate, a read-only or full output directory, and
/// a memory cap. Runs the built binary on a tiny MLP and scikit-learn's digits.
final class RobustnessTests: XCTestCase {
    struct Outcome { var status: Int32; var out: String; var err: String }

    var exe: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("braid").path
    }

    func finish(_ p: Process, _ out: Pipe, _ err: Pipe) -> Outcome {
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Outcome(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
    }

    func braid(_ args: [String]) throws -> Outcome {
        let (p, o, e) = try launch(exe, args)
        return finish(p, o, e)
    }

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "braid-robust-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// x [N, 1, 8, 8] -> flatten -> dense 64x24 -> relu -> dense 24x10 -> softmax: one layer
    /// unit that trains and a classifier that fine-tuning replaces.
    func writeTinyMLP(to path: String, sqrt: Bool = false) throws {
        var state: UInt64 = 7
        func uniform(_ n: Int, _ scale: Float) -> [Float] {
            (0..<n).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
        }
        func tensor(_ name: String, _ shape: [Int], _ scale: Float) -> ONNXTensorProto {
            ONNXTensorProto(Tensor(shape: shape, floats: uniform(shape.reduce(1, *), scale)), name: name)
        }
        var (m, axis, transB) = tinyModelSkeleton(name: "tiny", input: "x", output: "y")
        m.graph.initializers = [tensor("w1", [24, 64], 0.2), tensor("b1", [24], 0.1), tensor("w2", [10, 24], 0.2), tensor("b2", [10], 0.1)]
        m.graph.nodes = [
            ONNXNodeProto(name: "flat", opType: "Flatten", domain: "", inputs: ["x"], outputs: ["f"], attributes: [axis]),
            ONNXNodeProto(name: "fc1", opType: "Gemm", domain: "", inputs: ["f", "w1", "b1"], outputs: ["h"], attributes: [transB]),
            ONNXNodeProto(name: "relu", opType: "Relu", domain: "", inputs: ["h"], outputs: [sqrt ? "r0" : "r"], attributes: []),
            ONNXNodeProto(name: "fc2", opType: "Gemm", domain: "", inputs: ["r", "w2", "b2"], outputs: ["z"], attributes: [transB]),
            ONNXNodeProto(name: "sm", opType: "Softmax", domain: "", inputs: ["z"], outputs: ["y"], attributes: [axis]),
        ]
        if sqrt {
            // sqrt'(0) is infinite: the loss stays finite while fc1's gradient does not.
            m.graph.nodes.insert(ONNXNodeProto(name: "sqrt", opType: "Sqrt", domain: "", inputs: ["r0"], outputs: ["r"], attributes: []), at: 3)
        }
        try Data(m.serialized()).write(to: URL(fileURLWithPath: path))
    }

    /// An opset-17 model with one float input `[N, 1, 8, 8]` and one float output, and the
    /// `axis = 1` and `transB = 1` attributes its Flatten, Gemm and Softmax nodes take.
    func tinyModelSkeleton(name: String, input: String, output: String)
        -> (ONNXModelProto, axis: ONNXAttributeProto, transB: ONNXAttributeProto) {
        var m = ONNXModelProto()
        m.irVersion = 8
        m.opsetImport = [("", 17)]
        m.graph.name = name
        m.graph.inputs = [ONNXValueInfoProto(name: input, type: .tensor(elemType: ONNXDataType.float.rawValue,
                                                                        shape: [.param("N"), .value(1), .value(8), .value(8)]))]
        m.graph.outputs = [ONNXValueInfoProto(name: output, type: .tensor(elemType: ONNXDataType.float.rawValue, shape: nil))]
        var axis = ONNXAttributeProto(name: "axis", type: .int)
        axis.i = 1
        var transB = ONNXAttributeProto(name: "transB", type: .int)
        transB.i = 1
        return (m, axis, transB)
    }

    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    /// The digits file the fine-tunes read (`TestCache.require`: skipped when absent locally).
    var digits: String { get throws { try TestCache.require("data/digits.csv.gz", madeBy: "tools/fetch-data") } }

    /// A fine-tune of the tiny MLP on digits with mid-epoch checkpoints: 4 epochs of 78 batches.
    func finetuneArgs(model: String, out: String) throws -> [String] {
        let data = try digits
        return ["finetune", "--source", model, "--data", data, "--out", out, "--epochs", "4",
         "--batch", "16", "--lr", "0.05", "--seed", "3", "--checkpoint-every", "7", "--quiet"]
    }

    /// What must not change between an uninterrupted run and a resumed one: the test
    /// figures and every epoch's training loss and accuracies (timings excluded).
    func fingerprint(_ runDir: String) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: runDir + "/metrics.json"))
        var obj = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        obj["seconds"] = nil
        obj["epochs"] = (obj["epochs"] as? [[String: Any]])?.map { e in
            e.filter { !["seconds", "imagesPerSecond"].contains($0.key) }
        }
        return String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self)
    }

    /// The exported ONNX of a run's final weights.
    func exported(_ runDir: String) throws -> Data {
        let r = try braid(["export", runDir, "--format", "onnx", "--out", runDir + "/final.onnx"])
        XCTAssertEqual(r.status, 0, r.err)
        return try Data(contentsOf: URL(fileURLWithPath: runDir + "/final.onnx"))
    }

    /// Starts a fine-tune, waits until it has written run.json (it is training or about
    /// to), then `delay` seconds more, and sends `signal`.
    func startAndSignal(_ args: [String], runDir: String, delay: Double, signal: Int32) throws -> Outcome {
        let (p, o, e) = try launch(exe, args)
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: runDir + "/run.json") && p.isRunning && Date() < deadline {
            usleep(2000)
        }
        usleep(UInt32(delay * 1e6))
        if p.isRunning { kill(p.processIdentifier, signal) }
        return finish(p, o, e)
    }

    func testRandomKillsResumeToTheSameResult() throws {
        let dir = try tempDir()
        let model = dir + "/tiny.onnx"
        try writeTinyMLP(to: model)
        // The window kills aim at: from run.json's appearance to the end of the run.
        let (p, o, e) = try launch(exe, finetuneArgs(model: model, out: dir + "/straight"))
        while !FileManager.default.fileExists(atPath: dir + "/straight/run.json") && p.isRunning { usleep(2000) }
        let t0 = Date()
        let straight = finish(p, o, e)
        let runSeconds = Date().timeIntervalSince(t0)
        XCTAssertEqual(straight.status, 0, straight.err)
        let expected = try fingerprint(dir + "/straight")
        let expectedWeights = try exported(dir + "/straight")

        var state: UInt64 = 20_261_129
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        let trials = 20
        var kills = 0, resumes = 0, withCheckpoint = 0, finishedBeforeKill = 0
        for trial in 0..<trials {
            let run = dir + "/kill\(trial)"
            // Kill points spread over the run; every third trial also kills the first resume.
            var r = try startAndSignal(finetuneArgs(model: model, out: run), runDir: run,
                                       delay: uniform() * runSeconds * 0.9, signal: SIGKILL)
            var pending = r.status != 0
            if pending {
                XCTAssertEqual(r.status, SIGKILL, "trial \(trial): \(r.err)")
                kills += 1
                if FileManager.default.fileExists(atPath: run + "/checkpoint.bin") { withCheckpoint += 1 }
            } else {
                finishedBeforeKill += 1
            }
            if pending && trial % 3 == 2 {
                r = try startAndSignal(["finetune", "--resume", run, "--quiet"], runDir: run,
                                       delay: uniform() * runSeconds * 0.5, signal: SIGKILL)
                resumes += 1
                if r.status != 0 {
                    XCTAssertEqual(r.status, SIGKILL, "trial \(trial): \(r.err)")
                    kills += 1
                } else {
                    pending = false
                }
            }
            if pending {
                r = try braid(["finetune", "--resume", run, "--quiet"])
                resumes += 1
                XCTAssertEqual(r.status, 0, "trial \(trial): resume failed: \(r.err)")
            }
            XCTAssertEqual(try fingerprint(run), expected, "trial \(trial): the resumed run's figures differ")
            XCTAssertEqual(try exported(run), expectedWeights, "trial \(trial): the resumed run's final weights differ")
            try? FileManager.default.removeItem(atPath: run)
        }
        print("kill test: \(trials) trials, \(kills) SIGKILLs landed (\(withCheckpoint) first kills after a checkpoint existed), \(finishedBeforeKill) runs finished before their kill, \(resumes) resumes; the kill window (run.json to exit) is \(String(format: "%.2f", runSeconds)) s")
        XCTAssertGreaterThanOrEqual(kills, trials / 2, "most kills should land while the run is going")
    }

    func testSigintStopsWithCheckpointAndResumeCommand() throws {
        let dir = try tempDir()
        let model = dir + "/tiny.onnx"
        try writeTinyMLP(to: model)
        let straight = try braid(finetuneArgs(model: model, out: dir + "/straight"))
        XCTAssertEqual(straight.status, 0, straight.err)
        for (signal, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            let run = dir + "/" + name
            let r = try startAndSignal(finetuneArgs(model: model, out: run), runDir: run, delay: 0.05, signal: signal)
            XCTAssertEqual(r.status, 130, r.err)
            XCTAssertTrue(r.err.contains("stopped by \(name)"), r.err)
            XCTAssertTrue(r.err.contains("resume with: braid finetune --resume \(run)\n"), r.err)
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/checkpoint.bin"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/metrics.json"), "stopped before the end")
            let resumed = try braid(["finetune", "--resume", run, "--quiet"])
            XCTAssertEqual(resumed.status, 0, resumed.err)
            XCTAssertEqual(try fingerprint(run), try fingerprint(dir + "/straight"))
        }
    }

    func testNonFiniteValuesAreNamedAndStopOrSkip() throws {
        let dir = try tempDir()
        let model = dir + "/tiny.onnx", rooted = dir + "/sqrt.onnx"
        try writeTinyMLP(to: model)
        try writeTinyMLP(to: rooted, sqrt: true)
        let data = try digits
        // A finite loss with an infinite gradient: the member, parameter and layer are named.
        var r = try braid(["finetune", "--source", rooted, "--data", data, "--out", dir + "/g", "--epochs", "1", "--quiet"])
        XCTAssertEqual(r.status, 1, r.err)
        for part in ["member 'sqrt'", "gradient of parameter", "(layer 'fc1')", "epoch 1, batch 1", "g/checkpoint.bin"] {
            XCTAssertTrue(r.err.contains(part), "'\(r.err)' does not mention \(part)")
        }
        // An exploding learning rate: the loss goes non-finite within a few batches.
        r = try braid(["finetune", "--source", model, "--data", data, "--out", dir + "/lr", "--epochs", "1", "--lr", "1e12", "--quiet"])
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertTrue(r.err.contains("member 'tiny': loss is"), r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/lr/checkpoint.bin"), "the last good state is kept")

        // NaN pixels in five rows: with skip, their batches' updates are dropped and counted.
        let unzip = Process()
        unzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        unzip.arguments = ["gzip", "-dc", data]
        let pipe = Pipe()
        unzip.standardOutput = pipe
        try unzip.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        unzip.waitUntilExit()
        var rows = text.split(separator: "\n").map(String.init)
        for i in stride(from: 0, to: 500, by: 100) { rows[i] = "nan" + rows[i].drop(while: { $0 != "," }) }
        try FileManager.default.createDirectory(atPath: dir + "/nan", withIntermediateDirectories: true)
        try Data((rows.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/nan/digits.csv"))
        let nanArgs = ["finetune", "--source", model, "--data", dir + "/nan/digits.csv", "--epochs", "2", "--batch", "16", "--quiet"]
        r = try braid(nanArgs + ["--out", dir + "/stop"])
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertTrue(r.err.contains("member 'tiny': loss is nan"), r.err)
        XCTAssertTrue(r.err.contains("holds NaN or infinity"), r.err)
        r = try braid(nanArgs + ["--out", dir + "/skip", "--on-nonfinite", "skip"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("braid: warning: skipped the update of epoch 1, batch"), r.err)
        let metrics = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/skip/metrics.json"))) as? [String: Any])
        let skipped = (metrics["epochs"] as? [[String: Any]])?.compactMap { $0["skippedBatches"] as? Int } ?? []
        XCTAssertEqual(skipped.count, 2)
        XCTAssertGreaterThan(skipped.reduce(0, +), 0)
        XCTAssertLessThanOrEqual(skipped.max() ?? 99, 5, "at most one batch per NaN row")
        XCTAssertGreaterThan(try XCTUnwrap(metrics["test_accuracy"] as? Double), 0.5, "training went on after the skips")
    }

    func testMaxMemory() throws {
        let dir = try tempDir()
        let model = dir + "/tiny.onnx"
        try writeTinyMLP(to: model)
        let ppocr = try TestCache.require("models/ppocr_cls.onnx", madeBy: "tools/fetch-models")
        let input = try TestCache.require("reference/ppocr_cls/input_0.npy", madeBy: "tools/make-reference")
        let data = try digits
        for args in [["run", ppocr, "--input", input, "--output", dir + "/o.npy", "--max-memory", "1M"],
                     ["bench", ppocr, "--shape", "2x3x48x192", "--runs", "1", "--max-memory", "1M"],
                     ["bench", ppocr, "--shape", "2x3x48x192", "--runs", "1", "--train", "--max-memory", "1M"],
                     ["finetune", "--source", model, "--data", data, "--out", dir + "/ft",
                      "--max-memory", "16K"]] {
            let r = try braid(args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.err)")
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
            XCTAssertTrue(r.err.contains("braid: error: needs ") && r.err.contains("more than the memory limit of"), r.err)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/o.npy"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/ft/checkpoint.bin"))
        let ok = try braid(["run", ppocr, "--input", input, "--output", dir + "/o.npy", "--max-memory", "64M"])
        XCTAssertEqual(ok.status, 0, ok.err)
        let bad = try braid(["run", ppocr, "--input", input, "--output", dir + "/o.npy", "--max-memory", "lots"])
        XCTAssertTrue(bad.err.contains("--max-memory takes a size"), bad.err)
    }

    /// Resumes an interrupted run inside a private mount namespace where its directory is
    /// read-only, then where it sits on a tmpfs with room for run.json but not for a new
    /// checkpoint (a full disk): each fails with one line naming the file, and the previous
    /// checkpoint is byte for byte intact with no temporary file left beside it.
    func testReadOnlyAndFullDirectoryKeepThePreviousCheckpoint() throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["unshare", "-rm", "true"]
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        guard probe.terminationStatus == 0 else {
            throw XCTSkip("unshare -rm is not permitted here: no private mount namespace for a read-only or full directory")
        }
        let dir = try tempDir()
        let model = dir + "/tiny.onnx"
        try writeTinyMLP(to: model)
        let run = dir + "/run"
        let stopped = try startAndSignal(finetuneArgs(model: model, out: run), runDir: run, delay: 0.05, signal: SIGINT)
        XCTAssertEqual(stopped.status, 130, stopped.err)
        let before = try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoint.bin"))
        let mnt = dir + "/mnt"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let resume = "'\(exe)' finetune --resume '\(mnt)' --quiet; echo \"status=$?\"; cmp '\(run)/checkpoint.bin' '\(mnt)/checkpoint.bin' && echo intact; ls -A '\(mnt)'"
        let scripts = [
            ("read-only", "mount --bind '\(run)' '\(mnt)' && mount -o remount,bind,ro '\(mnt)' && \(resume)", "Read-only file system", "run.json"),
            // Two free pages: enough to rewrite run.json, not for a second copy of the checkpoint.
            ("full", "mount -t tmpfs -o size=1m tmpfs '\(mnt)' && cp '\(run)'/* '\(mnt)'/ && used=$(df -k --output=used '\(mnt)' | tail -1) && mount -o remount,size=$((used + 8))k '\(mnt)' && \(resume)",
             "No space left on device", "checkpoint.bin"),
        ]
        for (name, script, reason, file) in scripts {
            let (p, o, e) = try launch("/usr/bin/env", ["unshare", "-rm", "sh", "-c", script])
            let r = finish(p, o, e)
            XCTAssertTrue(r.out.contains("status=1"), "\(name): \(r.out) \(r.err)")
            XCTAssertTrue(r.out.contains("intact"), "\(name): the previous checkpoint changed: \(r.out)")
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, "\(name): \(r.err)")
            XCTAssertTrue(r.err.contains("\(mnt)/\(file): cannot write") && r.err.contains(reason), "\(name): \(r.err)")
            XCTAssertFalse(r.out.contains(".tmp-"), "\(name): a temporary file was left: \(r.out)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoint.bin")), before)
    }
}
