import BraidGraph
import BraidONNX
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

enum ExportPaths {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var cache: URL {
        if let c = ProcessInfo.processInfo.environment["BRAID_CACHE"] { return URL(fileURLWithPath: c) }
        return repo.appendingPathComponent(".cache")
    }
    static var kerasFixtures: URL { repo.appendingPathComponent("Tests/BraidKerasTests/Fixtures") }
    static var checkScript: String { repo.appendingPathComponent("tools/check-onnx-export").path }

    /// `<dir>/<name>.<kind>0.npy`, `<kind>1.npy`, ... (`kind` is "in" or "out").
    static func arrays(_ dir: URL, _ name: String, _ kind: String) throws -> [Tensor] {
        var result: [Tensor] = []
        while true {
            let p = dir.appendingPathComponent("\(name).\(kind)\(result.count).npy").path
            guard FileManager.default.fileExists(atPath: p) else { return result }
            result.append(try Npy.read(path: p))
        }
    }
}

/// Runs `graph` on `inputs` (in feed-input order); outputs in graph output order.
func runGraph(_ graph: Graph, _ inputs: [Tensor]) throws -> [Tensor] {
    var feeds: [String: Tensor] = [:]
    for (d, t) in zip(graph.feedInputs, inputs) { feeds[d.name] = t }
    let executor = Executor(graph: graph)
    executor.poisonBuffers = true
    let out = try executor.run(feeds)
    return try graph.outputs.map { o in
        guard let t = out[o.name] else { throw GraphError(node: nil, "no output \(o.name)") }
        return t
    }
}

/// The largest difference between two tensor lists relative to each reference's scale
/// (absolute below 1); infinity when counts or shapes differ or a NaN stands on one side only.
func worstDifference(_ a: [Tensor], _ b: [Tensor]) -> Double {
    guard a.count == b.count else { return .infinity }
    var worst = 0.0
    for (x, y) in zip(a, b) {
        guard x.dtype.isFloat == y.dtype.isFloat else { return .infinity }
        worst = max(worst, difference(x, y).worst)
    }
    return worst
}

/// Exports `graph`, imports the file again and checks both give the same outputs on `inputs`
/// (within `tolerance`). When `checkDir` is given, writes the file there as `<label>.onnx`
/// with the inputs and Braid's outputs as .npy for tools/check-onnx-export.
@discardableResult
func assertRoundTrip(_ graph: Graph, inputs: [Tensor], opset: Int = 17, tolerance: Double = 1e-6,
                     label: String, checkDir: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) throws -> Graph {
    let before = try runGraph(graph, inputs)
    let bytes = try exportONNXBytes(graph, opset: opset)
    let back = try importONNX(bytes: bytes)
    let after = try runGraph(back, inputs)
    let worst = worstDifference(after, before)
    XCTAssertLessThanOrEqual(worst, tolerance, "\(label) at opset \(opset): re-imported outputs differ by \(worst)",
                             file: file, line: line)
    XCTAssertEqual(back.feedInputs.map(\.name), graph.feedInputs.map(\.name), "\(label): inputs", file: file, line: line)
    XCTAssertEqual(back.outputs.map(\.name), graph.outputs.map(\.name), "\(label): outputs", file: file, line: line)
    if let checkDir {
        let path = "\(checkDir)/\(label).onnx"
        try exportONNX(graph, to: path, opset: opset)
        for (i, t) in inputs.enumerated() { try Npy.write(t, path: "\(checkDir)/\(label).in\(i).npy") }
        for (i, t) in before.enumerated() { try Npy.write(t, path: "\(checkDir)/\(label).out\(i).npy") }
    }
    return back
}

/// Runs tools/check-onnx-export on `dir` with `$PYTHON` (default python3, as tools/setup).
func runCheckScript(_ dir: String) throws -> (status: Int32, report: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [ProcessInfo.processInfo.environment["PYTHON"] ?? "python3", ExportPaths.checkScript, dir]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs tools/check-onnx-export on `dir` and fails with its report unless every model passes.
func assertONNXRuntimeAgrees(_ dir: String, expectModels: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    let (status, report) = try runCheckScript(dir)
    print(report)
    XCTAssertEqual(status, 0, "tools/check-onnx-export failed:\n\(report)", file: file, line: line)
    XCTAssertTrue(report.contains("\(expectModels)/\(expectModels) exported models pass"),
                  "expected \(expectModels) models checked:\n\(report)", file: file, line: line)
}
