import BraidONNX
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// The `braid` command line as a user meets it: real models, and bad input that must give
/// one clear line on standard error and a non-zero exit, never a crash.
final class CLITests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var cache: String { TestCache.root.path }

    struct Result { var status: Int32; var out: String; var err: String }

    func braid(_ args: [String], environment: [String: String] = [:]) throws -> Result {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let exe = dir.appendingPathComponent("braid").path
        let (p, out, err) = try launch(exe, args, environment: environment)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self),
                      err: String(decoding: e, as: UTF8.self))
    }

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "braid-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Fails unless the command exited non-zero with one error line mentioning every part.
    func assertFails(_ args: [String], mentions parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try braid(args)
        XCTAssertNotEqual(r.status, 0, "expected failure: \(args)", file: file, line: line)
        XCTAssertLessThan(r.status, 128, "crashed with a signal: \(r.err)", file: file, line: line)
        let lines = r.err.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "expected one error line, got: \(r.err)", file: file, line: line)
        for p in parts {
            XCTAssertTrue(r.err.contains(p), "'\(r.err)' does not mention '\(p)'", file: file, line: line)
        }
    }

    /// The cached model and its onnxruntime reference: skipped when absent locally, failing
    /// under `BRAID_REQUIRE_CACHE=1` (`TestCache.require`).
    var ppocr: String { get throws { try TestCache.require("models/ppocr_cls.onnx", madeBy: "tools/fetch-models") } }
    var reference: String { get throws { try TestCache.require("reference/ppocr_cls", madeBy: "tools/make-reference") } }

    func testRunMatchesReferenceAndWritesOutputDir() throws {
        let dir = try tempDir()
        let r = try braid(["run", ppocr, "--input", reference + "/input_0.npy", "--output-dir", dir])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("output_0.npy"))
        let got = try Npy.read(path: dir + "/output_0.npy")
        let exp = try Npy.read(path: reference + "/output_0.npy")
        XCTAssertEqual(got.shape, exp.shape)
        for i in 0..<got.count { XCTAssertEqual(got.floats[i], exp.floats[i], accuracy: 1e-4) }
        // Named binding and a single --output file.
        let r2 = try braid(["run", ppocr, "--input", "x=" + reference + "/input_0.npy", "--output", dir + "/y.npy"])
        XCTAssertEqual(r2.status, 0, r2.err)
        XCTAssertEqual(try Npy.read(path: dir + "/y.npy").floatArray, got.floatArray)
    }

    func testInspectShowsSymbolicDimsAndLayerUnits() throws {
        let r = try braid(["inspect", ppocr])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("x  float32  [x_dim0, 3, x_dim2, x_dim3]"), r.out)
        XCTAssertTrue(r.out.contains("[x_dim0, 2]"), r.out)
        XCTAssertTrue(r.out.contains("layer units (54"), r.out)
        let j = try braid(["inspect", ppocr, "--json"])
        let obj = try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any]
        XCTAssertEqual((obj?["layer_units"] as? [Any])?.count, 54)
    }

    func testBenchPrintsJSON() throws {
        let r = try braid(["bench", ppocr, "--shape", "2x3x48x192", "--runs", "2", "--warmup", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        XCTAssertNotNil(obj?["median_ms"] as? Double)
    }

    /// `BRAID_THREADS` sets the kernels' thread count (benchmarks give Braid the peer's); a
    /// value that is no count from 1 on is one clear error, not a silent default.
    func testThreadCountFromEnvironment() throws {
        let r = try braid(["bench", ppocr, "--shape", "1x3x48x192", "--runs", "1", "--warmup", "0", "--json"],
                          environment: ["BRAID_THREADS": "3"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        XCTAssertEqual(obj?["threads"] as? Int, 3)
        for bad in ["0", "-2", "two"] {
            let b = try braid(["bench", ppocr, "--runs", "1"], environment: ["BRAID_THREADS": bad])
            XCTAssertNotEqual(b.status, 0, "BRAID_THREADS=\(bad) was accepted")
            XCTAssertEqual(b.err.split(separator: "\n").count, 1, b.err)
            XCTAssertTrue(b.err.contains("BRAID_THREADS=\(bad)"), b.err)
        }
    }

    func testBadInputs() throws {
        let dir = try tempDir()
        let modelBytes = try Data(contentsOf: URL(fileURLWithPath: ppocr))
        // Truncated and garbage files.
        try modelBytes.prefix(modelBytes.count / 3).write(to: URL(fileURLWithPath: dir + "/cut.onnx"))
        try assertFails(["inspect", dir + "/cut.onnx"], mentions: ["cut.onnx"])
        try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }).write(to: URL(fileURLWithPath: dir + "/junk.onnx"))
        try assertFails(["run", dir + "/junk.onnx", "--input", reference + "/input_0.npy", "--output", dir + "/o.npy"], mentions: ["junk.onnx"])
        try assertFails(["inspect", dir + "/none.onnx"], mentions: ["none.onnx", "no such file"])
        // Wrong input name, shape and dtype.
        try assertFails(["run", ppocr, "--input", "y=" + reference + "/input_0.npy", "--output", dir + "/o.npy"],
                        mentions: ["unknown input 'y'", "x"])
        try Npy.write(Tensor(zeros: [1, 4, 48, 192]), path: dir + "/c4.npy")
        try assertFails(["run", ppocr, "--input", dir + "/c4.npy", "--output", dir + "/o.npy"],
                        mentions: ["input 'x'", "[x_dim0, 3, x_dim2, x_dim3]", "[1, 4, 48, 192]"])
        try Npy.write(Tensor(zeros: [1, 3, 48, 192], dtype: .int64), path: dir + "/i64.npy")
        try assertFails(["run", ppocr, "--input", dir + "/i64.npy", "--output", dir + "/o.npy"],
                        mentions: ["input 'x'", "float32", "int64"])
        try Data("not numpy".utf8).write(to: URL(fileURLWithPath: dir + "/bad.npy"))
        try assertFails(["run", ppocr, "--input", dir + "/bad.npy", "--output", dir + "/o.npy"], mentions: ["bad.npy"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/o.npy"), "nothing written on failure")
    }

    func testUnsupportedOpCycleAndMissingExternalData() throws {
        let dir = try tempDir()
        func model(_ build: (inout ONNXModelProto) -> Void) -> [UInt8] {
            var m = ONNXModelProto()
            m.irVersion = 8
            m.opsetImport = [("", 17)]
            m.graph.name = "g"
            m.graph.inputs = [ONNXValueInfoProto(name: "x", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: [.value(2)]))]
            m.graph.outputs = [ONNXValueInfoProto(name: "y", type: .tensor(elemType: ONNXDataType.float.rawValue, shape: nil))]
            build(&m)
            return m.serialized()
        }
        let unsupported = model { $0.graph.nodes = [ONNXNodeProto(name: "fancy", opType: "FancyOp", domain: "", inputs: ["x"], outputs: ["y"], attributes: [])] }
        try Data(unsupported).write(to: URL(fileURLWithPath: dir + "/op.onnx"))
        try assertFails(["inspect", dir + "/op.onnx"], mentions: ["FancyOp", "fancy", "17", "op.onnx"])
        let cycle = model {
            $0.graph.nodes = [ONNXNodeProto(name: "a", opType: "Relu", domain: "", inputs: ["b_out"], outputs: ["a_out"], attributes: []),
                              ONNXNodeProto(name: "b", opType: "Relu", domain: "", inputs: ["a_out"], outputs: ["b_out"], attributes: []),
                              ONNXNodeProto(name: "c", opType: "Add", domain: "", inputs: ["x", "a_out"], outputs: ["y"], attributes: [])]
        }
        try Data(cycle).write(to: URL(fileURLWithPath: dir + "/cycle.onnx"))
        try assertFails(["inspect", dir + "/cycle.onnx"], mentions: ["cycle"])
        let external = model {
            var w = ONNXTensorProto(Tensor(shape: [2], floats: [1, 2]), name: "w")
            w.rawData = nil
            w.isExternal = true
            w.externalData = [("location", "weights.bin"), ("offset", "0"), ("length", "8")]
            $0.graph.initializers = [w]
            $0.graph.nodes = [ONNXNodeProto(name: "add", opType: "Add", domain: "", inputs: ["x", "w"], outputs: ["y"], attributes: [])]
        }
        try Data(external).write(to: URL(fileURLWithPath: dir + "/ext.onnx"))
        try assertFails(["inspect", dir + "/ext.onnx"], mentions: ["weights.bin"])
    }
}
