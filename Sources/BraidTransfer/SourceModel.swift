import BraidData
import BraidGraph
import BraidKeras
import BraidONNX
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
    public var cut: FeatureCut
    public var featureSize: Int

    /// The backbone's layer units (the new head excluded).
    public var units: [LayerUnit] {
        graph.layerUnits.filter { !$0.parameters.contains { $0.hasPrefix("head.") } }
    }

    /// Loads a model file (.onnx, .h5, .hdf5, .keras) into the IR.
    public static func importGraph(path: String) throws -> Graph {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainingError("\(path): no such file")
        }
        switch (path as NSString).pathExtension.lowercased() {
        case "onnx": return try ONNXImporter(constantsAsInitializers: true).importModel(path: path)
        case "h5", "hdf5", "keras": return try importKeras(path: path)
        default: throw TrainingError("\(path): unknown model format (expected .onnx, .h5, .hdf5 or .keras)")
        }
    }

    /// The input spec for a model file: from Models/manifest when the file is one of the
    /// fetched models (its stem is a manifest id), else from the graph's declared input
    /// (NCHW when the second dim is 1 or 3, NHWC otherwise; pixels scaled to 0...1).
    public static func inputSpec(for path: String, graph: Graph, manifest: [ModelManifest]) throws -> InputSpec {
        let stem = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        if let entry = manifest.first(where: { $0.id == stem }) { return try entry.inputSpec() }
        guard let input = graph.feedInputs.first, let dims = input.shape, dims.count == 4 else {
            throw TrainingError("\(path): cannot tell the input size (no manifest entry and no 4-D input); it needs an entry in Models/manifest")
        }
        let v = dims.map { $0.value }
        if let c = v[1], c == 1 || c == 3, let h = v[2], let w = v[3] {
            return InputSpec(channels: c, height: h, width: w, layout: .nchw, scale: 1.0 / 255, mean: [0], std: [1], bgr: false)
        }
        if let h = v[1], let w = v[2], let c = v[3] {
            return InputSpec(channels: c, height: h, width: w, layout: .nhwc, scale: 1.0 / 255, mean: [0], std: [1], bgr: false)
        }
        throw TrainingError("\(path): input '\(input.name)' has symbolic spatial dims; it needs an entry in Models/manifest")
    }

    /// Imports `path`, cuts off its classifier (at `featureNode` when given) and attaches a
    /// new linear head for `classes` classes, initialised from `seed`.
    ///
    /// `inputSize` (`[height, width]`) overrides the spatial size the model is fed at; the
    /// graph's declared input takes that size, and planning the backbone at it decides whether
    /// the graph allows it (a fixed Reshape or a Gemm behind a Flatten does not).
    public static func load(path: String, classes: Int, seed: UInt64, manifest: [ModelManifest],
                            featureNode: String? = nil, inputSize: [Int]? = nil) throws -> SourceModel {
        var original = try importGraph(path: path)
        guard let input = original.feedInputs.first, original.feedInputs.count == 1 else {
            throw TrainingError("\(path): fine-tuning needs a model with exactly one image input")
        }
        var spec = try inputSpec(for: path, graph: original, manifest: manifest)
        if let inputSize {
            guard inputSize.count == 2, inputSize.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
                throw TrainingError("\(path): an input size is HEIGHTxWIDTH with each side in 1...4096, got \(inputSize)")
            }
            spec.height = inputSize[0]
            spec.width = inputSize[1]
            original.setDeclaredShape(of: input.name, to: spec.sampleShape, batch: input.shape?.first)
        }
        let cut: FeatureCut
        if let featureNode {
            let producer = original.nodes.first { $0.name == featureNode || $0.outputs.contains(featureNode) }
            guard let value = producer.map({ $0.outputs.contains(featureNode) ? featureNode : $0.outputs[0] }) else {
                throw TrainingError("\(path): no node or value named '\(featureNode)' for --feature-node")
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
                           cut: finalCut, featureSize: featureSize)
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
