import Foundation
import XCTest
import BraidTestSupport

/// The ImageNet-pretrained sources that tools/fetch-models converts from PyTorch checkpoints in
/// wheels (Models/manifest blocks with `convert`): each fine-tunes through `braid finetune` for
/// one epoch on a few texture patches with the manifest's preprocessing.
final class WheelSourceTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var cache: String {
        ProcessInfo.processInfo.environment["BRAID_CACHE"] ?? repo.appendingPathComponent(".cache").path
    }
    static var manifest: String { repo.appendingPathComponent("Models/manifest").path }

    func braid(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("braid").path
        let (p, out, err) = try launch(exe, args)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "braid-wheel-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// An image folder of the first `perClass` patches of each texture class (tools/fetch-data).
    func textureSubset(in dir: String, perClass: Int) throws -> String {
        let fm = FileManager.default
        let textures = try TestCache.require("data/textures", madeBy: "tools/fetch-data")
        let root = dir + "/textures"
        for cls in ["brick", "grass", "gravel"] {
            try fm.createDirectory(atPath: root + "/" + cls, withIntermediateDirectories: true)
            let files = try fm.contentsOfDirectory(atPath: textures + "/" + cls).filter { $0.hasSuffix(".png") }.sorted()
            XCTAssertGreaterThanOrEqual(files.count, perClass)
            for f in files.prefix(perClass) {
                try fm.copyItem(atPath: textures + "/" + cls + "/" + f, toPath: root + "/" + cls + "/" + f)
            }
        }
        return root
    }

    func finetuneOneEpoch(_ id: String, units: Int) throws {
        let model = try TestCache.require("models/\(id).onnx", madeBy: "tools/fetch-models")
        let dir = try tempDir()
        let data = try textureSubset(in: dir, perClass: 10)
        // --no-prefix-cache: in a debug build (not in release) the standard method's frozen
        // prefix (the input adaptation) takes the classifier's int64 Reshape shape, built from
        // Shape(input) -> Gather -> Unsqueeze -> Concat, as a cut and stops with "the frozen prefix's cut '/Concat_output_0'
        // is not a batch-leading float value". Reported; remove the flag once fixed.
        let r = try braid(["finetune", "--source", model, "--manifest", Self.manifest, "--data", data,
                           "--input-size", "32x32", "--epochs", "1", "--batch", "8", "--lr", "0.01",
                           "--seed", "0", "--out", dir + "/run", "--quiet", "--no-prefix-cache"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("\(id): \(units) layer units"), r.out)
        XCTAssertTrue(r.out.contains("input [3, 32, 32] nchw"), r.out)
        let metrics = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/metrics.json"))) as? [String: Any])
        let epochs = try XCTUnwrap(metrics["epochs"] as? [[String: Any]])
        XCTAssertEqual(epochs.count, 1)
        let loss = try XCTUnwrap(epochs.first?["trainLoss"] as? Double)
        XCTAssertTrue(loss.isFinite && loss > 0, "train loss \(loss)")
        let accuracy = try XCTUnwrap(metrics["test_accuracy"] as? Double)
        XCTAssertTrue(accuracy >= 0 && accuracy <= 1, "test accuracy \(accuracy)")
    }

    func testEfficientNetLite0FineTunes() throws {
        try finetuneOneEpoch("efficientnet_lite0", units: 49)
    }

    func testEfficientNetLite2FineTunes() throws {
        try finetuneOneEpoch("efficientnet_lite2", units: 64)
    }
}
