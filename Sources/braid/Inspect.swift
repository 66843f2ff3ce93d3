import ArgumentParser
import BraidRuntime
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's inputs, outputs, ops, parameters and layer units.",
        discussion: """
        With --check, lists every node Braid cannot run (node, op, domain, opset and why) instead \
        of stopping at the first, and exits non-zero when there is any.
        """)

    @Argument(help: "Model file (.onnx, .h5, .hdf5, .keras).") var model: String
    @Flag(help: "Print JSON instead of text.") var json = false
    @Option(name: .long, help: "Models/manifest to read input sizes and normalisation from.") var manifest: String?
    @Option(name: .long, help: "HEIGHTxWIDTH the model would be fed at (for symbolic spatial dims).") var inputSize: String?
    @Flag(help: "List every node Braid cannot run; exit 1 when there is any.") var check = false
    @OptionGroup(title: "Preprocessing (as braid finetune takes it)") var pre: PreprocessOptions

    func run() throws {
        if check { return try runCheck() }
        let graph = reportingErrors { try ModelFile.load(path: model) }
        let executor = Executor(graph: graph)
        let shapes = executor.symbolicOutputShapes()
        func dims(_ d: [Dim]?) -> [String] { d?.map(\.description) ?? ["?"] }
        var histogram: [String: Int] = [:]
        for n in graph.nodes { histogram[n.sourceOp, default: 0] += 1 }
        let units = graph.layerUnits
        // The preprocessing fine-tuning would use, or why there is none.
        let preprocessing: Result<ResolvedInput, Error> = Result {
            let size = try parseInputSizes(inputSize.map { [$0] } ?? [], sources: [model])?.first ?? nil
            return try ResolvedInput.resolve(path: model, graph: graph, manifest: try loadManifest(path: manifest),
                                                inputSize: size, preprocess: try pre.overrides(sources: [model])?.first ?? nil)
        }
        let inputs = graph.feedInputs.map { ["name": $0.name, "dtype": $0.dtype.rawValue, "shape": dims($0.shape)] as [String: Any] }
        let outputs = graph.outputs.map { o -> [String: Any] in
            let shape = shapes?[o.name] ?? o.shape
            return ["name": o.name, "dtype": o.dtype.rawValue, "shape": dims(shape)]
        }
        if json {
            var obj: [String: Any] = [
                "file": model, "metadata": graph.metadata, "inputs": inputs, "outputs": outputs,
                "ops": histogram, "nodes": graph.nodes.count, "parameters": graph.parameterCount,
                "layer_units": units.map { ["index": $0.index, "node": $0.node, "kind": $0.kind,
                                            "parameters": $0.parameterCount] as [String: Any] },
            ]
            switch preprocessing {
            case .success(let r): obj["preprocessing"] = r.report.jsonObject
            case .failure(let e): obj["preprocessing"] = ["error": describe(e)]
            }
            let data = reportingErrors { try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]) }
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("model: \(model)")
        for k in graph.metadata.keys.sorted() { print("  \(k): \(graph.metadata[k]!)") }
        print("inputs:")
        for i in inputs { print("  \(i["name"]!)  \(i["dtype"]!)  [\((i["shape"] as! [String]).joined(separator: ", "))]") }
        print("outputs:")
        for o in outputs { print("  \(o["name"]!)  \(o["dtype"]!)  [\((o["shape"] as! [String]).joined(separator: ", "))]") }
        switch preprocessing {
        case .success(let r): print("preprocessing: \(r.summary)")
        case .failure(let e): print("preprocessing: none (\(describe(e)))")
        }
        print("nodes: \(graph.nodes.count), parameters: \(graph.parameterCount)")
        print("ops:")
        for (op, n) in histogram.sorted(by: { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }) {
            print("  \(op.padding(toLength: max(op.count, 24), withPad: " ", startingAt: 0)) \(n)")
        }
        print("layer units (\(units.count), freeze depth k freezes units 0..<k):")
        for u in units {
            print("  \(String(u.index).padding(toLength: 4, withPad: " ", startingAt: 0)) \(u.kind.padding(toLength: 15, withPad: " ", startingAt: 0)) \(u.node)  (\(u.parameterCount) params)")
        }
    }
}

extension Inspect {
    /// `--check`: every node the importer rejects, each on its own line (or as JSON), then
    /// whether the imported graph plans for execution. Exit 1 when anything cannot run.
    func runCheck() throws {
        var problems: [UnsupportedNode] = []
        var nodeCount = 0
        if (model as NSString).pathExtension.lowercased() == "onnx" {
            problems = reportingErrors { try ModelFile.unsupportedNodes(path: model) }
        }
        if problems.isEmpty {
            // Keras files, and ONNX files whose nodes all import: the whole load and the
            // execution passes must go through too.
            do {
                let graph = try ModelFile.load(path: model)
                nodeCount = graph.nodes.count
                _ = try Passes.optimizeForExecution(graph)
            } catch {
                if json {
                    printJSON(["file": model, "supported": false, "error": "\(error)"])
                } else {
                    print("\(model): cannot run: \(error)")
                }
                throw ExitCode(1)
            }
        }
        if json {
            printJSON(["file": model, "supported": problems.isEmpty,
                       "unsupported": problems.map { ["node": $0.node, "op": $0.op, "domain": $0.domain,
                                                      "opset": $0.opset.map { $0 as Any } ?? NSNull(), "reason": $0.reason] as [String: Any] }])
        } else if problems.isEmpty {
            print("\(model): all \(nodeCount) nodes supported")
        } else {
            print("\(model): \(problems.count) node\(problems.count == 1 ? "" : "s") Braid cannot run:")
            for p in problems { print("  \(p)") }
        }
        if !problems.isEmpty { throw ExitCode(1) }
    }

    private func printJSON(_ obj: [String: Any]) {
        let data = reportingErrors { try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]) }
        print(String(decoding: data, as: UTF8.self))
    }
}
