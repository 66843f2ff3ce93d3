import BraidGraph
import BraidKeras
import BraidONNX
import BraidTensor
import Foundation

/// The version written into exported files and run records.
public let braidVersion = "0.1.0"

/// A model file that could not be read, understood or written.
///
/// Importer errors (`ONNXError`, `KerasError`, `GraphError`) pass through unchanged, since
/// they already name the node or layer; this type covers what concerns the file as a whole.
public struct ModelLoadError: SettingError, Sendable {
    public var description: String
    /// The setting that would fix it (`inputSize`, `layout`, `featureNode`), or nil.
    public var setting: String?
    public init(_ message: String, setting: String? = nil) { description = message; self.setting = setting }
}

/// The file formats Braid reads and writes, told apart by the file's extension.
public enum ModelFormat: String, Sendable, CaseIterable {
    /// ONNX (`.onnx`), weights inline or in external `.data` files beside it.
    case onnx
    /// Keras: the Keras 3 `.keras` zip, or a legacy HDF5 file (`.h5`, `.hdf5`) from Keras 2,
    /// tf.keras or Keras 3.
    case keras

    /// The format of `path` by its extension.
    ///
    /// - Throws: `ModelLoadError` naming the file when the extension is none of `.onnx`,
    ///   `.h5`, `.hdf5`, `.keras`.
    public init(path: String) throws {
        switch (path as NSString).pathExtension.lowercased() {
        case "onnx": self = .onnx
        case "h5", "hdf5", "keras": self = .keras
        default: throw ModelLoadError("\(path): unknown model format (expected .onnx, .h5, .hdf5 or .keras)")
        }
    }
}

/// Reading and writing model files in any supported format.
public enum ModelFile {
    /// Imports a model file (`.onnx`, `.h5`, `.hdf5`, `.keras`) into Braid's graph IR.
    ///
    /// ONNX constants become initializers; Keras models keep their layout (NHWC inputs).
    ///
    /// - Parameter path: the model file; the importer is chosen by its extension.
    /// - Throws: `ModelLoadError` when the file is missing or its extension is unknown;
    ///   the importers' errors naming the node or layer they cannot translate.
    public static func load(path: String) throws -> Graph {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ModelLoadError("\(path): no such file")
        }
        switch try ModelFormat(path: path) {
        case .onnx: return try ONNXImporter(constantsAsInitializers: true).importModel(path: path)
        case .keras: return try importKeras(path: path)
        }
    }

    /// Every node of an ONNX file that Braid cannot import (its op, domain, opset and why),
    /// in graph order, instead of stopping at the first; empty when every node imports, and
    /// for Keras files (whose problems `load` reports).
    ///
    /// - Throws: problems of the file as a whole (not an ONNX model, a cycle, missing
    ///   external data).
    public static func unsupportedNodes(path: String) throws -> [UnsupportedNode] {
        guard try ModelFormat(path: path) == .onnx else { return [] }
        return try ONNXImporter(constantsAsInitializers: true).unsupportedNodes(path: path)
    }

    /// Braid's metadata stored in a model file: an ONNX model's `metadata_props` (read from the
    /// message, whatever their length), or what `exportKeras` stored in a Keras file.
    ///
    /// - Throws: `ModelLoadError` when the file is missing; the importers' errors naming the
    ///   file when it cannot be parsed.
    public static func storedMetadata(path: String) throws -> [String: String] {
        guard try ModelFormat(path: path) == .onnx else { return try kerasFileMetadata(path: path) }
        guard FileManager.default.fileExists(atPath: path) else { throw ModelLoadError("\(path): no such file") }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let model = try data.withUnsafeBytes { try ONNXModelProto(serialized: $0) }
        return Dictionary(model.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
    }

    /// How `save` writes a file.
    public struct SaveOptions: Sendable {
        /// ONNX opset to write (`supportedExportOpsets`, 13...21).
        public var opset = 17
        /// ONNX: store float weights as float16.
        public var fp16Weights = false
        /// ONNX: write weights to `<path>.data` beside the model.
        public var externalData = false
        /// Stored in the file (ONNX `metadata_props`; Keras: the file's `braid_metadata`).
        public var metadata: [String: String] = [:]
        /// Keras: fixed sizes for symbolic input dims, by input name (`[1, 3, 48, 192]`).
        public var inputShapes: [String: [Int]] = [:]

        public init(opset: Int = 17, fp16Weights: Bool = false, externalData: Bool = false,
                    metadata: [String: String] = [:], inputShapes: [String: [Int]] = [:]) {
            self.opset = opset; self.fp16Weights = fp16Weights; self.externalData = externalData
            self.metadata = metadata; self.inputShapes = inputShapes
        }
    }

    /// Writes `graph` to `path` (written to a temporary name and renamed, so a failed write
    /// leaves nothing behind).
    ///
    /// - Parameters:
    ///   - graph: the model; export it as imported or after `Passes.optimizeForInference`.
    ///   - path: the file to write.
    ///   - format: the format to write; nil: the one `path`'s extension names (`.onnx`,
    ///     `.h5`, `.hdf5`, `.keras`).
    ///   - options: opset, weight storage, metadata and (Keras) input shapes.
    /// - Throws: `ModelLoadError` for an unknown extension; the exporters' errors naming the
    ///   node they cannot write.
    public static func save(_ graph: Graph, to path: String, format: ModelFormat? = nil,
                            options: SaveOptions = SaveOptions()) throws {
        switch try format ?? ModelFormat(path: path) {
        case .onnx:
            let exporter = ONNXExporter(opset: options.opset, fp16Weights: options.fp16Weights,
                                        metadata: options.metadata, producerVersion: braidVersion)
            try exporter.write(graph, to: path, externalData: options.externalData)
        case .keras:
            try exportKeras(graph, to: path, inputShapes: options.inputShapes, metadata: options.metadata)
        }
    }
}
