import BraidData
import BraidGraph
import BraidKeras
import BraidONNX
import BraidTensor
import Foundation

/// A model that is not an exported ensemble: its metadata lacks the class names or the
/// preprocessing of its image input.
public struct MissingEnsembleMetadata: Error, CustomStringConvertible, Sendable {
    public var path: String
    /// The metadata keys missing or malformed, with what they should hold.
    public var missing: [String]
    public var description: String {
        "\(path): no preprocessing metadata (missing \(missing.joined(separator: ", "))); export the model from a run directory, give its preprocessing, or feed prepared tensors"
    }
}

/// An exported ensemble loaded for classifying image files: its graph and the metadata that
/// says how to feed it and what its classes are called.
public final class EnsembleClassifier {
    public let graph: Graph
    public let info: EnsembleInfo
    let executor: Executor

    /// Loads `path` (.onnx, or a Keras file written by `braid export --format h5`).
    ///
    /// - Throws: `MissingEnsembleMetadata` when the model has no ensemble metadata (class
    ///   names and preprocessing); `ModelLoadError` when it has no `probabilities` output.
    public init(path: String) throws {
        var graph: Graph
        var metadata: [String: String]
        if (path as NSString).pathExtension.lowercased() == "onnx" {
            guard FileManager.default.fileExists(atPath: path) else { throw ModelLoadError("\(path): no such file") }
            // metadata_props are read from the message itself: the importer keeps only short values.
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let model = try data.withUnsafeBytes { try ONNXModelProto(serialized: $0) }
            let dir = (path as NSString).deletingLastPathComponent
            graph = try ONNXImporter(constantsAsInitializers: true).importModel(model, baseDirectory: dir.isEmpty ? "." : dir)
            metadata = graph.metadata
            for p in model.metadataProps { metadata[p.key] = p.value }
        } else {
            graph = try ModelFile.load(path: path)
            metadata = graph.metadata.merging(try kerasFileMetadata(path: path)) { _, stored in stored }
        }
        guard let info = EnsembleInfo(metadata: metadata) else {
            throw MissingEnsembleMetadata(path: path, missing: EnsembleInfo.missing(in: metadata))
        }
        guard graph.outputs.contains(where: { $0.name == EnsembleNames.probabilities }),
              graph.feedInputs.count == 1 else {
            throw ModelLoadError("\(path): expected one image input and a '\(EnsembleNames.probabilities)' output")
        }
        self.graph = graph
        self.info = info
        self.executor = Executor(graph: try Passes.optimizeForExecution(graph))
    }

    /// Reads image files (PNG, JPEG, or .npy holding one `[C, H, W]` or `[H, W]` float32
    /// image in 0...255) into an `[N, C, H, W]` batch at the ensemble's channels and size.
    ///
    /// - Throws: `DataError.corruptImage` naming the first file that fails to decode.
    public func load(_ paths: [String]) throws -> Tensor {
        let (c, h, w) = (info.image.channels, info.image.height, info.image.width)
        let batch = Tensor(zeros: [paths.count, c, h, w])
        for (i, path) in paths.enumerated() {
            let x = try Self.readImage(path)
            let fitted = x.shape[0] > c ? resizeBilinear(convertChannels(x, to: c), height: h, width: w)
                : convertChannels(resizeBilinear(x, height: h, width: w), to: c)
            (batch.floats + i * c * h * w).update(from: fitted.floats, count: c * h * w)
        }
        return batch
    }

    /// The `top` most probable classes of each image in `batch` (`[N, C, H, W]`, 0...255),
    /// most probable first.
    public func classify(_ batch: Tensor, top: Int) throws -> [[(label: String, probability: Float)]] {
        let out = try executor.run([graph.feedInputs[0].name: batch])
        guard let p = out[EnsembleNames.probabilities], p.shape.count == 2, p.shape[1] == info.classes.count else {
            throw ModelLoadError("the model's probabilities do not have \(info.classes.count) classes")
        }
        let k = info.classes.count
        let values = p.floatArray
        return (0..<p.shape[0]).map { i in
            let row = Array(values[(i * k)..<((i + 1) * k)])
            return row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }
                .prefix(max(1, top)).map { (info.classes[$0], row[$0]) }
        }
    }
}

extension EnsembleClassifier {
    /// Checks, before any image is read, that classifying `images` images `batch` at a time
    /// fits in `limit` bytes: the classifier plans once per batch size it meets (full batches
    /// and a smaller last one) and keeps every plan, so each size's planned buffers count,
    /// plus the weights, the folded constants and one batch of decoded images.
    ///
    /// - Throws: `MemoryLimitError` with the parts that add up to the need.
    public func checkMemory(images: Int, batch: Int, limit: Int) throws {
        let input = graph.feedInputs[0].name
        let (c, h, w) = (info.image.channels, info.image.height, info.image.width)
        let sizes = Set([min(batch, images), images % batch].filter { $0 > 0 }).sorted(by: >)
        var planned = 0, fixed = 0
        for n in sizes {
            let estimate = try executor.memoryNeeded([input: (shape: [n, c, h, w], dtype: .float32)])
            planned += estimate.plannedBytes
            fixed = estimate.weightBytes + estimate.constantBytes
        }
        let decoded = (sizes.first ?? 0) * c * h * w * MemoryLayout<Float>.size
        let needed = planned + fixed + decoded
        guard needed <= limit else {
            let shapes = sizes.map { "[\($0), \(c), \(h), \(w)]" }.joined(separator: " and ")
            throw MemoryLimitError(needed: needed, limit: limit,
                                   detail: "planned buffers \(formatBytes(planned)) + weights and folded constants \(formatBytes(fixed))"
                                       + " + decoded images \(formatBytes(decoded)) for image batches \(shapes)")
        }
    }
}

extension EnsembleClassifier {
    /// One image file as `[C, H, W]` in 0...255: PNG, JPEG, or .npy holding a float32
    /// `[C, H, W]` (C 1 or 3) or `[H, W]` image.
    public static func readImage(_ path: String) throws -> Tensor {
        guard (path as NSString).pathExtension.lowercased() == "npy" else { return try ImageCodec.decode(path: path).tensor() }
        let t = try Npy.read(path: path)
        let shape = t.shape.count == 2 ? [1] + t.shape : t.shape
        guard t.dtype == .float32, shape.count == 3, shape[0] == 1 || shape[0] == 3, shape[1] > 0, shape[2] > 0 else {
            throw ModelLoadError("\(path): expected one float32 image [C, H, W] (C 1 or 3) or [H, W] in 0..255, got \(t.dtype) \(t.shape)")
        }
        return t.reshaped(shape)
    }
}

/// The image files named by `arguments`: files as given, folders expanded to the .png, .jpg,
/// .jpeg and .npy files beneath them in sorted order.
public func imageFiles(_ arguments: [String]) throws -> [String] {
    let fm = FileManager.default
    var files: [String] = []
    for a in arguments {
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: a, isDirectory: &isDir) else { throw ModelLoadError("\(a): no such file or folder") }
        guard isDir.boolValue else { files.append(a); continue }
        let found = (fm.enumerator(atPath: a)?.allObjects as? [String] ?? [])
            .filter { ["png", "jpg", "jpeg", "npy"].contains(($0 as NSString).pathExtension.lowercased()) }
            .sorted()
        guard !found.isEmpty else { throw ModelLoadError("\(a): no .png, .jpg or .npy images in this folder") }
        files += found.map { (a as NSString).appendingPathComponent($0) }
    }
    return files
}
