import BraidData
import BraidGraph
import BraidRuntime
import BraidTensor
import BraidTraining
import Foundation

/// A pretrained source model prepared for a target task: its graph with a new K-class head,
/// the input it expects, and where its features were cut.
public struct SourceModel {
    /// A short name: the manifest id or the file's stem.
    public var name: String
    public var path: String
    /// The graph ending in `logits` `[N, K]` (batch normalisation in inference form).
    public var graph: Graph
    public var inputName: String
    public var spec: InputSpec
    /// Where each part of `spec` came from (flag, metadata, manifest, default).
    public var inputSources: [InputSpec.Field: SettingSource] = [:]
    public var cut: FeatureCut
    public var featureSize: Int

    /// The backbone's layer units (the new head excluded).
    public var units: [LayerUnit] {
        graph.layerUnits.filter { !$0.parameters.contains { $0.hasPrefix("head.") } }
    }

    /// How this model's input is prepared and where each setting came from.
    public var input: ResolvedInput { ResolvedInput(spec: spec, sources: inputSources) }

    /// Imports `path`, cuts off its classifier (at `featureNode` when given) and attaches a
    /// new linear head for `classes` classes, initialised from `seed`.
    ///
    /// `inputSize` (`[height, width]`) overrides the spatial size the model is fed at; the
    /// graph's declared input takes that size, and planning the backbone at it decides whether
    /// the graph allows it (a fixed Reshape or a Gemm behind a Flatten does not).
    /// `preprocess` overrides the model's normalisation, channel order and layout (see
    /// `ResolvedInput.resolve`). A graph traced at batch 1 (`Graph.unitBatchInputs`) has its batch
    /// generalised (`Passes.generalizeBatch`).
    public static func load(path: String, classes: Int, seed: UInt64, manifest: [ModelManifest],
                            featureNode: String? = nil, inputSize: [Int]? = nil,
                            preprocess: PreprocessOverride? = nil) throws -> SourceModel {
        var original = try ModelFile.load(path: path)
        guard let input = original.feedInputs.first, original.feedInputs.count == 1 else {
            throw TrainingError("\(path): fine-tuning needs a model with exactly one image input")
        }
        let resolved = try ResolvedInput.resolve(path: path, graph: original, manifest: manifest, inputSize: inputSize,
                                        preprocess: preprocess)
        let spec = resolved.spec
        if inputSize != nil || input.shape.map({ $0.dropFirst().contains { $0.value == nil } }) == true {
            original.setDeclaredShape(of: input.name, to: spec.sampleShape, batch: input.shape?.first)
        }
        if !original.unitBatchInputs.isEmpty {
            do {
                original = try Passes.generalizeBatch(original)
            } catch {
                let size = inputSize != nil ? " at input size \(spec.height)x\(spec.width)" : ""
                throw TrainingError("\(path): cannot generalise the batch of 1 it was exported with\(size): \(error)")
            }
        }
        let cut: FeatureCut
        if let featureNode {
            let producer = original.nodes.first { $0.name == featureNode || $0.outputs.contains(featureNode) }
            guard let value = producer.map({ $0.outputs.contains(featureNode) ? featureNode : $0.outputs[0] }) else {
                throw TrainingError("\(path): no node or value named '\(featureNode)' (the feature node)", setting: "featureNode")
            }
            cut = FeatureCut(feature: value, classifier: nil, needsPooling: false)
        } else {
            cut = try original.findFeatureCut()
        }
        // The feature's shape, from a plan at batch 1.
        let probe = Executor(graph: Graph(name: original.name, inputs: original.inputs,
                                          outputs: [ValueDecl(name: cut.feature, dtype: .float32, shape: nil)],
                                          initializers: original.initializers, nodes: original.nodes))
        let plan: Plan
        do {
            plan = try probe.plan(for: [input.name: (spec.batchShape(1), input.dtype)])
        } catch where inputSize != nil {
            throw TrainingError("\(path): the graph does not allow input size \(spec.height)x\(spec.width) (planning it at \(spec.batchShape(1)) failed: \(error))")
        }
        guard let shape = plan.values[cut.feature]?.shape, shape.count >= 2 else {
            throw TrainingError("\(path): cannot find the shape of feature '\(cut.feature)'")
        }
        var finalCut = cut
        if featureNode != nil && shape.count == 4 { finalCut.needsPooling = true }
        let featureSize = finalCut.needsPooling ? shape[1] : shape.dropFirst().reduce(1, *)
        let graph = original.replacingHead(cut: finalCut, classes: classes, featureSize: featureSize, seed: seed)
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        return SourceModel(name: name, path: path, graph: graph, inputName: input.name, spec: spec,
                           inputSources: resolved.sources, cut: finalCut, featureSize: featureSize)
    }

    /// Re-initialises every backbone parameter (training from scratch): convolution and dense
    /// weights He-uniform (bound sqrt(6 / fan_in)), biases zero, batch-norm scale 1, shift 0,
    /// running mean 0 and variance 1.
    public mutating func reinitialize(seed: UInt64) {
        var rng = SplitMix64(seed: seed ^ 0x5EED)
        for node in graph.nodes {
            switch node.op {
            case .conv, .convTranspose, .gemm, .matMul:
                guard node.inputs.count > 1, let w = graph.initializers[node.inputs[1]], w.dtype.isFloat,
                      !node.inputs[1].hasPrefix("head.") else { continue }
                // MatMul weights are [in, out]; convolution and Gemm weights lead with outputs.
                let isMatMul: Bool
                if case .matMul = node.op { isMatMul = true } else { isMatMul = false }
                let fanIn = max(1, isMatMul ? w.shape[0] : w.count / max(w.shape[0], 1))
                let bound = (6 / Float(fanIn)).squareRoot()
                for i in 0..<w.count { w.floats[i] = rng.uniform(-bound, bound) }
                if node.inputs.count > 2, let b = graph.initializers[node.inputs[2]] {
                    b.floats.update(repeating: 0, count: b.count)
                }
            case .batchNorm:
                let fills: [Float] = [1, 0, 0, 1]
                for (k, v) in zip(node.inputs[1...4], fills) {
                    if let t = graph.initializers[k] { t.floats.update(repeating: v, count: t.count) }
                }
            default: continue
            }
        }
    }
}

extension Graph {
    /// Declares input `name` as `[batch] + sample` (the batch dim kept as it was declared, or
    /// symbolic `N`), so plans and exports see the size the model is now fed at.
    mutating func setDeclaredShape(of name: String, to sample: [Int], batch: Dim?) {
        guard let i = inputs.firstIndex(where: { $0.name == name }) else { return }
        inputs[i].shape = [batch ?? .symbol("N")] + sample.map { .fixed($0) }
    }
}
