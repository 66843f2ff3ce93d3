import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

/// Plain training steps on batches the caller gives, with nothing random: no shuffling,
/// no augmentation, no split. This is the check that Braid trains an imported model as
/// another framework does: the same weights, batches and optimiser settings must give
/// the same loss at every step and the same parameters at the end.
public struct StepRun {
    /// SGD settings (PyTorch's rule: L2 weight decay added to the gradient, the first
    /// momentum buffer is the gradient itself).
    public struct Settings: Sendable {
        public var lr: Float = 0.01
        public var momentum: Float = 0.9
        public var weightDecay: Float = 5e-4
        /// Layer units frozen from the input side (0: every layer trains, Braid's `standard`).
        public var freezeDepth = 0
        public init() {}
    }

    /// The loss of each step (computed before that step's update).
    public var losses: [Float]
    /// The trained parameters after the last step, by the model's own initializer names; the
    /// head's are `head.weight` `[K, F]` and `head.bias` `[K]`.
    public var parameters: [String: Tensor]
    /// The name of the classifier node whose weights the head started from.
    public var classifier: String?

    /// Imports `path`, keeps its classifier's weights as the head (the model must already end
    /// in a dense layer with `classes` outputs), and runs `images.shape[0] / batch` SGD steps
    /// over consecutive slices of `images` (`[S * batch, ...]`, already preprocessed as the
    /// model's input) and `labels`.
    ///
    /// - Throws: `TrainingError` naming the file when the model has no dense classifier with
    ///   `classes` outputs, or when shapes disagree.
    public static func run(path: String, classes wanted: Int?, images: Tensor, labels: [Int], batch: Int,
                           settings: Settings, onStep: ((Int, Float) -> Void)? = nil) throws -> StepRun {
        guard batch > 0, images.shape.count >= 2, images.shape[0] % batch == 0, labels.count == images.shape[0] else {
            throw TrainingError("\(path): \(images.shape[0]) images and \(labels.count) labels do not make whole batches of \(batch)")
        }
        let original = try ModelFile.load(path: path)
        guard let input = original.feedInputs.first else { throw TrainingError("\(path): the model has no input") }
        let classes = try wanted ?? original.classifierOutputs(path: path)
        if let bad = labels.first(where: { $0 < 0 || $0 >= classes }) {
            throw TrainingError("\(path): label \(bad) is outside 0..<\(classes), the classifier's classes")
        }
        let sample = Array(images.shape.dropFirst())
        var model = try SourceModel.load(path: path, classes: classes, seed: 0, manifest: [],
                                         inputSize: sample.count == 3 ? inputSize(sample, input: input) : nil)
        try model.adoptClassifier(from: original, classes: classes)
        let setup = try model.graph.trainingSetup(freezeDepth: settings.freezeDepth)
        var shape = images.shape
        shape[0] = batch
        let plan = try TrainingPlan.make(graph: setup.graph, output: "logits", trainable: setup.trainable,
                                         feeds: [model.inputName: shape])
        let optimizer = SGD(momentum: settings.momentum, weightDecay: settings.weightDecay)
        let steps = images.shape[0] / batch
        let slot = plan.inputs[0].tensor
        var losses: [Float] = []
        for s in 0..<steps {
            slot.buffer.raw.copyMemory(from: images.buffer.raw + s * slot.count * 4, byteCount: slot.count * 4)
            plan.forward()
            let loss = softmaxCrossEntropy(logits: plan.output, labels: Array(labels[s * batch..<(s + 1) * batch]),
                                           grad: plan.outputGrad)
            losses.append(loss)
            onStep?(s, loss)
            guard loss.isFinite else {
                throw TrainingError("step \(s): the loss is \(loss) (losses so far: \(losses.map { String(format: "%.6g", $0) }.joined(separator: ", "))); lower the learning rate or check the model's outputs", setting: "lr")
            }
            plan.backward()
            optimizer.step(params: plan.params, grads: plan.grads, lr: settings.lr)
        }
        return StepRun(losses: losses, parameters: plan.params, classifier: model.cut.classifier)
    }

    /// The spatial size of a `[C, H, W]` or `[H, W, C]` sample, as the input is laid out.
    private static func inputSize(_ sample: [Int], input: ValueDecl) -> [Int] {
        let declared = input.shape?.map { $0.value } ?? []
        if declared.count == 4, let c = declared[3], c == sample[2], declared[1] != sample[0] {
            return [sample[0], sample[1]]
        }
        return [sample[1], sample[2]]
    }
}

extension Graph {
    /// The number of outputs of the dense classifier `findFeatureCut` finds.
    func classifierOutputs(path: String) throws -> Int {
        let cut = try findFeatureCut()
        guard let name = cut.classifier, let node = nodes.first(where: { $0.name == name }), node.inputs.count > 1,
              let w = initializers[node.inputs[1]], w.shape.count == 2 else {
            throw TrainingError("\(path): no dense classifier to keep as the head")
        }
        switch node.op {
        case .gemm(_, let transB, _, _): return transB ? w.shape[0] : w.shape[1]
        default: return w.shape[1]
        }
    }
}

extension SourceModel {
    /// Starts the new head from the original classifier's weights (a dense layer with
    /// `classes` outputs: Gemm with either weight layout, or MatMul `[F, K]`, with its bias
    /// from the Gemm or a following Add).
    mutating func adoptClassifier(from original: Graph, classes: Int) throws {
        guard let name = cut.classifier, let node = original.nodes.first(where: { $0.name == name }),
              node.inputs.count > 1, let w = original.initializers[node.inputs[1]], w.shape.count == 2 else {
            throw TrainingError("\(path): no dense classifier to keep as the head")
        }
        let transposed: Bool
        switch node.op {
        case .gemm(_, let transB, _, _): transposed = !transB
        case .matMul: transposed = true
        default: throw TrainingError("\(path): classifier '\(name)' is \(node.sourceOp), not a dense layer")
        }
        let (k, f) = transposed ? (w.shape[1], w.shape[0]) : (w.shape[0], w.shape[1])
        guard k == classes, f == featureSize else {
            throw TrainingError("\(path): classifier '\(name)' maps \(f) features to \(k) classes; expected \(featureSize) to \(classes)")
        }
        let head = graph.initializers["head.weight"]!, bias = graph.initializers["head.bias"]!
        for r in 0..<k { for c in 0..<f { head.floats[r * f + c] = transposed ? w.floats[c * k + r] : w.floats[r * f + c] } }
        var b: Tensor?
        if node.inputs.count > 2, !node.inputs[2].isEmpty { b = original.initializers[node.inputs[2]] }
        if b == nil, let out = node.outputs.first,
           let add = original.nodes.first(where: { n in
               if case .binary(.add) = n.op { return n.inputs.contains(out) }
               return false
           }) {
            b = add.inputs.compactMap { original.initializers[$0] }.first
        }
        if let b {
            guard b.count == k else { throw TrainingError("\(path): classifier '\(name)' has a bias of \(b.count) values for \(k) classes") }
            for i in 0..<k { bias.floats[i] = b.floats[i] }
        } else {
            bias.floats.update(repeating: 0, count: k)
        }
    }

}

extension StepRun {
    /// Writes `losses.json` (the losses, the classifier's name and an index from parameter
    /// name to file) and each trained parameter as `params/<i>.npy` into `directory`.
    public func write(to directory: String) throws {
        let dir = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("params"), withIntermediateDirectories: true)
        var index: [String: String] = [:]
        for (i, (name, t)) in parameters.sorted(by: { $0.key < $1.key }).enumerated() {
            let file = "params/\(i).npy"
            try Npy.write(t, path: dir.appendingPathComponent(file).path)
            index[name] = file
        }
        let obj: [String: Any] = ["losses": losses.map { Double($0) }, "params": index, "classifier": classifier ?? NSNull()]
        try writeAtomically(try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]),
                            to: dir.appendingPathComponent("losses.json").path)
    }
}
