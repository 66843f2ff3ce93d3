import BraidData
import BraidGraph
import BraidTensor
import Foundation

/// Any image classifier (not only a Braid export) fed image files: each image prepared as
/// its resolved preprocessing says (settings given, then the model's metadata, then
/// Models/manifest), the first output read as class scores `[N, K]`, turned into
/// probabilities by a softmax unless its rows already sum to 1.
public final class ImageClassifier {
    /// How images are prepared, and where each setting came from.
    public let input: ResolvedInput
    public let graph: Graph
    let inputName: String
    let executor: Executor

    /// Prepares `graph`, imported from `path`, for classifying images.
    ///
    /// - Parameters:
    ///   - inputSize: `[height, width]` to feed a model whose spatial dims are symbolic.
    ///   - preprocess: settings over the model's metadata and manifest entry.
    ///   - memoryLimit: cap in bytes on the planned buffers of one batch (nil: none).
    /// - Throws: `ModelLoadError` (setting `preprocess`) when neither the settings, the
    ///   metadata nor the manifest say how pixels are scaled; when the model has more than
    ///   one input; `ResolvedInput.resolve`'s errors.
    public init(path: String, graph loaded: Graph, manifest: [ModelManifest], inputSize: [Int]? = nil,
                preprocess: PreprocessOverride? = nil, memoryLimit: Int? = nil) throws {
        let resolved = try ResolvedInput.resolve(path: path, graph: loaded, manifest: manifest, inputSize: inputSize,
                                                 preprocess: preprocess)
        guard resolved.sources[.range] != .default || resolved.sources[.mean] != .default else {
            throw ModelLoadError("\(path): no preprocessing in its metadata or Models/manifest; give it (a preset: imagenet, caffe, inception or none; or the range, mean and std)",
                                 setting: "preprocess")
        }
        var graph = loaded
        if let input = graph.feedInputs.first,
           input.shape.map({ $0.dropFirst().contains { $0.value == nil } }) == true || inputSize != nil {
            graph.inputs = graph.inputs.map { d in
                var d = d
                if d.name == input.name { d.shape = [d.shape?.first ?? .symbol("N")] + resolved.spec.sampleShape.map { .fixed($0) } }
                return d
            }
        }
        if !graph.unitBatchInputs.isEmpty { graph = try Passes.generalizeBatch(graph) }
        guard graph.feedInputs.count == 1, let inputName = graph.feedInputs.first?.name else {
            throw ModelLoadError("\(path): classifying images needs a model with one input")
        }
        self.input = resolved
        self.graph = graph
        self.inputName = inputName
        executor = Executor(graph: try Passes.optimizeForExecution(graph))
        executor.memoryLimit = memoryLimit
    }

    /// Image files (PNG, JPEG, .npy `[C, H, W]` in 0...255) as one prepared batch.
    public func load(_ paths: [String]) throws -> Tensor {
        let spec = input.spec
        let x = Tensor(zeros: spec.batchShape(paths.count))
        for (i, path) in paths.enumerated() { spec.write(try EnsembleClassifier.readImage(path), into: x, at: i) }
        return x
    }

    /// The `top` most probable class indices of each image of a prepared batch, most
    /// probable first.
    ///
    /// - Throws: `ModelLoadError` when the first output is not `[N, K]` scores.
    public func classify(_ batch: Tensor, top: Int) throws -> [[(index: Int, probability: Float)]] {
        let out = try executor.run([inputName: batch])
        let n = batch.shape[0]
        guard let scores = out[graph.outputs[0].name], scores.shape.count == 2, scores.shape[0] == n else {
            throw ModelLoadError("\(graph.name): the first output is not class scores [N, K]")
        }
        let k = scores.shape[1]
        let values = scores.floatArray
        return (0..<n).map { row in
            var p = Array(values[(row * k)..<((row + 1) * k)])
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
}
