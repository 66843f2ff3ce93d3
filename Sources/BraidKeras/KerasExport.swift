import BraidGraph
import BraidTensor
import BraidHDF5
import Foundation
import ZIPFoundation

/// The Keras release whose file layout the exporter writes (`keras_version` in the files).
public let kerasExportVersion = "3.15.1"

/// Why a graph cannot be written as a Keras model: every node without a Keras layer (name,
/// IR op as the importer called it, and the reason), or a file problem.
public struct KerasExportError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var unmapped: [(node: String, op: String, reason: String)]
    public var message: String?

    public var description: String {
        if let message { return "\(file): \(message)" }
        let list = unmapped.map { "  \($0.node) (\($0.op)): \($0.reason)" }.joined(separator: "\n")
        return "\(file): \(unmapped.count) \(unmapped.count == 1 ? "op has" : "ops have") no Keras layer:\n\(list)"
    }
}

/// Writes `graph` as a Keras 3 model that `keras.saving.load_model` loads: a `.keras` zip
/// (config.json, metadata.json, model.weights.h5) or, for `.h5`/`.hdf5`, the legacy HDF5
/// layout Keras 3's `model.save("x.h5")` writes.
///
/// The model is Functional, one layer per IR op (or per fused group: a conv and its bias
/// add, a MatMul and its bias add become one layer). An op no Keras layer computes (erf, a
/// reshape across the batch axis, a gather, a max pool with explicit padding...) becomes a
/// Keras 3 operation node, the `keras.ops` call a functional config records (never a
/// Lambda); see `operationWriters`. Inputs and outputs keep the graph's
/// shapes and layout: a graph imported from Keras takes `[N, H, W, C]` as it did; an NCHW
/// graph imported from ONNX takes `[N, C, H, W]` and a Permute layer moves it to Keras's
/// channels-last layout inside. Transposes that only change layout cost no layer.
///
/// Each output's last layer is named after the graph output, so the file's outputs read
/// back under the graph's names (unless another layer already holds the name).
///
/// `inputShapes` gives sizes for symbolic input dimensions other than the batch (the
/// exporter plans the graph once to learn every shape; the batch defaults to 1).
/// `metadata` (Braid's facts about the model, e.g. an ensemble's classes and preprocessing)
/// is stored where Keras ignores it and `kerasFileMetadata(path:)` reads it back: the root
/// attribute `braid_metadata` of an `.h5`, the `braid_metadata` object of a `.keras`'s
/// metadata.json.
/// Throws `KerasExportError` listing every op that has neither a Keras layer nor a Keras
/// operation; nothing is written then. The file is written under a temporary name and renamed into place.
public func exportKeras(_ graph: Graph, to path: String, inputShapes: [String: [Int]] = [:],
                        metadata: [String: String] = [:]) throws {
    let url = URL(fileURLWithPath: path)
    let ext = url.pathExtension.lowercased()
    guard ["keras", "h5", "hdf5"].contains(ext) else {
        throw KerasExportError(file: path, unmapped: [], message: "unknown extension '.\(ext)' (use .keras, .h5 or .hdf5)")
    }
    let model = try buildKerasModel(graph, path: path, inputShapes: inputShapes)
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    defer { try? FileManager.default.removeItem(at: tmp) }
    do {
        if ext == "keras" {
            try writeKerasZip(model, to: tmp, metadata: metadata)
        } else {
            try hdf5Lock.withLock { try writingHDF5 { try writeLegacyH5(model, to: tmp.path, metadata: metadata) } }
        }
        try commitTemporaryFile(tmp.path, to: path)
    } catch let e as KerasExportError {
        throw e
    } catch {
        throw KerasExportError(file: path, unmapped: [], message: "cannot write: \(error)")
    }
}

/// IR ops whose Keras layers treat Keras axis 0 as the batch (they reshape the rest).
private let batchBoundKeys: Set<String> = ["reshape", "flatten", "squeeze", "unsqueeze", "expand"]

/// The layers of a whole model, ready to serialise.
struct KerasModel {
    var name: String
    var layers: [KLayer]
    var inputs: [String]
    var outputs: [XTensor]
}

/// Plans the graph for its shapes, then translates node by node.
func buildKerasModel(_ graph: Graph, path: String, inputShapes: [String: [Int]]) throws -> KerasModel {
    var feeds: [String: (shape: [Int], dtype: DType)] = [:]
    for d in graph.feedInputs {
        if let s = inputShapes[d.name] { feeds[d.name] = (s, d.dtype); continue }
        guard let dims = d.shape else {
            throw KerasExportError(file: path, unmapped: [], message: "input '\(d.name)' has no declared shape: pass inputShapes")
        }
        var shape: [Int] = []
        for (i, dim) in dims.enumerated() {
            if let v = dim.value { shape.append(v) } else if i == 0 { shape.append(1) } else {
                throw KerasExportError(file: path, unmapped: [],
                                       message: "input '\(d.name)' has symbolic dimension '\(dim)': pass its size in inputShapes")
            }
        }
        feeds[d.name] = (shape, d.dtype)
    }
    let plan: Plan
    do { plan = try Executor(graph: graph).plan(for: feeds) } catch {
        throw KerasExportError(file: path, unmapped: [], message: "cannot plan the graph: \(error)")
    }
    // A second plan at batch 2 tells which axes scale with a symbolic batch (operation
    // nodes such as Reshape write -1 there); a graph that cannot plan at batch 2 keeps its
    // planned sizes.
    var batch2: [String: PlanValue]?
    let symbolic = graph.feedInputs.filter { inputShapes[$0.name]?.first == nil && $0.shape?.first?.value == nil }
    if !symbolic.isEmpty {
        var feeds2 = feeds
        for d in symbolic { feeds2[d.name]!.shape[0] = 2 }
        batch2 = try? Executor(graph: graph).plan(for: feeds2).values
    }
    let b = ExportBuilder(graph: graph, values: plan.values, valuesAtBatch2: batch2)
    var inputs: [String] = []
    for d in graph.feedInputs {
        guard d.dtype == .float32 else {
            throw KerasExportError(file: path, unmapped: [], message: "input '\(d.name)' is \(d.dtype); Keras export takes float32 inputs")
        }
        inputs.append(b.addInput(d).layer)
    }
    var unmapped: [(node: String, op: String, reason: String)] = []
    for node in graph.nodes where !b.claimed.contains(node.name) {
        // Values computed from constants alone were folded by the planner.
        if node.outputs.allSatisfy({ b.values[$0]?.constant != nil || $0.isEmpty }) { continue }
        b.current = node
        do {
            do {
                guard let writer = writerTable[writerKey(node.op)] else {
                    throw Unmappable(reason: "no Keras layer computes IR op '\(writerKey(node.op))'")
                }
                // Reshaping layers keep Keras's axis 0 as the batch: a value whose batch
                // sits elsewhere (sequence-first attention) needs an operation node.
                if batchBoundKeys.contains(writerKey(node.op)) {
                    for v in [node.inputs[0], node.outputs[0]] where (try b.batchAxis(v)).map({ $0 != 0 }) ?? false {
                        throw Unmappable(reason: "its batch axis is not the first")
                    }
                }
                try writer(b, node)
            } catch let layerFailure as Unmappable {
                // No layer computes it: a Keras 3 operation node may.
                guard let op = operationWriters[writerKey(node.op)] else { throw layerFailure }
                do { try op(b, node) } catch let u as Unmappable {
                    throw Unmappable(reason: "\(layerFailure.reason); as a Keras operation: \(u.reason)")
                }
            }
        } catch let u as Unmappable {
            unmapped.append((node.name, node.sourceOp, u.reason))
            // Stand-ins let later nodes be checked on their own merits.
            for o in node.outputs where !o.isEmpty && b.tensors[o] == nil {
                let r = b.shape(o).count
                b.alias(o, XTensor(layer: "unmapped", shape: b.kerasShape(o, perm: Array(0..<r)), perm: Array(0..<r)))
            }
        }
    }
    b.current = nil
    var outputs: [XTensor] = []
    if unmapped.isEmpty {
        for o in graph.outputs {
            guard let t = b.tensors[o.name] else {
                unmapped.append((o.name, "Output", "the graph output is a constant"))
                continue
            }
            do { outputs.append(try b.plain(t)) } catch let u as Unmappable {
                unmapped.append((o.name, "Output", u.reason))
            }
        }
    }
    guard unmapped.isEmpty else { throw KerasExportError(file: path, unmapped: unmapped, message: nil) }
    let name = graph.name.isEmpty ? "model" : String(graph.name.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" })
    let named = namingOutputs(KerasModel(name: name, layers: b.layers, inputs: inputs, outputs: outputs),
                              after: graph.outputs.map(\.name))
    return KerasModel(name: name, layers: kerasOrder(named.layers, inputs: named.inputs, outputs: named.outputs.map(\.layer)),
                      inputs: named.inputs, outputs: named.outputs)
}

/// Renames the layer computing output `i` to `names[i]` (made Keras-legal) when no other
/// layer holds that name; a layer computing several outputs takes the first one's name,
/// input layers keep theirs.
func namingOutputs(_ m: KerasModel, after names: [String]) -> KerasModel {
    var taken = Set(m.layers.map(\.name))
    let inputLayers = Set(m.inputs)
    var rename: [String: String] = [:]
    var settled: Set<String> = []
    for (t, name) in zip(m.outputs, names) {
        let old = t.layer
        guard !settled.contains(old), !inputLayers.contains(old) else { continue }
        settled.insert(old)
        let new = String(name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" })
        guard !new.isEmpty, new != old, !taken.contains(new) else { continue }
        rename[old] = new
        taken.remove(old)
        taken.insert(new)
    }
    if rename.isEmpty { return m }
    func fix(_ t: XTensor) -> XTensor { var t = t; t.layer = rename[t.layer] ?? t.layer; return t }
    var out = m
    out.layers = m.layers.map { l in
        var l = l
        l.name = rename[l.name] ?? l.name
        l.inputs = l.inputs.map(fix)
        if let op = l.operation {
            l.operation = (op.module, op.args.map { a in if case .tensor(let t) = a { return .tensor(fix(t)) } else { return a } })
        }
        return l
    }
    out.outputs = m.outputs.map(fix)
    return out
}

/// The layers in the order Keras 3 lists `model.layers` (`keras.src.ops.function.map_graph`):
/// by decreasing depth from the outputs, ties by first visit in a depth-first walk from the
/// outputs. Keras's legacy HDF5 loader matches weights by this order and `.keras` weight
/// keys are numbered in it, so the written config follows it. Layers no output depends on
/// are left out, as Keras leaves them out.
func kerasOrder(_ layers: [KLayer], inputs: [String], outputs: [String]) -> [KLayer] {
    let byName = Dictionary(layers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    var firstVisit: [String: Int] = [:]
    var finished: Set<String> = []
    var postOrder: [String] = []
    func visit(_ name: String) {
        guard !finished.contains(name), let l = byName[name] else { return }
        if firstVisit[name] == nil { firstVisit[name] = firstVisit.count }
        for t in l.inputs { visit(t.layer) }
        finished.insert(name)
        postOrder.append(name)
    }
    for o in outputs { visit(o) }
    var depth: [String: Int] = [:]
    for name in postOrder.reversed() {
        let d = depth[name, default: 0]
        depth[name] = d
        for t in byName[name]!.inputs { depth[t.layer] = max(depth[t.layer] ?? 0, d + 1) }
    }
    for i in inputs where depth[i] == nil {
        depth[i] = 0
        firstVisit[i] = -1
    }
    return depth.keys.sorted { a, b in
        depth[a]! != depth[b]! ? depth[a]! > depth[b]! : firstVisit[a]! < firstVisit[b]!
    }.map { byName[$0]! }
}

// MARK: Serialisation

private func tensorRef(_ t: XTensor) -> [String: Any] {
    ["class_name": "__keras_tensor__",
     "config": ["shape": t.shape.map { $0 as Any? ?? NSNull() }, "dtype": "float32", "keras_history": [t.layer, 0, t.index]] as [String: Any]]
}

/// An operation node's argument as Keras serialises call arguments.
private func operationArgument(_ a: OperationArg) -> Any {
    switch a {
    case .tensor(let t): return tensorRef(t)
    case .number(let v): return v
    case .array(let shape, let values, let dtype):
        func nest(_ axis: Int, _ offset: Int) -> Any {
            if axis == shape.count { return dtype == "float32" ? values[offset] as Any : Int(values[offset]) as Any }
            let stride = shape[(axis + 1)...].reduce(1, *)
            return (0..<shape[axis]).map { nest(axis + 1, offset + $0 * stride) }
        }
        return ["class_name": "__numpy__", "config": ["value": nest(0, 0), "dtype": dtype] as [String: Any]]
    }
}

/// The model config as Keras 3 serialises a Functional model.
func modelConfig(_ m: KerasModel) -> [String: Any] {
    let layers: [[String: Any]] = m.layers.map { l in
        var config = l.config
        config["name"] = l.name
        if let (module, args) = l.operation {
            return ["module": module, "class_name": l.className, "config": config, "registered_name": l.className,
                    "name": l.name, "inbound_nodes": [["args": args.map(operationArgument), "kwargs": [String: Any]()]]]
        }
        if l.className == "InputLayer" {
            config["dtype"] = "float32"
            config["sparse"] = false
        } else {
            config["trainable"] = true
            config["dtype"] = "float32"
        }
        var inbound: [[String: Any]] = []
        if !l.inputs.isEmpty {
            let args: Any = l.listInput ? [l.inputs.map(tensorRef)] : [tensorRef(l.inputs[0])]
            inbound = [["args": args, "kwargs": [String: Any]()]]
        }
        return ["module": "keras.layers", "class_name": l.className, "config": config,
                "registered_name": NSNull(), "name": l.name, "inbound_nodes": inbound]
    }
    func refs(_ tensors: [XTensor]) -> Any {
        let r = tensors.map { [$0.layer, 0, $0.index] as [Any] }
        return r.count == 1 ? r[0] : r
    }
    return ["module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": ["name": m.name, "trainable": true, "layers": layers,
                       "input_layers": refs(m.inputs.map { XTensor(layer: $0, shape: [], perm: []) }), "output_layers": refs(m.outputs)] as [String: Any]]
}

private func jsonText(_ object: Any) throws -> String {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}

/// Runs an HDF5 writer, its errors as `KerasError` naming the file and the object.
private func writingHDF5(_ body: () throws -> Void) throws {
    do { try body() } catch let e as HDF5WriteError { throw KerasError(file: e.path, e.detail) }
}

/// Keras 3's legacy `.h5`: root attributes, then `model_weights/<layer>/<layer>/<weight>`
/// with `layer_names` and `weight_names` giving the order.
private func writeLegacyH5(_ m: KerasModel, to path: String, metadata: [String: String]) throws {
    let w = try HDF5Writer(path: path)
    try w.attribute("keras_version", kerasExportVersion)
    if !metadata.isEmpty { try w.attribute(braidMetadataKey, try jsonText(metadata)) }
    try w.attribute("backend", "jax")
    try w.attribute("model_config", try jsonText(modelConfig(m)))
    try w.group("model_weights")
    try w.attribute("keras_version", kerasExportVersion, at: "model_weights")
    try w.attribute("backend", "jax", at: "model_weights")
    let weighted = m.layers.filter { !$0.isOperation }
    try w.attribute("layer_names", weighted.map(\.name), at: "model_weights")
    for l in weighted {
        let g = "model_weights/\(l.name)"
        try w.group(g)
        try w.attribute("weight_names", l.weights.map { "\(l.name)/\($0.name)" }, at: g)
        if !l.weights.isEmpty { try w.group("\(g)/\(l.name)") }
        for (name, t) in l.weights { try w.dataset("\(g)/\(l.name)/\(name)", t) }
    }
    try w.group("model_weights/top_level_model_weights")
    try w.attribute("weight_names", [String](), at: "model_weights/top_level_model_weights")
    try w.close()
}

/// Keras 3's `model.weights.h5`: `layers/<key>/vars/<i>`, keys from the class names.
private func writeWeightsH5(_ m: KerasModel, to path: String) throws {
    let w = try HDF5Writer(path: path)
    try w.group("layers")
    var keys = Keras3Keys()
    // Keras numbers the weights of layers only (`model.layers` leaves operation nodes out).
    for l in m.layers where !l.isOperation {
        let g = "layers/\(keys.next(className: l.className))"
        try w.group(g)
        try w.group("\(g)/vars")
        try w.attribute("name", l.name, at: "\(g)/vars")
        for (i, (_, t)) in l.weights.enumerated() { try w.dataset("\(g)/vars/\(i)", t) }
    }
    try w.group("vars")
    try w.attribute("name", m.name, at: "vars")
    try w.close()
}

private func writeKerasZip(_ m: KerasModel, to url: URL, metadata: [String: String]) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-keras-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let weights = dir.appendingPathComponent("model.weights.h5")
    try hdf5Lock.withLock { try writingHDF5 { try writeWeightsH5(m, to: weights.path) } }
    let formatter = DateFormatter()
    formatter.dateFormat = "yyyy-MM-dd@HH:mm:ss"
    formatter.locale = Locale(identifier: "en_US_POSIX")
    var meta: [String: Any] = ["keras_version": kerasExportVersion, "date_saved": formatter.string(from: Date())]
    if !metadata.isEmpty { meta[braidMetadataKey] = metadata }
    try Data(try jsonText(meta).utf8).write(to: dir.appendingPathComponent("metadata.json"))
    try Data(try jsonText(modelConfig(m)).utf8).write(to: dir.appendingPathComponent("config.json"))
    let archive = try Archive(url: url, accessMode: .create)
    for name in ["metadata.json", "config.json", "model.weights.h5"] {
        try archive.addEntry(with: name, relativeTo: dir, compressionMethod: .deflate)
    }
}
