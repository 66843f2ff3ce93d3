import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

/// A fine-tuned run read back from its directory: the record and the trained members.
public struct TrainedRun {
    public var record: RunRecord
    public var members: [SourceModel]
    /// amcf-weighted's vote (`vote.json`), already applied: each member's head is scaled by
    /// its weight, and `ensemble` leaves out the members of weight 0.
    public var vote: WeightedVote?

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
        var trained = TrainedRun(record: record, members: models)
        if let data = fm.contents(atPath: runDir + "/vote.json") {
            let vote: WeightedVote
            do { vote = try JSONDecoder().decode(WeightedVote.self, from: data) } catch {
                throw TrainingError("\(runDir)/vote.json: unreadable vote (\(error))")
            }
            guard vote.weights.count == models.count else {
                throw TrainingError("\(runDir)/vote.json: \(vote.weights.count) weights for \(models.count) members")
            }
            for j in trained.members.indices { trained.members[j].scaleHead(by: vote.weights[j]) }
            trained.vote = vote
        }
        return trained
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
        if let vote, member == nil { picked = picked.filter { vote.weights[$0.offset] != 0 } }
        if let member {
            picked = picked.filter { $0.element.name == member }
            guard !picked.isEmpty else {
                throw TrainingError("no member named '\(member)' (members: \(members.map(\.name).joined(separator: ", ")))")
            }
        }
        let vote: EnsembleVote = record.options.vote == .softmax && picked.count > 1 ? .meanOfProbabilities : .sumOfLogits
        let graph = try ensembleGraph(members: picked.map { EnsembleMember($0.element) }, classes: record.classes, image: image,
                                      vote: vote)
        let names = Array(graph.outputs.dropFirst(2).map(\.name))
        let info = EnsembleInfo(classes: record.classes, sources: picked.map { record.sources[$0.offset] }, members: names,
                                depths: picked.map { $0.offset < record.depths.count ? record.depths[$0.offset] : 0 },
                                method: record.options.method.rawValue, dataset: record.data, vote: vote, image: image)
        return (graph, info)
    }
}
