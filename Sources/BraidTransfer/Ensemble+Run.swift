import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

/// What an exported ensemble records about itself in the model's metadata: class names, how
/// it was made, and the preprocessing its `image` input expects.
public struct EnsembleInfo: Sendable, Equatable {
    public var classes: [String]
    public var sources: [String]
    /// The members' output names, in member order.
    public var members: [String]
    public var depths: [Int]
    public var method: String
    public var dataset: String
    public var braidVersion: String
    /// How `logits` and `probabilities` combine the members.
    public var vote: EnsembleVote
    /// The `image` input: `[N, channels, height, width]`, NCHW, float32 pixels in 0...255.
    public var image: EnsembleImage

    public init(classes: [String], sources: [String], members: [String], depths: [Int], method: String,
                dataset: String, braidVersion: String = BraidTransfer.braidVersion, vote: EnsembleVote = .sumOfLogits,
                image: EnsembleImage) {
        self.classes = classes; self.sources = sources; self.members = members; self.depths = depths
        self.method = method; self.dataset = dataset; self.braidVersion = braidVersion; self.vote = vote
        self.image = image
    }

    /// The model's `metadata_props`.
    public var metadata: [String: String] {
        func json<T: Encodable>(_ v: T) -> String {
            let enc = JSONEncoder()
            enc.outputFormatting = [.withoutEscapingSlashes]
            return String(decoding: (try? enc.encode(v)) ?? Data("[]".utf8), as: UTF8.self)
        }
        return ["classes": json(classes), "sources": json(sources), "members": json(members),
                "freeze_depths": json(depths), "method": method, "dataset": dataset,
                "braid_version": braidVersion, "vote": vote.rawValue,
                "input_name": EnsembleNames.image, "input_range": "0..255", "input_layout": "NCHW",
                "input_channels": String(image.channels), "input_height": String(image.height),
                "input_width": String(image.width)]
    }

    /// The metadata keys `init?(metadata:)` needs that are missing or malformed.
    public static func missing(in metadata: [String: String]) -> [String] {
        func get(_ k: String) -> String? { metadata[k] ?? metadata["meta." + k] }
        var missing: [String] = []
        if get("input_range") != "0..255" { missing.append("input_range (0..255)") }
        if get("input_layout") != "NCHW" { missing.append("input_layout (NCHW)") }
        if !["1", "3"].contains(get("input_channels") ?? "") { missing.append("input_channels (1 or 3)") }
        for k in ["input_height", "input_width"] where (get(k).flatMap(Int.init) ?? 0) <= 0 { missing.append(k) }
        let classes = get("classes").flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) } ?? []
        if classes.isEmpty { missing.append("classes (a JSON list of names)") }
        return missing
    }

    /// Reads the fields back from `metadata_props` (keys bare or with the importer's `meta.`
    /// prefix). Nil when the preprocessing or the class names are missing or malformed.
    public init?(metadata: [String: String]) {
        func get(_ k: String) -> String? { metadata[k] ?? metadata["meta." + k] }
        func list<T: Decodable>(_ k: String, _ t: T.Type) -> T? {
            get(k).flatMap { try? JSONDecoder().decode(T.self, from: Data($0.utf8)) }
        }
        guard get("input_range") == "0..255", get("input_layout") == "NCHW",
              let c = get("input_channels").flatMap(Int.init), c == 1 || c == 3,
              let h = get("input_height").flatMap(Int.init), h > 0,
              let w = get("input_width").flatMap(Int.init), w > 0,
              let classes = list("classes", [String].self), !classes.isEmpty else { return nil }
        self.init(classes: classes, sources: list("sources", [String].self) ?? [],
                  members: list("members", [String].self) ?? [], depths: list("freeze_depths", [Int].self) ?? [],
                  method: get("method") ?? "", dataset: get("dataset") ?? "",
                  braidVersion: get("braid_version") ?? "",
                  vote: get("vote").flatMap(EnsembleVote.init(rawValue:)) ?? .sumOfLogits,
                  image: EnsembleImage(channels: c, height: h, width: w))
    }
}

/// A fine-tuned run read back from its directory: the record and the trained members.
public struct TrainedRun {
    public var record: RunRecord
    public var members: [SourceModel]

    /// Reads `runDir/run.json` and `runDir/checkpoint.bin` and rebuilds the trained members.
    ///
    /// - Throws: `TrainingError` when the directory is incomplete (no run.json, no
    ///   checkpoint), was written by another Braid version, or the checkpoint lacks a member
    ///   parameter or holds it in another shape.
    public static func load(runDir: String, manifest: [ModelManifest]) throws -> TrainedRun {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: runDir, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingError("\(runDir): no such run directory")
        }
        let record = try RunRecord.load(runDir: runDir)
        guard record.braidVersion == braidVersion else {
            throw TrainingError("\(runDir): written by Braid \(record.braidVersion); this is Braid \(braidVersion) (re-run the fine-tuning with this version)")
        }
        let ckPath = runDir + "/checkpoint.bin"
        guard fm.fileExists(atPath: ckPath) else {
            throw TrainingError("\(runDir): incomplete run directory (no checkpoint.bin; the run has not finished an epoch)")
        }
        let ck = try Checkpoint.load(from: ckPath)
        if let v = ck.facts["braid_version"], v != braidVersion {
            throw TrainingError("\(ckPath): written by Braid \(v); this is Braid \(braidVersion)")
        }
        guard record.sources.count == record.featureNodes.count, !record.sources.isEmpty else {
            throw TrainingError("\(runDir)/run.json: \(record.sources.count) sources and \(record.featureNodes.count) feature nodes")
        }
        let models = try record.buildModels(manifest: manifest)
        for (j, m) in models.enumerated() {
            for (name, t) in m.graph.initializers where t.dtype.isFloat {
                guard let saved = ck.tensors["m\(j)/\(name)"], saved.shape == t.shape, saved.dtype == t.dtype else {
                    throw TrainingError("\(ckPath): parameter '\(name)' of member \(j) missing or of another shape")
                }
                t.buffer.raw.copyMemory(from: saved.buffer.raw, byteCount: t.count * t.dtype.storageStride)
            }
        }
        return TrainedRun(record: record, members: models)
    }

    /// The target dataset's image size (its first image), or nil when the dataset cannot be
    /// opened here.
    public func datasetImage() -> EnsembleImage? {
        guard let opened = try? DataCatalog.open(record.data),
              let set = opened.whole ?? opened.train ?? opened.test, set.count > 0,
              let x = try? set.image(0), x.shape.count == 3 else { return nil }
        return EnsembleImage(channels: x.shape[0], height: x.shape[1], width: x.shape[2])
    }

    /// The members (all, or the one named `member`) as one ensemble graph with its metadata,
    /// voting as the run did.
    public func ensemble(image: EnsembleImage, member: String? = nil) throws -> (graph: Graph, info: EnsembleInfo) {
        var picked = Array(members.enumerated())
        if let member {
            picked = picked.filter { $0.element.name == member }
            guard !picked.isEmpty else {
                throw TrainingError("no member named '\(member)' (members: \(members.map(\.name).joined(separator: ", ")))")
            }
        }
        let vote: EnsembleVote = record.options.vote == "softmax" && picked.count > 1 ? .meanOfProbabilities : .sumOfLogits
        let graph = try ensembleGraph(members: picked.map { EnsembleMember($0.element) }, classes: record.classes, image: image,
                                      vote: vote)
        let names = Array(graph.outputs.dropFirst(2).map(\.name))
        let info = EnsembleInfo(classes: record.classes, sources: picked.map { record.sources[$0.offset] }, members: names,
                                depths: picked.map { $0.offset < record.depths.count ? record.depths[$0.offset] : 0 },
                                method: record.options.method, dataset: record.data, vote: vote, image: image)
        return (graph, info)
    }
}
