import BraidData
import BraidGraph
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer
import BraidTestSupport

/// `braid export` and `braid run --image` as a user runs them, and the exported file checked
/// by tools/check-ensemble-export (ONNX checker and onnxruntime against Braid).
extension EnsembleTests {
    struct Result { var status: Int32; var out: String; var err: String }

    func run(_ exe: String, _ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
    }

    func braid(_ args: [String]) throws -> Result {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("braid").path
        guard FileManager.default.isExecutableFile(atPath: exe) else {
            XCTFail("\(exe) missing: build with `swift build --build-tests` first")
            throw CocoaError(.fileNoSuchFile)
        }
        return try run(exe, args)
    }

    func assertFails(_ args: [String], mentions parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try braid(args)
        XCTAssertNotEqual(r.status, 0, "expected failure: \(args)", file: file, line: line)
        XCTAssertLessThan(r.status, 128, "crashed: \(r.err)", file: file, line: line)
        XCTAssertEqual(r.err.split(separator: "\n").count, 1, "expected one error line: \(r.err)", file: file, line: line)
        for p in parts { XCTAssertTrue(r.err.contains(p), "'\(r.err)' does not mention '\(p)'", file: file, line: line) }
    }

    func testExportCheckAndRunOnImages() throws {
        let dir = NSTemporaryDirectory() + "braid-enscli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ms = try members(in: dir)
        let runDir = try writeRunDir(dir, members: ms)

        // Export at two opsets and one member alone, then the checker and onnxruntime.
        let e17 = dir + "/ens17.onnx", e13 = dir + "/ens13.onnx", one = dir + "/rgb.onnx"
        for (out, extra) in [(e17, [String]()), (e13, ["--opset", "13"]), (one, ["--member", "rgb"])] {
            let r = try braid(["export", runDir, "--format", "onnx", "--out", out, "--image-size", "3x20x14"] + extra)
            XCTAssertEqual(r.status, 0, r.err)
        }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("braid").path
        let repo = EnsembleTests.repo.path
        let check = try run("/usr/bin/env", ["python3", repo + "/tools/check-ensemble-export", e17, e13, one, "--braid", exe, "--batch", "3"])
        XCTAssertEqual(check.status, 0, check.out + check.err)
        XCTAssertTrue(check.out.contains("3 passed, 0 failed"), check.out + check.err)

        // Images: a PNG of each kind; `braid run --image` equals the ensemble on the same pixels.
        var rng = SplitMix64(seed: 4)
        let rgb = EnsembleTests.random([3, 25, 17], 0, 255, &rng).floatArray.map { $0.rounded() }
        let gray = EnsembleTests.random([1, 20, 14], 0, 255, &rng).floatArray.map { $0.rounded() }
        try FileManager.default.createDirectory(atPath: dir + "/imgs", withIntermediateDirectories: true)
        try ImageCodec.writePNG(Tensor(shape: [3, 25, 17], floats: rgb), to: dir + "/imgs/a.png")
        try ImageCodec.writePNG(Tensor(shape: [1, 20, 14], floats: gray), to: dir + "/imgs/b.png")
        let r = try braid(["run", e17, "--image", dir + "/imgs", "--top", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let results = try XCTUnwrap(obj["results"] as? [[String: Any]])
        XCTAssertEqual(results.map { ($0["image"] as? String).map { ($0 as NSString).lastPathComponent } }, ["a.png", "b.png"])

        let classifier = try EnsembleClassifier(path: e17)
        XCTAssertEqual(classifier.info.classes, EnsembleTests.classes)
        let x = Tensor(zeros: [2, 3, 20, 14])
        let a = resizeBilinear(Tensor(shape: [3, 25, 17], floats: rgb), height: 20, width: 14)
        let b = convertChannels(Tensor(shape: [1, 20, 14], floats: gray), to: 3)
        x.floats.update(from: a.floats, count: 840)
        (x.floats + 840).update(from: b.floats, count: 840)
        let expected = try Executor(graph: classifier.graph).run(["image": x])["probabilities"]!.floatArray
        for (i, res) in results.enumerated() {
            let top = try XCTUnwrap(res["top"] as? [[String: Any]])
            XCTAssertEqual(top.count, 2)
            let row = Array(expected[(3 * i)..<(3 * i + 3)])
            let best = row.indices.max { row[$0] < row[$1] }!
            XCTAssertEqual(top[0]["class"] as? String, EnsembleTests.classes[best])
            XCTAssertEqual(try XCTUnwrap(top[0]["probability"] as? Double), Double(row[best]), accuracy: 1e-6)
        }
        // A .npy image ([H, W] gray here) goes through the same path.
        try Npy.write(Tensor(shape: [20, 14], floats: gray), path: dir + "/c.npy")
        let rn = try braid(["run", e17, "--image", dir + "/c.npy", "--top", "3", "--json"])
        XCTAssertEqual(rn.status, 0, rn.err)
        let pn = try Executor(graph: classifier.graph).run(["image": try classifier.load([dir + "/c.npy"])])["probabilities"]!.floatArray
        assertClose(pn, Array(expected[3..<6]), tolerance: 1e-6, ".npy image equals the same pixels as PNG")
        let objn = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(rn.out.utf8)) as? [String: Any])
        let topn = try XCTUnwrap(((objn["results"] as? [[String: Any]])?.first?["top"]) as? [[String: Any]])
        XCTAssertEqual(topn.compactMap { $0["probability"] as? Double }.reduce(0, +), 1, accuracy: 1e-5)

        let text = try braid(["run", e17, "--image", dir + "/imgs/a.png"])
        XCTAssertEqual(text.status, 0, text.err)
        XCTAssertTrue(text.out.hasPrefix(dir + "/imgs/a.png: "), text.out)
        XCTAssertEqual(text.out.split(separator: ",").count, 3, text.out)

        // Bad input: corrupt image, a model without metadata, incomplete run directory.
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: dir + "/bad.png"))
        try assertFails(["run", e17, "--image", dir + "/bad.png"], mentions: ["bad.png"])
        try exportONNX(ms[0].graph, to: dir + "/plain.onnx")
        try assertFails(["run", dir + "/plain.onnx", "--image", dir + "/imgs/a.png"], mentions: ["plain.onnx", "metadata"])
        let checkPlain = try run("/usr/bin/env", ["python3", repo + "/tools/check-ensemble-export", e17, dir + "/plain.onnx", "--braid", exe])
        XCTAssertEqual(checkPlain.status, 1, checkPlain.out + checkPlain.err)
        XCTAssertTrue(checkPlain.out.contains("1 passed, 1 failed"), checkPlain.out)
        try FileManager.default.removeItem(atPath: runDir + "/checkpoint.bin")
        try assertFails(["export", runDir, "--format", "onnx", "--out", dir + "/never.onnx", "--image-size", "1x28x28"],
                        mentions: ["checkpoint.bin"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/never.onnx"))
        try assertFails(["export", dir + "/nothing", "--format", "onnx", "--out", dir + "/never.onnx"], mentions: ["nothing"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/never.onnx"))
    }

    func testReexportOfAModelGivesIdenticalOutputs() throws {
        let dir = NSTemporaryDirectory() + "braid-enscli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try EnsembleTests.writeGrayModel(to: dir + "/gray.onnx")
        let r = try braid(["export", dir + "/gray.onnx", "--format", "onnx", "--out", dir + "/again.onnx"])
        XCTAssertEqual(r.status, 0, r.err)
        let a = try ONNXImporter().importModel(path: dir + "/gray.onnx")
        let b = try ONNXImporter().importModel(path: dir + "/again.onnx")
        var rng = SplitMix64(seed: 3)
        let x = EnsembleTests.random([2, 1, 16, 16], 0, 1, &rng)
        let ya = try Executor(graph: a).run(["x": x])["y"]!.floatArray
        let yb = try Executor(graph: b).run(["x": x])["y"]!.floatArray
        assertClose(yb, ya, tolerance: 1e-6, "re-exported model")
    }

    /// `--format h5` of a whole ensemble (resize, channel map, NHWC member). With
    /// BRAID_KERAS_EXPORT_DIR set (tools/check-keras-export does), the file, its input and
    /// Braid's outputs are left there for Keras to load and compare.
    func testEnsembleKerasExport() throws {
        let dir = NSTemporaryDirectory() + "braid-enscli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runDir = try writeRunDir(dir, members: try members(in: dir))
        let h5 = dir + "/ensemble.h5", onnx = dir + "/ensemble.onnx"
        for out in [h5, onnx] {
            let r = try braid(["export", runDir, "--format", out.hasSuffix("h5") ? "h5" : "onnx", "--out", out, "--image-size", "3x20x14"])
            XCTAssertEqual(r.status, 0, r.err)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: h5))
        guard let keep = ProcessInfo.processInfo.environment["BRAID_KERAS_EXPORT_DIR"] else { return }
        try FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: 12)
        let x = EnsembleTests.random([2, 3, 20, 14], 0, 255, &rng)
        let g = try ONNXImporter(constantsAsInitializers: true).importModel(path: onnx)
        let out = try Executor(graph: g).run(["image": x])
        try? FileManager.default.removeItem(atPath: keep + "/braid_ensemble.h5")
        try FileManager.default.copyItem(atPath: h5, toPath: keep + "/braid_ensemble.h5")
        try Npy.write(x, path: keep + "/braid_ensemble.in0.npy")
        for (i, o) in g.outputs.enumerated() { try Npy.write(out[o.name]!, path: keep + "/braid_ensemble.out\(i).npy") }
    }
}
