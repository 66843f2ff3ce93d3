import ArgumentParser
import BraidRuntime
import Foundation

extension Run {
    /// `--image` on a model that is not a Braid ensemble: images prepared as the resolved
    /// preprocessing says (flags, then the model's metadata, then Models/manifest), the first
    /// output read as class scores (softmax applied unless its rows already sum to 1).
    func classifyWithPreprocessing(graph loaded: Graph) throws {
        let size = try parseInputSizes(inputSize.map { [$0] } ?? [], sources: [model])?.first ?? nil
        let classifier = try ImageClassifier(path: model, graph: loaded, manifest: try loadManifest(path: manifest),
                                             inputSize: size, preprocess: try pre.overrides(sources: [model])?.first ?? nil,
                                             memoryLimit: try memoryLimit(maxMemory))
        FileHandle.standardError.write(Data("preprocessing: \(classifier.input.summary)\n".utf8))
        let files = try imageFiles(image)
        var results: [[String: Any]] = []
        var progress = files.count > batch ? ImageProgress(total: files.count) : nil
        for from in stride(from: 0, to: files.count, by: batch) {
            let chunk = Array(files[from..<min(from + batch, files.count)])
            let tops = try classifier.classify(try classifier.load(chunk), top: top)
            for (path, best) in zip(chunk, tops) {
                if json {
                    results.append(["image": path, "top": best.map { ["class": $0.index, "probability": Double($0.probability)] }])
                } else {
                    print(path + ": " + best.map { String(format: "class %d %.4f", $0.index, $0.probability) }.joined(separator: ", "))
                }
            }
            progress?.update(done: from + chunk.count)
        }
        if json {
            let obj: [String: Any] = ["model": model, "preprocessing": classifier.input.report.jsonObject, "results": results]
            print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
        }
    }
}
