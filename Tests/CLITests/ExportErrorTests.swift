import BraidONNX
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// `braid export` and `braid run --image` on bad input: one clear line, a non-zero exit,
/// and no file (or temporary file) left where the export was to go.
extension CLITests {
    /// Fails unless `dir` holds exactly `names` (nothing half-written, no temporary files).
    func assertDirHolds(_ dir: String, _ names: Set<String>, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), names, file: file, line: line)
    }

    /// A run.json as `braid finetune` writes it, for `version`.
    func writeRunRecord(_ dir: String, version: String) throws {
        let source = try ppocr
        let record: [String: Any] = [
            "braidVersion": version, "classes": ["a", "b"], "data": "digits", "depths": [0], "featureNodes": [NSNull()],
            "sources": [source],
            "options": ["batch": 8, "cacheMB": 64, "childMode": "d", "childP": 0.3, "clipNorm": 0, "epochs": 1,
                        "freeze": [0], "gamma": 0.1, "l2spAlpha": 0.01, "l2spBeta": 0.01, "labelSmoothing": 0,
                        "lambda": 0.2, "lr": 0.01, "method": "standard", "momentum": 0.9, "nesterov": false,
                        "optimizer": "sgd", "prefixCache": false, "schedule": "step", "seed": 0, "stepSize": 30,
                        "testFraction": 0.2, "valFraction": 0.1, "warmupSteps": 0, "weightDecay": 0.0005] as [String: Any],
        ]
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: record).write(to: URL(fileURLWithPath: dir + "/run.json"))
    }

    func testExportRejectsIncompleteAndForeignRunDirectories() throws {
        let dir = try tempDir()
        let out = try tempDir()
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        try assertFails(["export", dir + "/empty", "--out", out + "/e.onnx", "--image-size", "1x8x8"], mentions: ["empty", "run.json"])
        try writeRunRecord(dir + "/old", version: "0.0.1")
        try assertFails(["export", dir + "/old", "--out", out + "/e.onnx", "--image-size", "1x8x8"],
                        mentions: ["old", "Braid 0.0.1"])
        try writeRunRecord(dir + "/unfinished", version: try currentVersion())
        try assertFails(["export", dir + "/unfinished", "--out", out + "/e.onnx", "--image-size", "1x8x8"],
                        mentions: ["unfinished", "checkpoint.bin"])
        try Data("BRAIDCK1 and then nothing".utf8).write(to: URL(fileURLWithPath: dir + "/unfinished/checkpoint.bin"))
        try assertFails(["export", dir + "/unfinished", "--out", out + "/e.onnx", "--image-size", "1x8x8"],
                        mentions: ["checkpoint.bin", "BRAIDCK1"])
        try assertDirHolds(out, [])
    }

    /// The version this build writes, read from `braid --version`.
    func currentVersion() throws -> String {
        let r = try braid(["--version"])
        XCTAssertEqual(r.status, 0, r.err)
        return r.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testExportAtAnOpsetTooOldForAnOp() throws {
        let dir = try tempDir()
        var m = ONNXModelProto()
        m.irVersion = 9
        m.opsetImport = [("", 19)]
        m.graph.name = "wrap"
        m.graph.inputs = [ONNXValueInfoProto(name: "x", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: [.value(1), .value(4)]))]
        m.graph.outputs = [ONNXValueInfoProto(name: "y", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: nil))]
        m.graph.initializers = [ONNXTensorProto(Tensor(shape: [4], ints: [0, 1, 0, 1]), name: "pads")]
        var mode = ONNXAttributeProto(name: "mode", type: .string)
        mode.s = Array("wrap".utf8)
        m.graph.nodes = [ONNXNodeProto(name: "pad_wrap", opType: "Pad", domain: "", inputs: ["x", "pads"], outputs: ["y"], attributes: [mode])]
        try Data(m.serialized()).write(to: URL(fileURLWithPath: dir + "/wrap.onnx"))
        let ok = try braid(["export", dir + "/wrap.onnx", "--format", "onnx", "--out", dir + "/wrap19.onnx", "--opset", "19"])
        XCTAssertEqual(ok.status, 0, ok.err)
        try assertFails(["export", dir + "/wrap.onnx", "--format", "onnx", "--out", dir + "/wrap13.onnx", "--opset", "13"],
                        mentions: ["pad_wrap", "opset 13", "19"])
        let old = try braid(["export", dir + "/wrap.onnx", "--format", "onnx", "--out", dir + "/w.onnx", "--opset", "12"])
        XCTAssertNotEqual(old.status, 0)
        XCTAssertTrue(old.err.hasPrefix("Error: --opset 12: Braid writes opsets 13...21"), old.err)
        try assertDirHolds(dir, ["wrap.onnx", "wrap19.onnx"])
    }

    func testKerasExportSaysWhichOpsDoNotMap() throws {
        let dir = try tempDir()
        var m = ONNXModelProto()
        m.irVersion = 8
        m.opsetImport = [("", 17)]
        m.graph.name = "erf"
        m.graph.inputs = [ONNXValueInfoProto(name: "x", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: [.value(1), .value(4)]))]
        m.graph.outputs = [ONNXValueInfoProto(name: "y", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: nil))]
        m.graph.nodes = [ONNXNodeProto(name: "the_erf", opType: "Tan", domain: "", inputs: ["x"], outputs: ["y"], attributes: [])]
        try Data(m.serialized()).write(to: URL(fileURLWithPath: dir + "/erf.onnx"))
        let r = try braid(["export", dir + "/erf.onnx", "--format", "h5", "--out", dir + "/erf.h5"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(r.status, 128, r.err)
        XCTAssertTrue(r.err.contains("the_erf") && r.err.contains("no Keras layer"), r.err)
        try assertDirHolds(dir, ["erf.onnx"])
    }

    func testRunImageNeedsPreprocessingMetadata() throws {
        let dir = try tempDir()
        let png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) + Data("truncated".utf8)
        try png.write(to: URL(fileURLWithPath: dir + "/cut.png"))
        try assertFails(["run", ppocr, "--image", dir + "/cut.png"], mentions: ["ppocr_cls.onnx", "metadata", "input_height", "classes", "--input"])
        let fer = try TestCache.require("models/fer_mini_xception.hdf5", madeBy: "tools/fetch-models")
        try assertFails(["run", fer, "--image", dir + "/cut.png"], mentions: ["fer_mini_xception.hdf5", "metadata", "--input"])
        try assertFails(["run", dir + "/missing.onnx", "--image", dir + "/cut.png"], mentions: ["missing.onnx"])
    }
}
