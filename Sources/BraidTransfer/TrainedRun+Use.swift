import BraidData
import BraidTraining
import Foundation

/// Which part of a dataset an evaluation reads.
public enum EvaluationSplit: String, Sendable, CaseIterable {
    /// The held-out splits, as the run made them (its fractions and seed).
    case test, validation, train
    /// Every image (a dataset's own splits: its test split).
    case all
}

extension TrainedRun {
    /// The images of `split` of `data`, split as the run split its own data.
    ///
    /// - Throws: `TrainingError` when `data` has another number of classes than the run was
    ///   trained on.
    public func images(of data: OpenedData, split: EvaluationSplit) throws -> any ImageDataset {
        guard data.classes.count == record.classes.count else {
            throw TrainingError("\(data.name) has \(data.classes.count) classes, the run was trained on \(record.classes.count)")
        }
        if split == .all, let whole = data.whole { return whole }
        let o = record.options
        let s = try data.splits(validationFraction: o.valFraction, testFraction: o.testFraction, seed: o.seed)
        switch split {
        case .test, .all: return s.test
        case .validation: return s.validation
        case .train: return s.train
        }
    }

    /// The ensemble's accuracy and confusion matrix on `images` (labelled with the run's
    /// classes), voting as the run did (argmax of summed logits, or of mean probabilities
    /// with `vote == .softmax`).
    public func evaluate(on images: any ImageDataset) throws -> Evaluation {
        let all = members.map { (graph: $0.graph, inputName: $0.inputName, spec: $0.spec) }
        return try BraidTransfer.evaluate(members: all, on: images, batchSize: record.options.batch,
                                          classes: record.classes.count, softmaxVote: record.options.vote == .softmax)
    }

    /// Writes the members (all, or the one named `member`) as one ensemble model with a
    /// single `image` input `[N, C, H, W]` (pixels 0...255, preprocessing as graph ops) and
    /// outputs `logits`, `probabilities` and each member's logits; class names and the
    /// preprocessing go into the file's metadata. The graph is optimised for inference first.
    ///
    /// - Parameters:
    ///   - path: the file to write.
    ///   - format: the format (nil: by `path`'s extension).
    ///   - image: the image input's channels and size (nil: the run's dataset's).
    ///   - member: export this member alone.
    ///   - options: opset and weight storage (its metadata is replaced by the ensemble's).
    /// - Returns: the graph written.
    /// - Throws: `TrainingError` when no image size is given and the dataset cannot be opened,
    ///   or no member has that name; the exporters' errors naming a node they cannot write.
    @discardableResult
    public func export(to path: String, format: ModelFormat? = nil, image: EnsembleImage? = nil, member: String? = nil,
                       options: ModelFile.SaveOptions = ModelFile.SaveOptions()) throws -> Graph {
        guard let image = image ?? datasetImage() else {
            throw TrainingError("cannot open the run's dataset '\(record.data)' to read its image size; give the image size",
                                setting: "imageSize")
        }
        let e = try ensemble(image: image, member: member)
        let graph = try Passes.optimizeForInference(e.graph)
        var o = options
        o.metadata = e.info.metadata
        try ModelFile.save(graph, to: path, format: format, options: o)
        return graph
    }
}
