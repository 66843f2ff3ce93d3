import BraidGraph
import BraidTensor
import Foundation

/// A model loaded from any supported file (ONNX, `.keras`, `.h5`), ready to run on Braid's
/// CPU executor.
///
/// ```swift
/// let model = try Model(contentsOf: "resnet18.onnx")
/// let x = Tensor(zeros: [8, 3, 224, 224])
/// let logits = try model.run(x)            // [8, 1000]
/// ```
///
/// The graph is optimised for execution once (constants and batch norms folded, dead code
/// dropped, convolution epilogues fused); buffers are planned once per set of input shapes
/// and reused. A `Model` is not safe to run from several threads at once.
public final class Model {
    /// The file the model was loaded from (nil for a graph built in memory).
    public let path: String?
    /// The imported graph, as the file describes it (not yet optimised).
    public private(set) var graph: Graph
    /// Cap in bytes on the planned buffers of one run; nil: no cap.
    public var memoryLimit: Int? {
        didSet { executor?.memoryLimit = memoryLimit }
    }
    private var executor: Executor?

    /// Loads `path` (`.onnx`, `.h5`, `.hdf5`, `.keras`).
    ///
    /// - Throws: `ModelLoadError` when the file is missing or of an unknown format; the
    ///   importers' errors (`ONNXError`, `KerasError`, `GraphError`) naming the node or layer
    ///   Braid cannot translate.
    public init(contentsOf path: String) throws {
        self.path = path
        self.graph = try ModelFile.load(path: path)
    }

    /// Wraps a graph built or transformed in memory.
    public init(graph: Graph) {
        self.path = nil
        self.graph = graph
    }

    /// The inputs a run must feed (name, element type, declared shape; a symbolic dim such as
    /// the batch `N` is `Dim.symbol`).
    public var inputs: [ValueDecl] { graph.feedInputs }
    /// The outputs a run returns, in the file's order.
    public var outputs: [ValueDecl] { graph.outputs }
    /// Metadata the importer kept (ONNX `metadata_props` as `meta.<key>`, producer names).
    public var metadata: [String: String] { graph.metadata }

    /// Runs the model on `feeds` (one tensor per input name) and returns every output by name.
    ///
    /// A graph exported at batch 1 (PyTorch's dynamo exporter) is generalised to the batch fed.
    ///
    /// - Throws: `GraphError` naming the input or node when a feed is missing or of the wrong
    ///   shape or type; `MemoryLimitError` when the plan needs more than `memoryLimit`.
    public func run(_ feeds: [String: Tensor]) throws -> [String: Tensor] {
        if graph.unitBatchInputs.contains(where: { feeds[$0].map { $0.shape.first != 1 } ?? false }) {
            graph = try Passes.generalizeBatch(graph, sampleShapes: feeds.mapValues(\.shape))
            executor = nil
        }
        if executor == nil {
            let e = Executor(graph: try Passes.optimizeForExecution(graph))
            e.memoryLimit = memoryLimit
            executor = e
        }
        return try executor!.run(feeds)
    }

    /// Runs a model with one input and returns its first output.
    ///
    /// - Throws: `ModelLoadError` when the model takes more than one input; otherwise as
    ///   `run(_:)` with a dictionary.
    public func run(_ input: Tensor) throws -> Tensor {
        guard let only = inputs.first, inputs.count == 1 else {
            throw ModelLoadError("\(path ?? graph.name): the model takes \(inputs.count) inputs (\(inputs.map(\.name).joined(separator: ", "))); feed them by name")
        }
        let out = try run([only.name: input])
        guard let first = outputs.first, let y = out[first.name] else {
            throw ModelLoadError("\(path ?? graph.name): the model has no output")
        }
        return y
    }

    /// Writes the model to `path` in the format its extension names (see `ModelFile.save`).
    /// The graph is first optimised for inference (constants and batch norms folded); the
    /// model's stored metadata is kept unless `options.metadata` gives its own.
    public func save(to path: String, options: ModelFile.SaveOptions = ModelFile.SaveOptions()) throws {
        var o = options
        if o.metadata.isEmpty, let source = self.path { o.metadata = try ModelFile.storedMetadata(path: source) }
        try ModelFile.save(try Passes.optimizeForInference(graph), to: path, options: o)
    }
}
