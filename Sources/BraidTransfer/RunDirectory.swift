import BraidData
import BraidTensor
import BraidTraining
import Foundation

/// What a run directory records about how it was made (`run.json`), enough to rebuild its
/// members for evaluation, resumption and export.
public struct RunRecord: Codable, Sendable {
    public var braidVersion: String
    public var sources: [String]
    public var featureNodes: [String?]
    public var data: String
    public var classes: [String]
    public var depths: [Int]
    public var options: TrainOptions
    /// Per source, `[height, width]` overriding its input size (nil: the model's own size).
    public var inputSizes: [[Int]?]?
    /// Per source, preprocessing settings overriding its metadata, manifest entry or
    /// defaults (nil: none).
    public var preprocess: [PreprocessOverride?]?

    public init(sources: [String], featureNodes: [String?], data: String, classes: [String],
                depths: [Int], options: TrainOptions) {
        self.braidVersion = BraidRuntime.braidVersion
        self.sources = sources; self.featureNodes = featureNodes; self.data = data
        self.classes = classes; self.depths = depths; self.options = options
    }

    public static func load(runDir: String) throws -> RunRecord {
        let path = runDir + "/run.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainingError("\(runDir): not a Braid run directory (no run.json)")
        }
        do {
            return try JSONDecoder().decode(RunRecord.self, from: data)
        } catch {
            throw TrainingError("\(path): unreadable run record (\(error))")
        }
    }

    public func save(runDir: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try enc.encode(self), to: runDir + "/run.json")
    }

    /// The members as the run built them (same heads from the same seeds), before any
    /// checkpoint is loaded.
    public func buildModels(manifest: [ModelManifest]) throws -> [SourceModel] {
        try sources.enumerated().map { j, path in
            var m = try SourceModel.load(path: path, classes: classes.count, seed: options.seed &+ UInt64(j),
                                         manifest: manifest, featureNode: featureNodes[j],
                                         inputSize: inputSizes.flatMap { j < $0.count ? $0[j] : nil },
                                         preprocess: preprocess.flatMap { j < $0.count ? $0[j] : nil })
            if options.method == .scratch { m.reinitialize(seed: options.seed &+ UInt64(j)) }
            return m
        }
    }
}
