import ArgumentParser
import BraidONNX
import BraidTransfer
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a fine-tuned ensemble (or any model) as one ONNX or Keras file.",
        discussion: """
        A run directory becomes one model with a single `image` input ([N, C, H, W] float32, \
        pixels 0..255, H x W of the run's dataset), each member's preprocessing as graph ops, \
        and outputs `logits` (sum of the members' logits), `probabilities` and each member's \
        logits under its name. Class names and the preprocessing go into the metadata \
        (ONNX metadata_props; for --format h5, the Keras file's `braid_metadata`), so \
        `braid run ensemble.onnx --image a.png` (or ensemble.h5) works. Re-exporting a model \
        file keeps the metadata it carries.

        Examples:
          braid export runs/cls --format onnx --out ensemble.onnx
          braid export runs/cls --format onnx --out m.onnx --member mnist_cnn --opset 13
          braid export runs/cls --format h5 --out ensemble.h5     (or ensemble.keras)
          braid export model.h5 --format onnx --out model.onnx
        """)

    @Argument(help: "A run directory from `braid finetune`, or a model file (.onnx, .h5, .hdf5, .keras).")
    var source: String
    @Option(name: .long, help: "onnx | h5") var format = "onnx"
    @Option(name: .long, help: "Output file.") var out: String
    @Option(name: .long, help: "ONNX opset to write (13...21).") var opset = 17
    @Option(name: .long, help: "Export this member alone (run directories).") var member: String?
    @Option(name: .long, help: "CxHxW of the image input (default: the run's dataset's image size).")
    var imageSize: String?
    @Option(name: .long) var manifest: String?
    @Flag(name: .long, help: "Write ONNX weights to <out>.data beside the model.") var externalData = false
    @Flag(name: .long, help: "Store float weights as float16 (ONNX).") var fp16Weights = false

    func validate() throws {
        guard format == "onnx" || format == "h5" else { throw ValidationError("--format is onnx or h5") }
        guard supportedExportOpsets.contains(opset) else {
            throw ValidationError("--opset \(opset): Braid writes opsets \(supportedExportOpsets.lowerBound)...\(supportedExportOpsets.upperBound)")
        }
    }

    func run() {
        reportingErrors {
            var isDir: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: source, isDirectory: &isDir)
            let kind: ModelFormat = format == "onnx" ? .onnx : .keras
            let options = ModelFile.SaveOptions(opset: opset, fp16Weights: fp16Weights, externalData: externalData)
            let graph: Graph
            if exists && isDir.boolValue {
                let trained = try TrainedRun.load(runDir: source, manifest: try loadManifest(path: manifest))
                graph = try trained.export(to: out, format: kind, image: try imageSize.map(parseImageSize), member: member,
                                           options: options)
            } else {
                guard member == nil else { throw ValidationError("--member applies to run directories") }
                var o = options
                o.metadata = try ModelFile.storedMetadata(path: source)
                o.metadata["converted_from"] = (source as NSString).lastPathComponent
                graph = try Passes.optimizeForInference(try ModelFile.load(path: source))
                try ModelFile.save(graph, to: out, format: kind, options: o)
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
            print("\(source) -> \(out)  (\(graph.outputs.map(\.name).joined(separator: ", ")); \(size) bytes)")
        }
    }
}

/// Parses `CxHxW` (e.g. `1x28x28`).
func parseImageSize(_ s: String) throws -> EnsembleImage {
    let v = s.split(separator: "x").map { Int($0) }
    guard v.count == 3, let c = v[0], let h = v[1], let w = v[2], c == 1 || c == 3, h > 0, w > 0 else {
        throw ValidationError("--image-size '\(s)': expected CxHxW with C 1 or 3 (e.g. 1x28x28)")
    }
    return EnsembleImage(channels: c, height: h, width: w)
}
