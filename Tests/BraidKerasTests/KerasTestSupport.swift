import BraidGraph
import BraidKeras
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

enum KerasFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

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
/// `expected` within 1e-4 of the output's scale (absolute below 1).
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
        assertClose(got, want, tolerance: 1e-4, "\(label): \(o.name)", file: file, line: line)
    }
}

/// The error `body` throws, as text.
func errorText(_ body: () throws -> Any) -> String? {
    do { _ = try body(); return nil } catch { return String(describing: error) }
}
