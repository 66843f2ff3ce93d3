import ArgumentParser
import BraidRuntime
import Foundation

extension Run {
    /// `--image` on a model that is not a Braid ensemble: images prepared as the resolved
    /// preprocessing says (flags, then the model's metadata, then Models/manifest), the first
    /// output read as class scores (softmax applied unless its rows already sum to 1).
    func classifyWithPreprocessing(graph loaded: Graph) throws {
        let size = try parseInputSizes(inputSize.map { [$0] } ?? [], sources: [model])?.first ?? nil
        let resolved = try ResolvedInput.resolve(path: model, graph: loaded, manifest: try loadManifest(path: manifest),
                                                    inputSize: size, preprocess: try pre.overrides(sources: [model])?.first ?? nil)
        guard resolved.sources[.range] != .default || resolved.sources[.mean] != .default else {
            throw ValidationError("\(model): no preprocessing in its metadata or Models/manifest; give --preprocess imagenet|caffe|inception|none (or --range, --mean, --std)")
        }
        let spec = resolved.spec
        var graph = loaded
        if let input = graph.feedInputs.first, input.shape.map({ $0.dropFirst().contains { $0.value == nil } }) == true
            || size != nil {
            graph.inputs = graph.inputs.map { d in
                var d = d
                if d.name == input.name { d.shape = [d.shape?.first ?? .symbol("N")] + spec.sampleShape.map { .fixed($0) } }
                return d
            }
        }
        if !graph.unitBatchInputs.isEmpty { graph = try Passes.generalizeBatch(graph) }
        guard graph.feedInputs.count == 1, let inputName = graph.feedInputs.first?.name else {
            throw ValidationError("\(model): --image needs a model with one input")
        }
        FileHandle.standardError.write(Data("preprocessing: \(resolved.summary)\n".utf8))
        let executor = Executor(graph: try Passes.optimizeForExecution(graph))
        executor.memoryLimit = try memoryLimit(maxMemory)
        let files = try imageFiles(image)
        var results: [[String: Any]] = []
        var progress = files.count > batch ? ImageProgress(total: files.count) : nil
        for from in stride(from: 0, to: files.count, by: batch) {
            let chunk = Array(files[from..<min(from + batch, files.count)])
            let x = Tensor(zeros: spec.batchShape(chunk.count))
            for (i, path) in chunk.enumerated() { spec.write(try EnsembleClassifier.readImage(path), into: x, at: i) }
            let out = try executor.run([inputName: x])
            guard let scores = out[graph.outputs[0].name], scores.shape.count == 2, scores.shape[0] == chunk.count else {
                throw ValidationError("\(model): --image expects the first output to be class scores [N, K]")
            }
            for (i, path) in chunk.enumerated() {
                let best = topClasses(scores, row: i)
                if json {
                    results.append(["image": path, "top": best.map { ["class": $0.0, "probability": Double($0.1)] }])
                } else {
                    print(path + ": " + best.map { String(format: "class %d %.4f", $0.0, $0.1) }.joined(separator: ", "))
                }
            }
            progress?.update(done: from + chunk.count)
        }
        if json {
            let obj: [String: Any] = ["model": model, "preprocessing": resolved.report.jsonObject, "results": results]
            print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
        }
    }

    /// The `top` best classes of row `row` with their probabilities.
    func topClasses(_ scores: Tensor, row: Int) -> [(Int, Float)] {
        let k = scores.shape[1]
        var p = Array(scores.floatArray[(row * k)..<((row + 1) * k)])
        let sum = p.reduce(0, +)
        if !(p.allSatisfy { $0 >= 0 } && abs(sum - 1) <= 1e-3) {
            let m = p.max() ?? 0
            p = p.map { exp($0 - m) }
            let z = p.reduce(0, +)
            p = p.map { $0 / z }
        }
        return p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }.prefix(max(1, top)).map { ($0, p[$0]) }
    }
}
