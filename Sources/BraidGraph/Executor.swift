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
        for n in graph.nodes {
            for i in Executor.planTimeOperands(n.op) where i < n.inputs.count && fed.contains(n.inputs[i]) {
                planTime.insert(n.inputs[i])
            }
        }
        self.planTimeInputs = planTime
        self.lastUse = last
        self.graphOutputs = Set(graph.outputs.map(\.name))
    }

    /// Operand positions an op needs before the run.
    static func planTimeOperands(_ op: Op) -> [Int] {
        switch op {
        case .reshape, .unsqueeze, .squeeze, .expand, .tile, .split, .reduce: return [1]
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
        let p = try makePlan(feeds, known)
        plans[key] = p
        return p
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
        var values: [String: PlanValue] = [:]
        var tensors: [String: Tensor] = [:]
        for (name, t) in graph.initializers {
            values[name] = PlanValue(shape: t.shape, dtype: t.dtype, constant: t)
            tensors[name] = t
        }
        var pool = BufferPool()
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
            let t = Tensor(shape: f.shape, dtype: f.dtype,
                           buffer: pool.take(f.shape.product * f.dtype.storageStride))
            values[d.name] = PlanValue(shape: f.shape, dtype: f.dtype)
            tensors[d.name] = t
            inputs.append((d.name, t))
        }
        var steps: [(String, String, () -> Void)] = []
        let poison = poisonBuffers
        for (index, node) in graph.nodes.enumerated() {
            let ins: [PlanValue?] = try node.inputs.map { name in
                if name.isEmpty { return nil }
                guard let v = values[name] else {
                    throw GraphError(node: node.name, "input '\(name)' is not produced by any earlier node, input or initializer")
                }
                return v
            }
            let lowered = try lower(node, ins)
            guard lowered.outputs.count >= node.outputs.filter({ !$0.isEmpty }).count else {
                throw GraphError(node: node.name, "\(node.sourceOp) yields \(lowered.outputs.count) outputs, the node names \(node.outputs.count)")
            }
            let inTensors: [Tensor?] = node.inputs.map { $0.isEmpty ? nil : tensors[$0] }
            // Shape and Size read only their input's shape, which the plan already knows.
            let shapeOnly: Bool
            switch node.op {
            case .shape, .size: shapeOnly = true
            default: shapeOnly = false
            }
            let foldable = shapeOnly || ins.allSatisfy { $0 == nil || $0!.constant != nil }
            var outTensors: [Tensor] = []
            for (i, o) in lowered.outputs.enumerated() {
                let bytes = o.shape.product * o.dtype.storageStride
                let buffer = foldable ? TensorBuffer(byteCount: bytes) : pool.take(bytes)
                outTensors.append(Tensor(shape: o.shape, dtype: o.dtype, buffer: buffer))
                _ = i
            }
            let run = lowered.make(inTensors, outTensors)
            if foldable {
                run()
            } else if poison {
                let outs = outTensors
                steps.append((node.name, node.sourceOp, {
                    for t in outs where t.dtype.isFloat { t.floats.update(repeating: .nan, count: t.count) }
                    run()
                }))
            } else {
                steps.append((node.name, node.sourceOp, run))
            }
            for (i, name) in node.outputs.enumerated() where !name.isEmpty && i < outTensors.count {
                let t = outTensors[i]
                values[name] = PlanValue(shape: t.shape, dtype: t.dtype, constant: foldable ? t : nil)
                tensors[name] = t
                if !foldable && lastUse[name] == nil && !graphOutputs.contains(name) {
                    pool.give(t.buffer)
                }
            }
            if !foldable {
                for (i, t) in outTensors.enumerated() where i >= node.outputs.count || node.outputs[i].isEmpty {
                    pool.give(t.buffer)
                }
            }
            for name in Set(node.inputs) where !name.isEmpty && lastUse[name] == index
                && !graphOutputs.contains(name) && values[name]?.constant == nil {
                if let t = tensors[name] { pool.give(t.buffer) }
            }
        }
        var outputs: [(String, Tensor)] = []
        for o in graph.outputs {
            guard let t = tensors[o.name] else {
                throw GraphError(node: nil, "graph output '\(o.name)' is not produced by any node")
            }
            outputs.append((o.name, t))
        }
        return Plan(inputs: inputs, outputs: outputs, steps: steps, values: values,
                    plannedBytes: pool.allocatedBytes,
                    retained: pool.all + tensors.values.map(\.buffer))
    }
}

/// Hands out buffers for intermediate values and takes them back after their last use, so a
/// plan holds roughly the peak of live activations rather than their sum.
struct BufferPool {
    private var free: [TensorBuffer] = []
    private var taken: Set<ObjectIdentifier> = []
    private(set) var allocatedBytes = 0
    private(set) var all: [TensorBuffer] = []

    mutating func take(_ bytes: Int) -> TensorBuffer {
        var best: Int?
        for (i, b) in free.enumerated() where b.byteCount >= bytes {
            if best == nil || b.byteCount < free[best!].byteCount { best = i }
        }
        if let i = best, free[i].byteCount <= max(bytes * 4, 4096) {
            let b = free.remove(at: i)
            taken.insert(ObjectIdentifier(b))
            return b
        }
        let b = TensorBuffer(byteCount: bytes)
        allocatedBytes += b.byteCount
        all.append(b)
        taken.insert(ObjectIdentifier(b))
        return b
    }

    mutating func give(_ b: TensorBuffer) {
        guard taken.remove(ObjectIdentifier(b)) != nil else { return }
        free.append(b)
    }
}
