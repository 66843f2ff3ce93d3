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

    /// In-memory budget in bytes (shared with the caches made `sharingBudgetWith` this one).
    public let budget: Int
    /// Bytes this cache holds in memory.
    public private(set) var bytesInMemory = 0
    public private(set) var bytesSpilled = 0
    public private(set) var hits = 0
    public private(set) var misses = 0
    /// Images run through a whole frozen prefix, and images whose prefix output was derived
    /// from a shallower cached cut by running only the layers between.
    public internal(set) var imagesComputed = 0
    public internal(set) var imagesDerived = 0
    /// The prefixes staged so far, per member: the values each computes from the image and
    /// its cuts with their per-image shapes (deeper prefixes of the member start from them).
    var staged: [String: [(data: Set<String>, cuts: [String: [Int]])]] = [:]
    private var entries: [Key: Entry] = [:]
    private let spillPath: String
    private var spill: FileHandle?

    /// `megabytes` of activations stay in memory; later ones go to a file in `spillDirectory`
    /// (the system's temporary directory by default), removed when the cache goes away.
    public init(megabytes: Int = 2048, spillDirectory: String = NSTemporaryDirectory()) {
        budget = max(0, megabytes) << 20
        pool = Pool()
        spillPath = spillDirectory + "/braid-prefix-\(UUID().uuidString).bin"
    }

    /// A cache (for other images, e.g. a validation split) whose in-memory activations count
    /// against `other`'s budget: together the two keep at most that budget in memory.
    public init(sharingBudgetWith other: PrefixCache, spillDirectory: String = NSTemporaryDirectory()) {
        budget = other.budget
        pool = other.pool
        spillPath = spillDirectory + "/braid-prefix-\(UUID().uuidString).bin"
    }

    /// Bytes in memory over every cache sharing one budget.
    final class Pool { var bytes = 0 }
    private let pool: Pool

    deinit {
        pool.bytes -= bytesInMemory
        try? spill?.close()
        try? FileManager.default.removeItem(atPath: spillPath)
    }

    /// Number of cached activations.
    public var count: Int { entries.count }

    public func contains(member: String, cut: String, index: Int) -> Bool {
        entries[Key(member: member, cut: cut, index: index)] != nil
    }

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
        if pool.bytes + count * 4 <= budget {
            entries[key] = .memory(Array(UnsafeBufferPointer(start: from, count: count)))
            bytesInMemory += count * 4
            pool.bytes += count * 4
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
/// values `cuts` that cross into the trained part (one, or several when the cut falls inside
/// a block whose branches rejoin, e.g. a squeeze-excitation); `suffix` takes `cuts` as its
/// inputs and ends in the trained output.
struct PrefixSplit {
    var prefix: Graph
    var suffix: Graph
    var cuts: [String]
    /// The values the prefix computes from the image (the image included).
    var data: Set<String>

    /// Splits `graph` (fed by `input`) into the nodes that depend on a `trainable` parameter
    /// and the data-dependent ones that do not. Nil when nothing frozen reads the image (the
    /// input itself crosses) or the frozen side runs anything stochastic or in training mode,
    /// or a dense product of data: that is one GEMM over the batch, whose rows OpenBLAS sums
    /// differently by position, so an image's cached value would differ in its last bits from
    /// what the whole graph computes for it in another batch order.
    static func find(graph: Graph, input: String, trainable: Set<String>) -> PrefixSplit? {
        var data: Set<String> = [input]
        // Values computed from the image's shape only (Shape, Size and arithmetic on them):
        // torch exports compute Reshape targets so. They are not per-image activations and
        // cannot be cached as such.
        var shapeOnly = Set<String>()
        var trained = trainable
        var prefixNodes: [Node] = [], suffixNodes: [Node] = []
        for n in graph.nodes {
            if n.inputs.contains(where: trained.contains) {
                trained.formUnion(n.outputs)
                suffixNodes.append(n)
            } else if n.inputs.contains(where: data.contains) {
                switch n.op {
                case .dropoutTraining, .batchNormTraining, .gemm, .matMul: return nil
                case .shape, .size: shapeOnly.formUnion(n.outputs)
                default:
                    if n.inputs.filter(data.contains).allSatisfy(shapeOnly.contains) { shapeOnly.formUnion(n.outputs) }
                }
                data.formUnion(n.outputs)
                prefixNodes.append(n)
            } else {
                prefixNodes.append(n)
                suffixNodes.append(n)
            }
        }
        var crossing = Set<String>()
        for n in suffixNodes {
            for v in n.inputs where data.contains(v) && !trained.contains(v) { crossing.insert(v) }
        }
        for o in graph.outputs where data.contains(o.name) && !trained.contains(o.name) { crossing.insert(o.name) }
        guard !crossing.isEmpty, !crossing.contains(input), crossing.isDisjoint(with: shapeOnly) else { return nil }
        let cuts = crossing.sorted()
        let prefix = Passes.removeDeadCode(Graph(name: graph.name + ".prefix", inputs: graph.inputs.filter { $0.name == input },
                                                 outputs: cuts.map { ValueDecl(name: $0, dtype: .float32, shape: nil) },
                                                 initializers: graph.initializers, nodes: prefixNodes))
        let suffix = Graph(name: graph.name + ".suffix", inputs: cuts.map { ValueDecl(name: $0, dtype: .float32, shape: nil) },
                           outputs: graph.outputs, initializers: graph.initializers, nodes: suffixNodes)
        return PrefixSplit(prefix: prefix, suffix: suffix, cuts: cuts, data: data)
    }
}

/// A member's frozen prefix, compiled for one batch shape, and where its outputs are cached.
///
/// When the cache already holds a shallower prefix of the same member, the stage also
/// compiles the layers between that prefix's cuts and its own (`bridge`) and computes its
/// outputs from the cached shallower ones; the same kernels on the same values give the
/// same floats as the whole prefix.
final class PrefixStage {
    let member: String
    let split: PrefixSplit
    let input: String
    let cuts: [String]
    /// The values the prefix computes from the image; its nodes are those producing them.
    let data: Set<String>
    let plan: Plan
    /// The prefix's planned output per cut, and its floats per image.
    let outputs: [Tensor]
    let perImage: [Int]
    let cache: PrefixCache
    let bridge: Bridge?

    /// The layers between a shallower cached prefix's cuts (`from`, the plan's inputs) and
    /// this prefix's cuts that the shallower one does not have (`to`, the plan's outputs).
    struct Bridge {
        let plan: Plan
        let from: [(name: String, slot: Tensor, perImage: Int)]
        let to: [(name: String, value: Tensor, perImage: Int)]
    }

    init(member: String, split: PrefixSplit, input: String, batchShape: [Int], cache: PrefixCache) throws {
        self.member = member
        self.split = split
        self.input = input
        cuts = split.cuts
        data = split.data
        let executor = Executor(graph: split.prefix)
        let plan = try executor.plan(for: [input: (batchShape, .float32)])
        self.plan = plan
        outputs = try split.cuts.map { cut in
            guard let out = plan.outputs.first(where: { $0.name == cut })?.tensor, out.dtype.isFloat,
                  out.shape.first == batchShape[0] else {
                throw TrainingError("the frozen prefix's cut '\(cut)' is not a batch-leading float value")
            }
            return out
        }
        perImage = outputs.map { $0.count / batchShape[0] }
        self.cache = cache
        let known = cache.staged[member] ?? []
        let base = known.filter { $0.data.isStrictSubset(of: split.data) }.max { $0.data.count < $1.data.count }
        bridge = base.flatMap { try? Self.bridge(split: split, from: $0, batch: batchShape[0]) }
        let shapes = Dictionary(uniqueKeysWithValues: zip(cuts, outputs.map { Array($0.shape.dropFirst()) }))
        if !known.contains(where: { $0.data == split.data }) {
            cache.staged[member, default: []].append((split.data, shapes))
        }
    }

    /// The layers of `split`'s prefix past a shallower prefix of the same member (its data
    /// values, and its cuts with per-image shapes), planned for `batch` images. Nil when
    /// nothing lies between.
    static func bridge(split: PrefixSplit, from base: (data: Set<String>, cuts: [String: [Int]]),
                       batch: Int) throws -> Bridge? {
        let from = base.cuts
        let new = split.cuts.filter { from[$0] == nil }
        if new.isEmpty { return nil }
        // The nodes this prefix has beyond the shallower one read, of its values, only its
        // cuts: any other value they read would have crossed the shallower cut too.
        let nodes = split.prefix.nodes.filter { !$0.outputs.contains(where: base.data.contains) }
        let read = Set(nodes.flatMap(\.inputs))
        let inputs = from.keys.filter { read.contains($0) }.sorted()
        let graph = Passes.removeDeadCode(Graph(
            name: split.prefix.name + ".bridge",
            inputs: inputs.map { ValueDecl(name: $0, dtype: .float32, shape: nil) },
            outputs: new.map { ValueDecl(name: $0, dtype: .float32, shape: nil) },
            initializers: split.prefix.initializers, nodes: nodes))
        let plan = try Executor(graph: graph).plan(for: Dictionary(uniqueKeysWithValues: inputs.map {
            ($0, ([batch] + from[$0]!, DType.float32))
        }))
        let slots = try inputs.map { name in
            guard let t = plan.inputs.first(where: { $0.name == name })?.tensor else {
                throw TrainingError("bridge input '\(name)' was not planned")
            }
            return (name: name, slot: t, perImage: t.count / batch)
        }
        let outs = try new.map { name in
            guard let t = plan.outputs.first(where: { $0.name == name })?.tensor, t.shape.first == batch else {
                throw TrainingError("bridge output '\(name)' was not planned")
            }
            return (name: name, value: t, perImage: t.count / batch)
        }
        return Bridge(plan: plan, from: slots, to: outs)
    }

    /// The cut values' shapes for the planned batch, as suffix feeds.
    var cutShapes: [String: [Int]] { Dictionary(uniqueKeysWithValues: zip(cuts, outputs.map(\.shape))) }

    /// Fills `slots` (the suffix's inputs, by name) with the prefix's outputs for the batch's
    /// images: from the cache when every one is there, else by computing them first (which
    /// caches them).
    func fill(_ slots: [(name: String, tensor: Tensor)], images: Tensor, indices: [Int]) throws {
        let targets = cuts.map { cut in slots.first { $0.name == cut }!.tensor }
        if lookup(into: targets, indices: indices) { return }
        try compute(images: images, indices: indices)
        guard lookup(into: targets, indices: indices) else {
            throw TrainingError("the prefix cache lost the activations it just stored")
        }
    }

    /// Copies every cut's cached value for `indices` into rows of `targets`; false at the
    /// first one missing.
    private func lookup(into targets: [Tensor], indices: [Int]) -> Bool {
        for (k, cut) in cuts.enumerated() {
            let n = perImage[k]
            for (r, index) in indices.enumerated() {
                if !cache.lookup(member: member, cut: cut, index: index, into: targets[k].floats + r * n, count: n) {
                    return false
                }
            }
        }
        return true
    }

    /// Computes and caches the prefix's outputs for the first `indices.count` images of
    /// `images` (at most the planned batch): through the bridge when the shallower prefix's
    /// outputs for all of them are cached, else through the whole prefix.
    func compute(images: Tensor, indices: [Int]) throws {
        if let bridge, derive(bridge, indices: indices) {
            for (name, value, m) in bridge.to {
                for (r, index) in indices.enumerated() {
                    try cache.store(member: member, cut: name, index: index, from: value.floats + r * m, count: m)
                }
            }
            cache.imagesDerived += indices.count
            return
        }
        let x = plan.inputs[0].tensor
        let n = indices.count
        let perInput = x.count / x.shape[0]
        precondition(n <= x.shape[0] && images.count >= n * perInput)
        x.buffer.raw.copyMemory(from: images.buffer.raw, byteCount: n * perInput * 4)
        plan.execute()
        for (k, cut) in cuts.enumerated() {
            let out = outputs[k], m = perImage[k]
            for (r, index) in indices.enumerated() {
                try cache.store(member: member, cut: cut, index: index, from: out.floats + r * m, count: m)
            }
        }
        cache.imagesComputed += n
    }

    /// Runs the bridge on the cached shallower outputs of `indices`; false when one is missing.
    private func derive(_ bridge: Bridge, indices: [Int]) -> Bool {
        for (name, slot, m) in bridge.from {
            for (r, index) in indices.enumerated() {
                guard cache.contains(member: member, cut: name, index: index),
                      cache.lookup(member: member, cut: name, index: index, into: slot.floats + r * m, count: m) else {
                    return false
                }
            }
        }
        bridge.plan.execute()
        return true
    }

    /// True when every image of `indices` has every cut value cached.
    func isCached(_ indices: [Int]) -> Bool {
        cuts.allSatisfy { cut in indices.allSatisfy { cache.contains(member: member, cut: cut, index: $0) } }
    }
}
