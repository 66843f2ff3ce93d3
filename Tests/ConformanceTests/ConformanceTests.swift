import BraidGraph
import BraidONNX
import BraidTensor
import BraidTestSupport
import Foundation
import Testing
import XCTest

/// ONNX's own backend test data: the per-op node cases, the `simple`, `pytorch-converted`
/// and `pytorch-operator` model cases, and the nine light zoo models, one test per case, so a
/// failure names its case (`swift test --filter 'ConformanceTests.*test_abs'` runs one).
///
/// `cases.txt` beside this file names every case. A line is `SUITE/CASE` to run it, or
/// `SUITE/CASE  skip: REASON`. Cases found in the cache but missing from the list fail
/// `testListNamesEveryCase`, so the list stays complete. The data comes from
/// `tools/fetch-conformance`; without it the cases are skipped, or fail under
/// `BRAID_REQUIRE_CACHE=1`.
enum Conformance {
    static let suites = ["node", "simple", "pytorch-converted", "pytorch-operator", "light"]
    static var root: URL { TestCache.root.appendingPathComponent("onnx-tests") }
    static var dataPresent: Bool { FileManager.default.fileExists(atPath: root.path) }

    struct Listed { var id: String; var skip: String? }

    static func readList() -> [Listed] {
        let path = TestCache.repo.appendingPathComponent("Tests/ConformanceTests/cases.txt")
        guard let text = try? String(contentsOf: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let l = line.trimmingCharacters(in: .whitespaces)
            if l.isEmpty || l.hasPrefix("#") { return nil }
            if let r = l.range(of: "skip:") {
                return Listed(id: l[..<r.lowerBound].trimmingCharacters(in: .whitespaces),
                              skip: l[r.upperBound...].trimmingCharacters(in: .whitespaces))
            }
            return Listed(id: l, skip: nil)
        }
    }

    /// The cases the list says to run.
    static let runnable: [String] = readList().filter { $0.skip == nil }.map(\.id)

    /// Every case id present in the cache.
    static func discover() -> [String] {
        var ids: [String] = []
        let fm = FileManager.default
        for suite in suites {
            let dir = root.appendingPathComponent(suite).path
            guard let items = try? fm.contentsOfDirectory(atPath: dir) else { continue }
            if suite == "light" {
                ids += items.filter { $0.hasSuffix(".onnx") }.map { "light/" + $0.replacingOccurrences(of: ".onnx", with: "") }
            } else {
                ids += items.filter { fm.fileExists(atPath: "\(dir)/\($0)/model.onnx") }.map { "\(suite)/\($0)" }
            }
        }
        return ids.sorted()
    }

    struct Mismatch: Error, CustomStringConvertible { var description: String }

    /// Runs one case, returning the ONNX op types its model uses; throws on any difference.
    static func runCase(_ id: String, root: URL) throws -> [String] {
        let parts = id.split(separator: "/", maxSplits: 1).map(String.init)
        let suite = parts[0], name = parts[1]
        let modelPath: String
        var dataSets: [(inputs: [Tensor], outputs: [Tensor])] = []
        if suite == "light" {
            modelPath = root.appendingPathComponent("light/\(name).onnx").path
        } else {
            let dir = root.appendingPathComponent("\(suite)/\(name)")
            modelPath = dir.appendingPathComponent("model.onnx").path
            let sets = try FileManager.default.contentsOfDirectory(atPath: dir.path)
                .filter { $0.hasPrefix("test_data_set_") }.sorted()
            for s in sets {
                let sdir = dir.appendingPathComponent(s)
                let files = try FileManager.default.contentsOfDirectory(atPath: sdir.path)
                func load(_ prefix: String) throws -> [Tensor] {
                    let n = files.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".pb") }.count
                    return try (0..<n).map { try readTensorProto(path: sdir.appendingPathComponent("\(prefix)\($0).pb").path) }
                }
                dataSets.append((try load("input_"), try load("output_")))
            }
        }
        let graph = try importONNX(path: modelPath)
        let ops = graph.nodes.map(\.sourceOp)
        if suite == "light" {
            // ONNX's runner feeds light models arange(n) / n in the input's shape.
            var inputs: [Tensor] = []
            for d in graph.feedInputs {
                let shape = (d.shape ?? []).map { $0.value ?? 1 }
                let n = shape.product
                inputs.append(Tensor(shape: shape, floats: (0..<n).map { Float(Double($0) / Double(n)) }))
            }
            let expected = try readTensorProto(path: root.appendingPathComponent("light/\(name)_output_0.pb").path)
            dataSets.append((inputs, [expected]))
        }
        // The light models also run after the execution passes (fused epilogues, Winograd's 3x3
        // kernel on constant weights), against the same reference outputs. Not SqueezeNet: its
        // 1000 logits are all 9.475688e9 in the reference, so its softmax output holds only if
        // every channel rounds alike; through Winograd they spread over 9.475683e9 to 9.475685e9
        // (5.4e-7 of onnxruntime's, checked by hand), and a spread of 2e3 makes the softmax one-hot.
        var executors = [Executor(graph: graph)]
        if suite == "light" && name != "light_squeezenet" {
            executors.append(Executor(graph: try Passes.optimizeForExecution(graph)))
        }
        for executor in executors {
            executor.poisonBuffers = true
            for (si, set) in dataSets.enumerated() {
                let feeds = graph.feedInputs
                guard set.inputs.count <= feeds.count || feeds.isEmpty else {
                    throw Mismatch(description: "data set has \(set.inputs.count) inputs, model feeds \(feeds.count)")
                }
                var bound: [String: Tensor] = [:]
                for (d, t) in zip(feeds, set.inputs) { bound[d.name] = t }
                // Optional inputs the data omits keep their initializer or are left out.
                let results = try executor.run(bound)
                for (i, exp) in set.outputs.enumerated() where i < graph.outputs.count {
                    guard let got = results[graph.outputs[i].name] else {
                        throw Mismatch(description: "output \(i) missing")
                    }
                    if let m = allCloseFailure(got, exp, rtol: 1e-3, atol: suite == "light" ? 1e-4 : 1e-5) {
                        throw Mismatch(description: "data set \(si) output \(i) ('\(graph.outputs[i].name)')\(executor === executors[0] ? "" : " after the execution passes"): \(m)")
                    }
                }
            }
        }
        return ops
    }
}

/// One test per listed case; a case's failure message is its first difference or error.
@Suite struct ONNXConformanceCases {
    @Test(.enabled(if: Conformance.dataPresent || TestCache.isRequired,
                   "no ONNX conformance data in the cache: run tools/fetch-conformance"),
          arguments: Conformance.runnable)
    func conformance(_ id: String) throws {
        guard Conformance.dataPresent else {
            throw MissingCacheFile(description: "\(Conformance.root.path) is not in the cache: run tools/fetch-conformance (BRAID_REQUIRE_CACHE=1)")
        }
        _ = try Conformance.runCase(id, root: Conformance.root)
    }
}

final class ConformanceTests: XCTestCase {
    /// The list and the data agree: every case present is listed (to run or with a reason to
    /// skip), and the list is not cut short.
    func testListNamesEveryCase() throws {
        try TestCache.require("onnx-tests", madeBy: "tools/fetch-conformance")
        let listed = Set(Conformance.readList().map(\.id))
        let present = Conformance.discover()
        XCTAssertGreaterThan(present.count, 1000, "conformance data looks incomplete")
        XCTAssertGreaterThan(Conformance.runnable.count, 1000, "cases.txt lists too few cases to run")
        let unlisted = present.filter { !listed.contains($0) }
        XCTAssertTrue(unlisted.isEmpty, "cases missing from cases.txt: \(unlisted.prefix(20).joined(separator: ", "))")
    }

    /// `BRAID_CONFORMANCE_ALL=1` tries every case present, listed or not, and writes each
    /// outcome to `$BRAID_CACHE/conformance-all.tsv` for tools/conformance-list, with per-op
    /// coverage on stdout. Skipped otherwise.
    func testRecordEveryCase() throws {
        guard ProcessInfo.processInfo.environment["BRAID_CONFORMANCE_ALL"] == "1" else {
            throw XCTSkip("set BRAID_CONFORMANCE_ALL=1 to record every case for tools/conformance-list")
        }
        try TestCache.require("onnx-tests", madeBy: "tools/fetch-conformance")
        let ids = Set(Conformance.readList().map(\.id)).union(Conformance.discover()).sorted()
        let logPath = TestCache.path("conformance-all.tsv")
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try XCTUnwrap(FileHandle(forWritingAtPath: logPath))
        var perOp: [String: (pass: Int, total: Int)] = [:]
        for id in ids {
            // Written before the run too, so a crash leaves the culprit's name in the log.
            log.write(Data("\(id)\t".utf8))
            var result: String?
            var ops: [String] = []
            do {
                ops = try Conformance.runCase(id, root: Conformance.root)
            } catch {
                result = String(describing: error).replacingOccurrences(of: "\n", with: " ")
            }
            log.write(Data("\(result ?? "ok")\n".utf8))
            for op in Set(ops) {
                var c = perOp[op] ?? (0, 0)
                c.total += 1
                if result == nil { c.pass += 1 }
                perOp[op] = c
            }
        }
        try log.close()
        print("per-op coverage (cases passed / run):")
        for (op, c) in perOp.sorted(by: { $0.key < $1.key }) { print("  \(op): \(c.pass)/\(c.total)") }
    }
}
