import BraidData
import BraidGraph
import BraidKeras
import Foundation

/// A model's input preparation and where each of its settings came from.
public struct ResolvedInput: Sendable, Equatable {
    public var spec: InputSpec
    public var sources: [InputSpec.Field: SettingSource]

    public init(spec: InputSpec, sources: [InputSpec.Field: SettingSource]) {
        self.spec = spec; self.sources = sources
    }

    /// `spec.report(sources:)`, for metrics.json and `braid inspect --json`.
    public var report: InputReport { spec.report(sources: sources) }

    /// One line: the spec's summary and the source of each field, e.g.
    /// `RGB NCHW 3x224x224, pixels 0-1, mean [...], std [...] (size: default, mean: flag, ...)`.
    public var summary: String {
        let parts = InputSpec.Field.allCases.compactMap { f in sources[f].map { "\(f.rawValue): \($0.rawValue)" } }
        return spec.summary + " (" + parts.joined(separator: ", ") + ")"
    }
}

extension ResolvedInput {
    /// How `path`'s input is prepared, each setting from the most binding place that has it:
    /// `preprocess` and `inputSize` (flags or an experiment config), then the model's own
    /// metadata (`PreprocessOverride(metadata:)`), then its Models/manifest entry (the file's
    /// stem is the id), then Braid's default: the declared input's size, NCHW when its
    /// second dim is 1 or 3 and NHWC when its last is, RGB, pixels 0-1, mean 0, std 1.
    ///
    /// - Throws: `ModelLoadError` naming the file when the input is not 4-D, when its spatial
    ///   dims are symbolic and no `inputSize` or manifest entry gives them,
    ///   when its layout cannot be told, or when a setting does not fit it.
    public static func resolve(path: String, graph: Graph, manifest: [ModelManifest], inputSize: [Int]? = nil,
                                    preprocess: PreprocessOverride? = nil) throws -> ResolvedInput {
        let stem = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let stored: PreprocessOverride?
        do {
            stored = try PreprocessOverride(metadata: try modelMetadata(path: path, graph: graph))
        } catch {
            throw ModelLoadError("\(path): \(error)")
        }
        let given = preprocess ?? PreprocessOverride()
        let layout = given.layout ?? stored?.layout
        var resolved: ResolvedInput
        if let entry = manifest.first(where: { $0.id == stem }) {
            resolved = ResolvedInput(spec: try entry.inputSpec(), sources: [:])
            for f in InputSpec.Field.allCases { resolved.sources[f] = .manifest }
            if let layout, layout != resolved.spec.layout {
                resolved.spec = try declaredSpec(path: path, graph: graph, layout: layout, inputSize: inputSize, base: resolved.spec)
            }
        } else {
            resolved = ResolvedInput(spec: try declaredSpec(path: path, graph: graph, layout: layout, inputSize: inputSize,
                                                            base: InputSpec(channels: 1, height: 1, width: 1)),
                                     sources: [:])
            for f in InputSpec.Field.allCases { resolved.sources[f] = .default }
        }
        for (settings, source) in [(stored, SettingSource.metadata), (given, .flag)] {
            guard let settings else { continue }
            do {
                resolved.spec = try settings.applied(to: resolved.spec)
            } catch {
                throw ModelLoadError("\(path): \(source == .flag ? "" : "metadata: ")\(error)")
            }
            for f in settings.fields { resolved.sources[f] = source }
        }
        if let inputSize {
            guard inputSize.count == 2, inputSize.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
                throw ModelLoadError("\(path): an input size is HEIGHTxWIDTH with each side in 1...4096, got \(inputSize)")
            }
            resolved.spec.height = inputSize[0]
            resolved.spec.width = inputSize[1]
            resolved.sources[.size] = .flag
        }
        return resolved
    }

    /// The input spec for a model file from Models/manifest or its declared input (see
    /// `resolveInput`), ignoring any metadata or flags.
    public static func inputSpec(for path: String, graph: Graph, manifest: [ModelManifest],
                                 inputSize: [Int]? = nil) throws -> InputSpec {
        try resolve(path: path, graph: graph, manifest: manifest, inputSize: inputSize,
                         preprocess: PreprocessOverride()).spec
    }

    /// The model file's metadata: what the ONNX importer kept (`meta.` keys), or what
    /// `exportKeras` stored in a Keras file.
    static func modelMetadata(path: String, graph: Graph) throws -> [String: String] {
        switch (path as NSString).pathExtension.lowercased() {
        case "h5", "hdf5", "keras": return try kerasFileMetadata(path: path)
        default: return graph.metadata
        }
    }

    /// Channels, height and width read from the graph's declared 4-D input in `layout`
    /// (guessed when nil), over `base`'s normalisation.
    static func declaredSpec(path: String, graph: Graph, layout: InputLayout?, inputSize: [Int]?,
                             base: InputSpec) throws -> InputSpec {
        guard let input = graph.feedInputs.first, let dims = input.shape, dims.count == 4 else {
            throw ModelLoadError("\(path): cannot tell the input size (no manifest entry and no 4-D input); it needs an entry in Models/manifest")
        }
        let v = dims.map(\.value)
        let shown = "[" + dims.map(\.description).joined(separator: ", ") + "]"
        let chosen: InputLayout
        if let layout {
            chosen = layout
        } else if let c = v[1], c == 1 || c == 3 {
            chosen = .nchw
        } else if let c = v[3], c == 1 || c == 3 {
            chosen = .nhwc
        } else {
            throw ModelLoadError("\(path): cannot tell whether input '\(input.name)' \(shown) is NCHW or NHWC; give its layout (nchw or nhwc)", setting: "layout")
        }
        let (c, h, w) = chosen == .nchw ? (v[1], v[2], v[3]) : (v[3], v[1], v[2])
        guard let channels = c, channels == 1 || channels == 3 else {
            throw ModelLoadError("\(path): input '\(input.name)' \(shown) read as \(chosen.rawValue) has \(c.map(String.init) ?? "symbolic") channels; expected 1 or 3")
        }
        var spec = base
        spec.channels = channels
        spec.layout = chosen
        if let h, let w {
            spec.height = h; spec.width = w
        } else if let inputSize, inputSize.count == 2 {
            spec.height = inputSize[0]; spec.width = inputSize[1]
        } else {
            throw ModelLoadError("\(path): input '\(input.name)' \(shown) has symbolic spatial dims; give its input size (HEIGHTxWIDTH), or add the model to Models/manifest", setting: "inputSize")
        }
        if spec.mean.count == 3 && channels == 1 || spec.std.count == 3 && channels == 1 {
            throw ModelLoadError("\(path): input '\(input.name)' has 1 channel but the preprocessing has 3 means or stds")
        }
        return spec
    }
}
