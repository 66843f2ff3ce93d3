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
        let results = try printTopClasses(try imageFiles(image)) { chunk in
            try classifier.classify(try classifier.load(chunk), top: top).map { $0.map { ("class \($0.index)", $0.index, $0.probability) } }
        }
        if json { try printJSON(["model": model, "preprocessing": classifier.input.report.jsonObject, "results": results]) }
    }
}
