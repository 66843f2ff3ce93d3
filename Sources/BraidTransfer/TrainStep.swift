import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

/// One training step (forward, softmax cross-entropy, backward, SGD update) of a model with
/// a new K-class head on random data, for timing against other frameworks.
public final class TrainStep {
    public let units: Int
    public let frozenDepth: Int
    public let trainableParameters: Int
    let plan: TrainingPlan
    let optimizer = SGD(momentum: 0.9, weightDecay: 5e-4)
    let labels: [Int]

    /// `trainFraction` of the backbone's layer units (the last ones) train; the rest freeze.
    /// With `maxMemory` (bytes), throws `MemoryLimitError` before allocating the training
    /// plan if it (with the weights and the SGD momentum) would need more.
    public init(graph original: Graph, inputShape: [Int], classes: Int, trainFraction: Double, seed: UInt64 = 1,
                maxMemory: Int? = nil) throws {
        guard let input = original.feedInputs.first else { throw TrainingError("the model has no input") }
        let cut = try original.findFeatureCut()
        let probe = Executor(graph: Graph(name: original.name, inputs: original.inputs,
                                          outputs: [ValueDecl(name: cut.feature, dtype: .float32, shape: nil)],
                                          initializers: original.initializers, nodes: original.nodes))
        let featureShape = try probe.plan(for: [input.name: ([1] + inputShape.dropFirst(), input.dtype)]).values[cut.feature]?.shape ?? []
        let featureSize = cut.needsPooling ? featureShape[1] : featureShape.dropFirst().reduce(1, *)
        let graph = original.replacingHead(cut: cut, classes: classes, featureSize: featureSize, seed: seed)
        let all = graph.layerUnits.filter { !$0.parameters.contains { $0.hasPrefix("head.") } }.count
        let depth = all - Int((Double(all) * trainFraction).rounded())
        let setup = try graph.trainingSetup(freezeDepth: depth)
        if let limit = maxMemory {
            let need = try TrainingPlan.memoryNeeded(graph: setup.graph, output: "logits", trainable: setup.trainable,
                                                     feeds: [input.name: inputShape])
            let momentum = setup.trainable.reduce(0) { $0 + (setup.graph.initializers[$1]?.buffer.byteCount ?? 0) }
            if need.total + momentum > limit {
                throw MemoryLimitError(needed: need.total + momentum, limit: limit,
                                       detail: "training plan \(formatBytes(need.plannedBytes + need.constantBytes)) + weights \(formatBytes(need.weightBytes)) + momentum \(formatBytes(momentum)) at input \(inputShape)")
            }
        }
        plan = try TrainingPlan.make(graph: setup.graph, output: "logits", trainable: setup.trainable,
                                     feeds: [input.name: inputShape])
        units = all
        frozenDepth = depth
        trainableParameters = plan.params.values.reduce(0) { $0 + $1.count }
        var rng = SplitMix64(seed: seed)
        let x = plan.inputs[0].tensor
        for i in 0..<x.count { x.floats[i] = rng.uniform(-1, 1) }
        labels = (0..<inputShape[0]).map { _ in Int(rng.next() % UInt64(classes)) }
    }

    /// Runs one step; returns the loss.
    @discardableResult
    public func step() -> Float {
        plan.forward()
        let loss = softmaxCrossEntropy(logits: plan.output, labels: labels, grad: plan.outputGrad)
        plan.backward()
        optimizer.step(params: plan.params, grads: plan.grads, lr: 0.01)
        return loss
    }
}
