import BraidData
import BraidGraph
import BraidTensor
import Foundation

extension Finetuner {
    /// Ensemble accuracy on `data` in inference mode, as `evaluateEnsemble` gives it, with
    /// each member that has a cached frozen prefix reading that prefix's output for `data`'s
    /// images from `cache` (computing it on a miss) and running only the rest of its graph.
    /// `cache` must hold activations of `data` alone (its keys are `data`'s indices).
    func evaluateEnsemble(on data: any ImageDataset, prefixCache cache: PrefixCache) throws -> Evaluation {
        let k = classes.count, batchSize = options.batch
        struct Runner {
            var stage: PrefixStage?
            var slots: [(name: String, tensor: Tensor)]
            var executor: Executor
            var input: String
        }
        let runners = try members.map { m -> Runner in
            guard let trained = m.prefix else {
                return Runner(stage: nil, slots: [], executor: Executor(graph: m.model.graph), input: m.model.inputName)
            }
            let stage = try PrefixStage(member: m.model.name, split: trained.split, input: trained.input,
                                        batchShape: m.model.spec.batchShape(batchSize), cache: cache)
            let graph = m.model.graph
            let suffix = Passes.removeDeadCode(Graph(
                name: graph.name + ".suffix", inputs: stage.cuts.map { ValueDecl(name: $0, dtype: .float32, shape: nil) },
                outputs: graph.outputs, initializers: graph.initializers,
                nodes: graph.nodes.filter { !$0.outputs.contains(where: stage.data.contains) }))
            let slots = stage.cutShapes.sorted { $0.key < $1.key }.map { (name: $0.key, tensor: Tensor(zeros: $0.value)) }
            return Runner(stage: stage, slots: slots, executor: Executor(graph: suffix), input: m.model.inputName)
        }
        var result = Evaluation(classes: k)
        let loader = try BatchLoader(dataset: data, specs: members.map(\.model.spec), batchSize: batchSize,
                                     shuffle: false, dropLast: false, seed: 0)
        let it = loader.epoch(0)
        var sum = [Float](repeating: 0, count: batchSize * k)
        let softmaxVote = options.vote == .softmax && members.count > 1
        while let batch = try it.next() {
            let n = batch.labels.count
            for i in 0..<(n * k) { sum[i] = 0 }
            for (j, r) in runners.enumerated() {
                var feeds: [String: Tensor] = [:]
                if let stage = r.stage {
                    try stage.fill(r.slots, images: batch.inputs[j], indices: batch.indices)
                    for (name, t) in r.slots {
                        if n == t.shape[0] { feeds[name] = t; continue }
                        let rows = Tensor(zeros: [n] + t.shape.dropFirst())
                        rows.buffer.raw.copyMemory(from: t.buffer.raw, byteCount: rows.count * 4)
                        feeds[name] = rows
                    }
                } else {
                    feeds[r.input] = batch.inputs[j]
                }
                guard let logits = try r.executor.run(feeds)["logits"] else {
                    throw GraphError(node: nil, "member has no 'logits' output")
                }
                sum.withUnsafeMutableBufferPointer { votes in
                    for row in 0..<n {
                        addVote(logits.floats + row * k, k, into: votes.baseAddress! + row * k, softmax: softmaxVote)
                    }
                }
            }
            for row in 0..<n {
                var best = 0
                for c in 1..<k where sum[row * k + c] > sum[row * k + best] { best = c }
                result.add(predicted: best, label: batch.labels[row])
            }
        }
        return result
    }
}
