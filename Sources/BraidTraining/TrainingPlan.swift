import BraidGraph
import BraidTensor
import Foundation

/// A graph compiled for training at one input shape: a forward pass that keeps what the
/// backward needs, and a backward pass that fills gradient buffers for the trainable
/// parameters.
///
/// Trainable parameters are the graph's own initializer tensors, updated in place by an
/// optimiser; frozen initializers stay plan-time constants, so work that depends only on
/// them is done once. Nodes none of whose inputs depends on a trainable parameter get no
/// backward step and no gradient buffer: a frozen prefix costs a forward pass only.
public final class TrainingPlan {
    /// Input slots to fill before `forward()`, in the order of the graph's feed inputs.
    public let inputs: [(name: String, tensor: Tensor)]
    /// The value trained against (e.g. logits `[N, K]`) after `forward()`.
    public let output: Tensor
    /// Where the loss's gradient with respect to `output` goes before `backward()`.
    public let outputGrad: Tensor
    /// Trainable parameters by name (the graph's tensors) and their gradients.
    public let params: [String: Tensor]
    public let grads: [String: Tensor]
    /// Every value the forward pass computed, by name (for taps and tests).
    public let values: [String: Tensor]

    private let forwardSteps: [() -> Void]
    private let backwardSteps: [() -> Void]
    private let gradBuffers: [Tensor]
    private let retained: [TensorBuffer]

    init(inputs: [(String, Tensor)], output: Tensor, outputGrad: Tensor, params: [String: Tensor],
         grads: [String: Tensor], values: [String: Tensor], forward: [() -> Void],
         backward: [() -> Void], gradBuffers: [Tensor], retained: [TensorBuffer]) {
        self.inputs = inputs.map { (name: $0.0, tensor: $0.1) }
        self.output = output; self.outputGrad = outputGrad
        self.params = params; self.grads = grads; self.values = values
        self.forwardSteps = forward; self.backwardSteps = backward
        self.gradBuffers = gradBuffers; self.retained = retained
    }

    /// Number of nodes that run backward.
    public var backwardStepCount: Int { backwardSteps.count }

    public func forward() { for s in forwardSteps { s() } }

    /// Zeroes every gradient except `outputGrad`, then runs the backward steps.
    public func backward() {
        for g in gradBuffers where g.buffer !== outputGrad.buffer {
            g.buffer.raw.initializeMemory(as: UInt8.self, repeating: 0, count: g.count * 4)
        }
        for s in backwardSteps { s() }
    }

    /// Compiles `graph` for training with `feeds` shapes, differentiating `output` with
    /// respect to the initializers named in `trainable`.
    public static func make(graph: Graph, output: String, trainable: Set<String>,
                            feeds: [String: [Int]]) throws -> TrainingPlan {
        try compile(graph: graph, output: output, trainable: trainable, feeds: feeds, allocate: true).plan!
    }

    /// What `make` with the same arguments would hold, worked out without allocating the
    /// planned buffers: `plannedBytes` counts input slots, every forward value the backward
    /// keeps and the gradient buffers (backward scratch space is not included); weights are
    /// the graph's initializers.
    public static func memoryNeeded(graph: Graph, output: String, trainable: Set<String>,
                                    feeds: [String: [Int]]) throws -> MemoryEstimate {
        try compile(graph: graph, output: output, trainable: trainable, feeds: feeds, allocate: false).estimate
    }

    private static func compile(graph: Graph, output: String, trainable: Set<String>, feeds: [String: [Int]],
                                allocate: Bool) throws -> (plan: TrainingPlan?, estimate: MemoryEstimate) {
        var plannedBytes = 0, constantBytes = 0
        let weightBytes = graph.initializers.values.reduce(0) { $0 + $1.buffer.byteCount }
        func bytes(_ shape: [Int], _ dtype: DType) -> Int { max(shape.reduce(1, *) * dtype.storageStride, 64) }
        var values: [String: PlanValue] = [:]
        var tensors: [String: Tensor] = [:]
        var requiresGrad = Set<String>()
        var retained: [TensorBuffer] = []
        for (name, t) in graph.initializers {
            if trainable.contains(name) {
                guard t.dtype.isFloat else {
                    throw GraphError(node: nil, "parameter '\(name)' is \(t.dtype), only float32 parameters train")
                }
                values[name] = PlanValue(shape: t.shape, dtype: t.dtype)
                requiresGrad.insert(name)
            } else {
                values[name] = PlanValue(shape: t.shape, dtype: t.dtype, constant: t)
            }
            tensors[name] = t
        }
        for name in trainable where graph.initializers[name] == nil {
            throw GraphError(node: nil, "no parameter named '\(name)' to train")
        }
        var inputs: [(String, Tensor)] = []
        for d in graph.feedInputs {
            guard let shape = feeds[d.name] else {
                throw GraphError(node: nil, "missing input '\(d.name)'")
            }
            plannedBytes += bytes(shape, d.dtype)
            values[d.name] = PlanValue(shape: shape, dtype: d.dtype)
            guard allocate else { continue }
            let t = Tensor(zeros: shape, dtype: d.dtype)
            retained.append(t.buffer)
            tensors[d.name] = t
            inputs.append((d.name, t))
        }
        var forward: [() -> Void] = []
        var differentiable: [(node: Node, ins: [PlanValue?], outs: [PlanValue], outTensors: [Tensor])] = []
        for node in graph.nodes {
            let planned = try PlannedNode(node, values: values)
            let ins = planned.inputs, lowered = planned.lowered, foldable = planned.foldable
            for o in lowered.outputs {
                if foldable { constantBytes += bytes(o.shape, o.dtype) } else { plannedBytes += bytes(o.shape, o.dtype) }
            }
            var outs: [Tensor] = []
            if foldable || allocate {
                outs = lowered.outputs.map { Tensor(zeros: $0.shape, dtype: $0.dtype) }
                retained += outs.map(\.buffer)
                let run = lowered.make(node.inputs.map { $0.isEmpty ? nil : tensors[$0] }, outs)
                if foldable { run() } else { forward.append(run) }
            }
            let needsGrad = !foldable && node.inputs.contains { requiresGrad.contains($0) }
            var outFacts: [PlanValue] = []
            for (i, o) in lowered.outputs.enumerated() {
                let fact = PlanValue(shape: o.shape, dtype: o.dtype, constant: foldable ? outs[i] : nil)
                outFacts.append(fact)
                guard i < node.outputs.count, !node.outputs[i].isEmpty else { continue }
                values[node.outputs[i]] = fact
                if i < outs.count { tensors[node.outputs[i]] = outs[i] }
                if needsGrad && o.dtype.isFloat { requiresGrad.insert(node.outputs[i]) }
            }
            if needsGrad { differentiable.append((node, ins, outFacts, outs)) }
        }
        guard values[output] != nil else {
            throw GraphError(node: nil, "no value named '\(output)' to train against")
        }
        guard requiresGrad.contains(output) else {
            throw GraphError(node: nil, "'\(output)' does not depend on any trainable parameter")
        }
        for name in requiresGrad { plannedBytes += bytes(values[name]!.shape, .float32) }
        let estimate = MemoryEstimate(plannedBytes: plannedBytes, constantBytes: constantBytes, weightBytes: weightBytes)
        guard allocate, let out = tensors[output] else { return (nil, estimate) }
        // One gradient buffer per value that needs one.
        var gradOf: [String: Tensor] = [:]
        for name in requiresGrad {
            let t = tensors[name]!
            let g = Tensor(zeros: t.shape)
            retained.append(g.buffer)
            gradOf[name] = g
        }
        var backward: [() -> Void] = []
        for (node, ins, outs, outTensors) in differentiable.reversed() {
            let needs = node.inputs.map { requiresGrad.contains($0) }
            let lowered = try lowerBackward(node, ins, outs, needs: needs)
            let inTensors = node.inputs.map { $0.isEmpty ? nil : tensors[$0] }
            let gradOuts = outTensors.indices.map { i -> Tensor? in
                i < node.outputs.count && !node.outputs[i].isEmpty ? gradOf[node.outputs[i]] : nil
            }
            let gradIns = node.inputs.map { $0.isEmpty ? nil : gradOf[$0] }
            backward.append(lowered.make(inTensors, outTensors, gradOuts, gradIns))
        }
        let params = graph.initializers.filter { trainable.contains($0.key) }
        let grads = gradOf.filter { trainable.contains($0.key) }
        let plan = TrainingPlan(inputs: inputs, output: out, outputGrad: gradOf[output]!, params: params,
                                grads: grads, values: tensors, forward: forward, backward: backward,
                                gradBuffers: Array(gradOf.values), retained: retained)
        return (plan, estimate)
    }
}
