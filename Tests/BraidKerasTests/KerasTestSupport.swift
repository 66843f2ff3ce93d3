import BraidGraph
import BraidKeras
import BraidTensor
import Foundation
import XCTest

enum KerasFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var cache: URL {
        if let c = ProcessInfo.processInfo.environment["BRAID_CACHE"] { return URL(fileURLWithPath: c) }
        return repo.appendingPathComponent(".cache")
    }

    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// `<name>.in0.npy`, `<name>.in1.npy`, ... (or `.out`).
    static func arrays(_ name: String, _ kind: String) throws -> [Tensor] {
        var result: [Tensor] = []
        while FileManager.default.fileExists(atPath: path("\(name).\(kind)\(result.count).npy")) {
            result.append(try Npy.read(path: path("\(name).\(kind)\(result.count).npy")))
        }
        return result
    }
}

/// Runs `graph` on `inputs` (in graph input order) and checks each output against
/// `expected` within 1e-4 (absolute, or relative for entries larger than 1).
func assertMatchesKeras(_ graph: Graph, inputs: [Tensor], expected: [Tensor], _ label: String,
                        file: StaticString = #filePath, line: UInt = #line) throws {
    XCTAssertEqual(graph.feedInputs.count, inputs.count, "\(label): input count", file: file, line: line)
    XCTAssertEqual(graph.outputs.count, expected.count, "\(label): output count", file: file, line: line)
    var feeds: [String: Tensor] = [:]
    for (d, t) in zip(graph.feedInputs, inputs) { feeds[d.name] = t }
    let executor = Executor(graph: graph)
    executor.poisonBuffers = true
    let outputs = try executor.run(feeds)
    for (o, want) in zip(graph.outputs, expected) {
        let got = try XCTUnwrap(outputs[o.name], "\(label): no output \(o.name)", file: file, line: line)
        XCTAssertEqual(got.shape, want.shape, "\(label): shape of \(o.name)", file: file, line: line)
        guard got.shape == want.shape else { continue }
        var worst = 0.0, worstAt = 0
        for k in 0..<got.count {
            let a = Double(got.floats[k]), b = Double(want.floats[k])
            let err = abs(a - b) / max(1, abs(b))
            if !(err <= worst) { worst = err.isNaN ? .infinity : err; worstAt = k }
        }
        XCTAssertLessThanOrEqual(worst, 1e-4, "\(label): \(o.name) differs by \(worst) at flat index \(worstAt) (got \(got.floats[worstAt]), Keras \(want.floats[worstAt]))",
                                 file: file, line: line)
    }
}

/// The error `body` throws, as text.
func errorText(_ body: () throws -> Any) -> String? {
    do { _ = try body(); return nil } catch { return String(describing: error) }
}
