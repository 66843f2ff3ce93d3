import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

/// Activations of frozen prefixes, per (member, cut value, image index), kept in memory up
/// to a budget and spilled to a temporary file beyond it.
///
/// A frozen prefix runs in inference mode on pretrained weights, so the value where it ends
/// depends only on the image: the cut value's name identifies the prefix (every node before
/// it is frozen), and the image index identifies the input. One cache belongs to one
/// training dataset (indices are that dataset's) and to one set of pretrained weights; it
/// may be shared by every fine-tune on them (e.g. the fitness evaluations of a search).
public final class PrefixCache {
    struct Key: Hashable {
        var member: String
        var cut: String
        var index: Int
    }

    enum Entry {
        case memory([Float])
        case disk(offset: UInt64, count: Int)
    }

    /// In-memory budget in bytes.
    public let budget: Int
    public private(set) var bytesInMemory = 0
    public private(set) var bytesSpilled = 0
    public private(set) var hits = 0
    public private(set) var misses = 0
    private var entries: [Key: Entry] = [:]
    private let spillPath: String
    private var spill: FileHandle?

    /// `megabytes` of activations stay in memory; later ones go to a file in `spillDirectory`
    /// (the system's temporary directory by default), removed when the cache goes away.
    public init(megabytes: Int = 2048, spillDirectory: String = NSTemporaryDirectory()) {
        budget = max(0, megabytes) << 20
        spillPath = spillDirectory + "/braid-prefix-\(UUID().uuidString).bin"
    }

    deinit {
        try? spill?.close()
        try? FileManager.default.removeItem(atPath: spillPath)
    }

    /// Number of cached activations.
    public var count: Int { entries.count }

    /// Copies the cached activation of `count` floats into `into`; false when absent.
    public func lookup(member: String, cut: String, index: Int, into: UnsafeMutablePointer<Float>, count: Int) -> Bool {
        guard let e = entries[Key(member: member, cut: cut, index: index)] else {
            misses += 1
            return false
        }
        switch e {
        case .memory(let v):
            guard v.count == count else { misses += 1; return false }
            v.withUnsafeBufferPointer { into.update(from: $0.baseAddress!, count: count) }
        case .disk(let offset, let n):
            guard n == count, let h = spill else { misses += 1; return false }
            do {
                try h.seek(toOffset: offset)
                guard let data = try h.read(upToCount: n * 4), data.count == n * 4 else { misses += 1; return false }
                data.withUnsafeBytes { raw in
                    UnsafeMutableRawPointer(into).copyMemory(from: raw.baseAddress!, byteCount: n * 4)
                }
            } catch {
                misses += 1
                return false
            }
        }
        hits += 1
        return true
    }

    /// Stores `count` floats from `from`, in memory while within budget, else in the spill file.
    public func store(member: String, cut: String, index: Int, from: UnsafePointer<Float>, count: Int) throws {
        let key = Key(member: member, cut: cut, index: index)
        guard entries[key] == nil else { return }
        if bytesInMemory + count * 4 <= budget {
            entries[key] = .memory(Array(UnsafeBufferPointer(start: from, count: count)))
            bytesInMemory += count * 4
            return
        }
        if spill == nil {
            _ = FileManager.default.createFile(atPath: spillPath, contents: nil)
            guard let h = FileHandle(forUpdatingAtPath: spillPath) else {
                throw TrainingError("cannot open the prefix cache's spill file \(spillPath)")
            }
            spill = h
        }
        let h = spill!
        let offset = try h.seekToEnd()
        try h.write(contentsOf: Data(bytes: from, count: count * 4))
        entries[key] = .disk(offset: offset, count: count)
        bytesSpilled += count * 4
    }
}

/// A training graph cut where its frozen prefix ends: `prefix` maps the image input to the
/// single value `cut`; `suffix` takes `cut` as its only input and ends in the trained output.
struct PrefixSplit {
    var prefix: Graph
    var suffix: Graph
    var cut: String

    /// Splits `graph` (fed by `input`) before the first node that depends on a `trainable`
    /// parameter. Nil unless exactly one data-dependent float value crosses from the frozen
    /// side to the trained side and it is not the input itself (nothing frozen to cache).
    static func find(graph: Graph, input: String, trainable: Set<String>) -> PrefixSplit? {
        var data: Set<String> = [input]
        var trained = trainable
        var prefixNodes: [Node] = [], suffixNodes: [Node] = []
        for n in graph.nodes {
            if n.inputs.contains(where: trained.contains) {
                trained.formUnion(n.outputs)
                suffixNodes.append(n)
            } else if n.inputs.contains(where: data.contains) {
                switch n.op {
                case .dropoutTraining, .batchNormTraining: return nil
                default: break
                }
                data.formUnion(n.outputs)
                prefixNodes.append(n)
            } else {
                prefixNodes.append(n)
                suffixNodes.append(n)
            }
        }
        let outputs = Set(graph.outputs.map(\.name))
        var crossing = Set<String>()
        for n in suffixNodes {
            for v in n.inputs where data.contains(v) && !trained.contains(v) { crossing.insert(v) }
        }
        for v in outputs where data.contains(v) && !trained.contains(v) { crossing.insert(v) }
        guard crossing.count == 1, let cut = crossing.first, cut != input else { return nil }
        let prefix = Passes.removeDeadCode(Graph(name: graph.name + ".prefix", inputs: graph.inputs.filter { $0.name == input },
                                                 outputs: [ValueDecl(name: cut, dtype: .float32, shape: nil)],
                                                 initializers: graph.initializers, nodes: prefixNodes))
        let suffix = Graph(name: graph.name + ".suffix", inputs: [ValueDecl(name: cut, dtype: .float32, shape: nil)],
                           outputs: graph.outputs, initializers: graph.initializers, nodes: suffixNodes)
        return PrefixSplit(prefix: prefix, suffix: suffix, cut: cut)
    }
}

/// A member's frozen prefix, compiled for one batch shape, and where its outputs are cached.
final class PrefixStage {
    let member: String
    let cut: String
    let plan: Plan
    let output: Tensor
    /// Floats of the cut value per image.
    let perImage: Int
    let cache: PrefixCache

    init(member: String, split: PrefixSplit, input: String, batchShape: [Int], cache: PrefixCache) throws {
        self.member = member
        cut = split.cut
        let executor = Executor(graph: split.prefix)
        plan = try executor.plan(for: [input: (batchShape, .float32)])
        guard let out = plan.outputs.first(where: { $0.name == split.cut })?.tensor, out.dtype.isFloat,
              out.shape.first == batchShape[0] else {
            throw TrainingError("the frozen prefix's cut '\(split.cut)' has no batch-leading float shape")
        }
        output = out
        perImage = out.count / batchShape[0]
        self.cache = cache
    }

    /// The cut value's shape for the planned batch.
    var cutShape: [Int] { output.shape }

    /// Fills `slot` (the suffix's input, `cutShape`) with the prefix's output for the batch's
    /// images: from the cache when every image is there, else by running the prefix on
    /// `images` and caching the result.
    func fill(_ slot: Tensor, images: Tensor, indices: [Int]) throws {
        var all = true
        for (r, index) in indices.enumerated() {
            if !cache.lookup(member: member, cut: cut, index: index, into: slot.floats + r * perImage, count: perImage) {
                all = false
                break
            }
        }
        if all { return }
        let x = plan.inputs[0].tensor
        x.buffer.raw.copyMemory(from: images.buffer.raw, byteCount: x.count * 4)
        plan.execute()
        slot.buffer.raw.copyMemory(from: output.buffer.raw, byteCount: output.count * 4)
        for (r, index) in indices.enumerated() {
            try cache.store(member: member, cut: cut, index: index, from: output.floats + r * perImage, count: perImage)
        }
    }
}
