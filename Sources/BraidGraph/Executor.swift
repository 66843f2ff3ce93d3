import BraidTensor
import Foundation

/// A graph compiled for one set of input shapes: buffers allocated once, one closure per
/// node that reads and writes those buffers. Running it allocates nothing but the returned
/// output copies.
public final class Plan {
    /// Planned input tensors, in the order of `Graph.feedInputs`.
    public let inputs: [(name: String, tensor: Tensor)]
    /// Graph outputs after a run (planned buffers or plan-time constants).
    public let outputs: [(name: String, tensor: Tensor)]
    /// The run-time steps with the node each came from, in execution order.
    public let steps: [(node: String, op: String, run: () -> Void)]
    /// Shape and type of every value the plan knows, for inspection.
    public let values: [String: PlanValue]
    /// Bytes held by planned intermediate buffers (excluding weights).
    public let plannedBytes: Int
    /// Every buffer the steps touch: kernels capture raw pointers, so the plan owns them.
    private let retained: [TensorBuffer]

    init(inputs: [(String, Tensor)], outputs: [(String, Tensor)],
         steps: [(String, String, () -> Void)], values: [String: PlanValue], plannedBytes: Int,
         retained: [TensorBuffer]) {
        self.inputs = inputs.map { (name: $0.0, tensor: $0.1) }
        self.outputs = outputs.map { (name: $0.0, tensor: $0.1) }
        self.steps = steps.map { (node: $0.0, op: $0.1, run: $0.2) }
        self.values = values
        self.plannedBytes = plannedBytes
        self.retained = retained
    }

    /// Runs every step once on whatever the input tensors hold.
    public func execute() {
        for s in steps { s.run() }
    }
}

/// Runs a graph on the CPU, planning once per distinct set of input shapes and reusing
/// that plan on later runs with the same shapes.
public final class Executor {
    public let graph: Graph
    private var plans: [[Int]: Plan] = [:]
    private let lastUse: [String: Int]
    private let graphOutputs: Set<String>

    /// When set, planned buffers are filled with NaN before every step: a kernel that leaves
    /// part of its output unwritten then shows up as NaN in tests.
    public var poisonBuffers = ProcessInfo.processInfo.environment["BRAID_POISON"] == "1"

    /// When set, planning first works out the bytes a plan needs (its buffers plus the
    /// weights) without allocating them, and throws `MemoryLimitError` if they exceed this.
    public var memoryLimit: Int?

    /// Feed inputs that some node reads as an operand decided before the run (a Reshape's
    /// target shape, a Resize's scales...). Their values join the plan key: each distinct
    /// value gets its own plan.
    public let planTimeInputs: Set<String>

    public init(graph: Graph) {
        self.graph = graph
        var last: [String: Int] = [:]
        for (i, n) in graph.nodes.enumerated() {
            for name in n.inputs where !name.isEmpty { last[name] = i }
        }
        let fed = Set(graph.feedInputs.map(\.name))
        var planTime = Set<String>()
        var computed: [String] = []
        for n in graph.nodes {
            for i in Executor.planTimeOperands(n.op) where i < n.inputs.count && !n.inputs[i].isEmpty {
                if fed.contains(n.inputs[i]) { planTime.insert(n.inputs[i]) } else { computed.append(n.inputs[i]) }
            }
        }
        planTime.formUnion(Executor.integerFeedsBehind(computed, graph))
        self.planTimeInputs = planTime
        self.lastUse = last
        self.graphOutputs = Set(graph.outputs.map(\.name))
    }

    /// Integer and bool feed inputs from which a plan-time operand is computed (a window
    /// length or crop size fed as a tensor): the walk back from `values` stops at Shape and
    /// Size, which read only shapes, and never takes a float feed, which is data.
    static func integerFeedsBehind(_ values: [String], _ graph: Graph) -> Set<String> {
        var producer: [String: Int] = [:]
        for (i, n) in graph.nodes.enumerated() { for o in n.outputs where !o.isEmpty { producer[o] = i } }
        let feedTypes = Dictionary(graph.feedInputs.map { ($0.name, $0.dtype) }, uniquingKeysWith: { a, _ in a })
        var found = Set<String>(), seen = Set<String>(), stack = values
        while let v = stack.popLast() {
            guard seen.insert(v).inserted, let p = producer[v] else { continue }
            switch graph.nodes[p].op {
            case .shape, .size: continue
            default: break
            }
            for input in graph.nodes[p].inputs where !input.isEmpty {
                if let t = feedTypes[input] {
                    if !t.isFloat { found.insert(input) }
                } else {
                    stack.append(input)
                }
            }
        }
        return found
    }

    /// Operand positions an op needs before the run.
    static func planTimeOperands(_ op: Op) -> [Int] {
        switch op {
        case .reshape, .unsqueeze, .squeeze, .expand, .tile, .split, .reduce: return [1]
        case .cumSum, .cumProd, .topK, .oneHot, .triangle, .compress: return [1]
        case .unique: return [0]
        case .dft, .col2im: return [1, 2]
        case .maxUnpool: return [2]
        case .nonMaxSuppression: return [0, 1, 2, 3, 4]
        case .slice: return [1, 2, 3, 4]
        case .pad: return [1, 3]
        case .resize: return [1, 2, 3]
        case .range: return [0, 1, 2]
        case .constantOfShape: return [0]
        default: return []
        }
    }

    /// Runs the graph. `feeds` maps input names to tensors; every feed input is required.
    /// Returns each graph output by name, as tensors the caller owns.
    public func run(_ feeds: [String: Tensor]) throws -> [String: Tensor] {
        let known = feeds.filter { planTimeInputs.contains($0.key) }
        let plan = try self.plan(for: feeds.mapValues { ($0.shape, $0.dtype) }, values: known)
        for (name, slot) in plan.inputs {
            let t = feeds[name]!
            slot.buffer.raw.copyMemory(from: t.buffer.raw, byteCount: t.count * t.dtype.storageStride)
        }
        plan.execute()
        var result: [String: Tensor] = [:]
        for (name, t) in plan.outputs { result[name] = t.copy() }
        return result
    }

    /// The plan for these input shapes and types, made on first use. `values` gives the
    /// elements of plan-time inputs (see `planTimeInputs`).
    public func plan(for feeds: [String: (shape: [Int], dtype: DType)],
                     values known: [String: Tensor] = [:]) throws -> Plan {
        let feedDecls = graph.feedInputs
        for name in feeds.keys where !feedDecls.contains(where: { $0.name == name }) {
            let known = feedDecls.map(\.name).joined(separator: ", ")
            throw GraphError(node: nil, "unknown input '\(name)' (the model's inputs: \(known))")
        }
        var key: [Int] = []
        for d in feedDecls {
            guard let f = feeds[d.name] else {
                throw GraphError(node: nil, "missing input '\(d.name)' (expected \(describe(d)))")
            }
            key.append(DType.allCases.firstIndex(of: f.dtype)!)
            key.append(f.shape.count)
            key += f.shape
            if planTimeInputs.contains(d.name) {
                guard let v = known[d.name] else {
                    throw GraphError(node: nil, "input '\(d.name)' decides shapes: its value is needed to plan")
                }
                key += v.dtype.isFloat ? v.floatArray.map { Int($0.bitPattern) } : v.intArray.map { Int($0) }
            }
        }
        if let p = plans[key] { return p }
        if let limit = memoryLimit {
            let need = try memoryNeeded(feeds, known)
            if need.total > limit {
                throw MemoryLimitError(needed: need.total, limit: limit,
                                       detail: "planned buffers \(formatBytes(need.plannedBytes)) + weights \(formatBytes(need.weightBytes))"
                                           + " + folded constants \(formatBytes(need.constantBytes)) for input shapes \(describeFeeds(feeds))")
            }
        }
        let p = try makePlan(feeds, known)
        plans[key] = p
        return p
    }

    /// What a plan for these shapes would hold, worked out by lowering every node without
    /// allocating any planned buffer (plan-time constants are still computed).
    public func memoryNeeded(_ feeds: [String: (shape: [Int], dtype: DType)],
                             _ known: [String: Tensor] = [:]) throws -> MemoryEstimate {
        try walk(feeds, known, allocate: false).estimate
    }

    private func describeFeeds(_ feeds: [String: (shape: [Int], dtype: DType)]) -> String {
        feeds.keys.sorted().map { "\($0) [" + feeds[$0]!.shape.map(String.init).joined(separator: ", ") + "]" }
            .joined(separator: ", ")
    }

    private func describe(_ d: ValueDecl) -> String {
        let dims = d.shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "any shape"
        return "\(d.dtype) \(dims)"
    }

    private func checkFeed(_ d: ValueDecl, _ shape: [Int], _ dtype: DType,
                           _ symbols: inout [String: Int]) throws {
        guard dtype == d.dtype || (d.dtype.isFloat == dtype.isFloat && !dtype.isFloat) else {
            throw GraphError(node: nil, "input '\(d.name)': expected \(d.dtype), got \(dtype)")
        }
        guard let dims = d.shape else { return }
        let got = "[" + shape.map(String.init).joined(separator: ", ") + "]"
        guard dims.count == shape.count else {
            throw GraphError(node: nil, "input '\(d.name)': expected shape \(describe(d)), got \(got)")
        }
        for (dim, n) in zip(dims, shape) {
            switch dim {
            case .fixed(let v) where v != n:
                throw GraphError(node: nil, "input '\(d.name)': expected shape \(describe(d)), got \(got)")
            case .symbol(let s):
                if let prev = symbols[s], prev != n {
                    throw GraphError(node: nil, "input '\(d.name)': dimension '\(s)' is \(prev) elsewhere but \(n) here")
                }
                symbols[s] = n
            default: break
            }
        }
    }

    private func makePlan(_ feeds: [String: (shape: [Int], dtype: DType)],
                          _ known: [String: Tensor]) throws -> Plan {
        try walk(feeds, known, allocate: true).plan!
    }

    /// Lowers every node in order, handing out pool slots for intermediate values. With
    /// `allocate` off, only plan-time constants get memory: the pool counts bytes, no step
    /// is made, and the result is the estimate alone.
    private func walk(_ feeds: [String: (shape: [Int], dtype: DType)], _ known: [String: Tensor],
                      allocate: Bool) throws -> (plan: Plan?, estimate: MemoryEstimate) {
        var values: [String: PlanValue] = [:]
        var tensors: [String: Tensor] = [:]
        var slotOf: [String: Int] = [:]
        var weightBytes = 0, constantBytes = 0
        for (name, t) in graph.initializers {
            values[name] = PlanValue(shape: t.shape, dtype: t.dtype, constant: t)
            tensors[name] = t
            weightBytes += t.buffer.byteCount
        }
        var pool = BufferPool(allocates: allocate)
        var inputs: [(String, Tensor)] = []
        var symbols: [String: Int] = [:]
        for d in graph.feedInputs {
            let f = feeds[d.name]!
            try checkFeed(d, f.shape, f.dtype, &symbols)
            if let v = known[d.name] {
                let c = v.copy()
                values[d.name] = PlanValue(shape: c.shape, dtype: c.dtype, constant: c)
                tensors[d.name] = c
                continue
            }
            let slot = pool.take(f.shape.product * f.dtype.storageStride)
            slotOf[d.name] = slot
            values[d.name] = PlanValue(shape: f.shape, dtype: f.dtype)
            if allocate {
                let t = Tensor(shape: f.shape, dtype: f.dtype, buffer: pool.buffer(slot))
                tensors[d.name] = t
                inputs.append((d.name, t))
            }
        }
        var steps: [(String, String, () -> Void)] = []
        let poison = poisonBuffers
        for (index, node) in graph.nodes.enumerated() {
            let planned = try PlannedNode(node, values: values)
            let lowered = planned.lowered, foldable = planned.foldable
            var outTensors: [Tensor?] = []
            var outSlots: [Int?] = []
            for o in lowered.outputs {
                let bytes = o.shape.product * o.dtype.storageStride
                if foldable {
                    let t = Tensor(shape: o.shape, dtype: o.dtype, buffer: TensorBuffer(byteCount: bytes))
                    constantBytes += t.buffer.byteCount
                    outTensors.append(t)
                    outSlots.append(nil)
                } else {
                    let slot = pool.take(bytes)
                    outSlots.append(slot)
                    outTensors.append(allocate ? Tensor(shape: o.shape, dtype: o.dtype, buffer: pool.buffer(slot)) : nil)
                }
            }
            if foldable || allocate {
                let inTensors: [Tensor?] = node.inputs.map { $0.isEmpty ? nil : tensors[$0] }
                let outs = outTensors.map { $0! }
                let run = lowered.make(inTensors, outs)
                if foldable {
                    run()
                } else if poison {
                    steps.append((node.name, node.sourceOp, {
                        for t in outs where t.dtype.isFloat { t.floats.update(repeating: .nan, count: t.count) }
                        run()
                    }))
                } else {
                    steps.append((node.name, node.sourceOp, run))
                }
            }
            for (i, name) in node.outputs.enumerated() where !name.isEmpty && i < lowered.outputs.count {
                let o = lowered.outputs[i]
                values[name] = PlanValue(shape: o.shape, dtype: o.dtype, constant: foldable ? outTensors[i] : nil)
                if let t = outTensors[i] { tensors[name] = t }
                if let slot = outSlots[i] {
                    slotOf[name] = slot
                    if lastUse[name] == nil && !graphOutputs.contains(name) { pool.give(slot) }
                }
            }
            for (i, slot) in outSlots.enumerated() where i >= node.outputs.count || node.outputs[i].isEmpty {
                if let slot { pool.give(slot) }
            }
            for name in Set(node.inputs) where !name.isEmpty && lastUse[name] == index
                && !graphOutputs.contains(name) && values[name]?.constant == nil {
                if let slot = slotOf[name] { pool.give(slot) }
            }
        }
        var outputs: [(String, Tensor)] = []
        for o in graph.outputs {
            guard values[o.name] != nil else {
                throw GraphError(node: nil, "graph output '\(o.name)' is not produced by any node")
            }
            if let t = tensors[o.name] { outputs.append((o.name, t)) }
        }
        var estimate = MemoryEstimate(plannedBytes: pool.allocatedBytes, constantBytes: constantBytes, weightBytes: weightBytes)
        for o in graph.outputs { estimate.outputShapes[o.name] = values[o.name]?.shape }
        guard allocate else { return (nil, estimate) }
        let plan = Plan(inputs: inputs, outputs: outputs, steps: steps, values: values,
                        plannedBytes: pool.allocatedBytes,
                        retained: pool.buffers + tensors.values.map(\.buffer))
        return (plan, estimate)
    }
}

/// The memory a plan holds, in bytes.
public struct MemoryEstimate: Sendable, Equatable {
    /// Buffers for feed inputs and intermediate values (reused after their last use).
    public var plannedBytes: Int
    /// Values computed once at plan time (folded shape chains, constants).
    public var constantBytes: Int
    /// The graph's initializers.
    public var weightBytes: Int
    /// Shape of each graph output for the planned inputs.
    public var outputShapes: [String: [Int]] = [:]
    public var total: Int { plannedBytes + constantBytes + weightBytes }

    public init(plannedBytes: Int, constantBytes: Int, weightBytes: Int) {
        self.plannedBytes = plannedBytes; self.constantBytes = constantBytes; self.weightBytes = weightBytes
    }
}

/// A plan would need more memory than the cap it was given; nothing has been allocated.
public struct MemoryLimitError: Error, CustomStringConvertible, Sendable {
    public var needed: Int
    public var limit: Int
    /// What the figure is made of.
    public var detail: String

    public init(needed: Int, limit: Int, detail: String) {
        self.needed = needed; self.limit = limit; self.detail = detail
    }

    public var description: String {
        "needs \(formatBytes(needed)) (\(detail)), more than the memory limit of \(formatBytes(limit))"
    }
}

/// A byte count in binary units with one decimal ("1.5 GiB", "312.0 KiB", "17 B").
public func formatBytes(_ n: Int) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB"]
    guard n >= 1024 else { return "\(n) B" }
    var v = Double(n) / 1024, u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return String(format: "%.1f %@", v, units[u])
}

/// Parses a size such as `512M`, `2G`, `1.5GiB`, `300k` or a plain byte count (binary
/// multiples: K = 1024). Returns nil for anything else.
public func parseByteSize(_ text: String) -> Int? {
    var s = text.trimmingCharacters(in: .whitespaces).uppercased()
    for suffix in ["IB", "B"] where s.hasSuffix(suffix) && s.count > suffix.count {
        s.removeLast(suffix.count)
        break
    }
    let scale: Double
    switch s.last {
    case "K": scale = 1024
    case "M": scale = 1024 * 1024
    case "G": scale = 1024 * 1024 * 1024
    case "T": scale = 1024 * 1024 * 1024 * 1024
    default: scale = 1
    }
    if scale > 1 { s.removeLast() }
    guard let v = Double(s), v.isFinite, v > 0, v * scale < Double(Int.max) else { return nil }
    return Int(v * scale)
}

/// Hands out buffers for intermediate values and takes them back after their last use, so a
/// plan holds roughly the peak of live activations rather than their sum. Buffers are known
/// by slot number; a pool that does not allocate only counts their bytes.
struct BufferPool {
    let allocates: Bool
    private var sizes: [Int] = []
    private(set) var buffers: [TensorBuffer] = []
    private var free: [Int] = []
    private var taken: Set<Int> = []
    private(set) var allocatedBytes = 0

    init(allocates: Bool = true) { self.allocates = allocates }

    mutating func take(_ bytes: Int) -> Int {
        var best: Int?
        for (i, slot) in free.enumerated() where sizes[slot] >= bytes {
            if best == nil || sizes[slot] < sizes[free[best!]] { best = i }
        }
        if let i = best, sizes[free[i]] <= max(bytes * 4, 4096) {
            let slot = free.remove(at: i)
            taken.insert(slot)
            return slot
        }
        // TensorBuffer rounds small requests up to 64 bytes; count what it will hold.
        let size = max(bytes, 64)
        sizes.append(size)
        if allocates { buffers.append(TensorBuffer(byteCount: size)) }
        allocatedBytes += size
        taken.insert(sizes.count - 1)
        return sizes.count - 1
    }

    func buffer(_ slot: Int) -> TensorBuffer { buffers[slot] }

    mutating func give(_ slot: Int) {
        guard taken.remove(slot) != nil else { return }
        free.append(slot)
    }
}
