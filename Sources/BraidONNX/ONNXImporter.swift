import BraidGraph
import BraidTensor
import Foundation

/// Reads ONNX models into Braid graphs.
///
/// The default-domain opset declared by the model decides how each node is read; attribute
/// defaults and attribute forms that later ONNX versions moved to inputs are resolved here,
/// so the IR sees one form. The result is validated (every value defined once, before use)
/// and returned in topological order.
public struct ONNXImporter: Sendable {
    /// When true, Constant nodes holding float tensors become initializers (trainable
    /// weights) instead of `.constant` nodes; some exporters store every weight that way.
    public var constantsAsInitializers: Bool
    /// When true, the QDQ node groups (DequantizeLinear -> op -> QuantizeLinear) that
    /// onnxruntime's CPU provider runs as integer kernels are read as those kernels, so the
    /// integers match onnxruntime's, and the float convolutions left between quantize steps sum
    /// in onnxruntime's order (`ConvSummation.onnxruntimeCPU`); when false every group is read
    /// as written, in float.
    public var fusesQDQGroups: Bool

    public init(constantsAsInitializers: Bool = false, fusesQDQGroups: Bool = true) {
        self.constantsAsInitializers = constantsAsInitializers
        self.fusesQDQGroups = fusesQDQGroups
    }

    /// Imports the model at `path`; external data is looked up next to it.
    public func importModel(path: String) throws -> Graph {
        let data = try readFile(path)
        let dir = (path as NSString).deletingLastPathComponent
        return try importModel(data: data, baseDirectory: dir.isEmpty ? "." : dir, file: path)
    }

    /// Imports a serialized model. `baseDirectory` is where external data files live (nil:
    /// external data is an error); `file` is only used in error messages.
    public func importModel(data: Data, baseDirectory: String? = nil, file: String? = nil) throws -> Graph {
        do {
            let model = try data.withUnsafeBytes { try ONNXModelProto(serialized: $0) }
            return try importModel(model, baseDirectory: baseDirectory)
        } catch let e as ONNXError {
            throw e.inFile(file)
        } catch let e as GraphError {
            throw ONNXError(file: file, subject: e.node.map { "node '\($0)'" }, e.message)
        }
    }

    /// Imports an already decoded model.
    public func importModel(_ model: ONNXModelProto, baseDirectory: String? = nil) throws -> Graph {
        try importModel(model, baseDirectory: baseDirectory, unsupported: nil)
    }

    /// Every node of the model at `path` that Braid cannot import (unknown op or domain, an
    /// opset outside the supported versions, or attributes and inputs its translation
    /// rejects), in graph order; empty when the whole model imports. A node that fails only
    /// because an input comes from a node already listed is not listed again. Problems of the
    /// file as a whole (not an ONNX model, a cycle, missing external data) still throw.
    public func unsupportedNodes(path: String) throws -> [UnsupportedNode] {
        let data = try readFile(path)
        let dir = (path as NSString).deletingLastPathComponent
        var found: [UnsupportedNode] = []
        do {
            let model = try data.withUnsafeBytes { try ONNXModelProto(serialized: $0) }
            _ = try importModel(model, baseDirectory: dir.isEmpty ? "." : dir, unsupported: { found.append($0) })
        } catch let e as ONNXError {
            throw e.inFile(path)
        } catch let e as GraphError {
            throw ONNXError(file: path, subject: e.node.map { "node '\($0)'" }, e.message)
        }
        return found
    }

    /// With `unsupported` nil the first node that cannot be imported throws; otherwise each is
    /// passed to it and the import goes on without it (the graph returned is then incomplete).
    private func importModel(_ model: ONNXModelProto, baseDirectory: String?,
                             unsupported: ((UnsupportedNode) -> Void)?) throws -> Graph {
        // Protobuf accepts an empty buffer, and garbage can parse as unknown fields only; a
        // real model always states its IR version and has outputs.
        guard model.irVersion >= 1 else {
            throw ONNXError("not an ONNX model (no ir_version; empty or corrupt file)")
        }
        var g = model.graph
        guard !g.outputs.isEmpty else { throw ONNXError("model graph has no outputs") }
        let opset = try defaultOpset(model)
        if let s = g.sparseInitializerNames.first {
            throw ONNXError(subject: "initializer '\(s)'", "sparse initializers are not supported")
        }

        var initializers: [String: Tensor] = [:]
        for t in g.initializers {
            guard initializers[t.name] == nil else {
                throw ONNXError(subject: "initializer '\(t.name)'", "defined twice")
            }
            initializers[t.name] = try t.tensor(baseDirectory: baseDirectory)
        }
        var onnxruntimeOrder = Set<Int>()
        if fusesQDQGroups {
            g = fuseQDQGroups(g, initializers: initializers, opset: opset)
            onnxruntimeOrder = floatConvsBetweenQuantizeSteps(g)
        }
        let inputs = try g.inputs.map { try valueDecl($0, role: "graph input") }
        let outputs = try g.outputs.map { try valueDecl($0, role: "graph output") }

        let order = try topologicalOrder(g, initializers: initializers)
        var used = Set(outputs.map(\.name))
        for n in g.nodes { used.formUnion(n.inputs) }

        var taken = Set(initializers.keys).union(inputs.map(\.name))
        for n in g.nodes { taken.formUnion(n.outputs) }
        var fixedInputShapes: [String: [Int]] = [:]
        let inputTypes = Dictionary(inputs.map { ($0.name, $0.dtype) }, uniquingKeysWith: { a, _ in a })
        var elementTypes: [String: ONNXDataType] = [:]
        for v in g.inputs { if case .tensor(let elem, _) = v.type, let t = ONNXDataType(rawValue: elem) { elementTypes[v.name] = t } }
        for t in g.initializers { if let d = ONNXDataType(rawValue: t.dataType) { elementTypes[t.name] = d } }
        for i in inputs {
            let dims = i.shape?.compactMap(\.value)
            if let dims, dims.count == i.shape?.count { fixedInputShapes[i.name] = dims }
        }
        var nodes: [Node] = []
        // Outputs of nodes that could not be imported (only when collecting them).
        var missing = Set<String>()
        for index in order {
            let p = g.nodes[index]
            let name = p.name.isEmpty ? "\(p.opType)_\(index)" : p.name
            let isDefault = p.domain.isEmpty || p.domain == "ai.onnx"
            // onnxruntime's quantized contrib ops (com.microsoft, version 1) are the one other domain.
            let contrib = p.domain == "com.microsoft" ? microsoftOps[p.opType]?.last : nil
            func skip(_ reason: String, listed: Bool = true) {
                missing.formUnion(p.outputs)
                guard listed else { return }
                let domainOpset = model.opsetImport.last { $0.domain == p.domain }.map { Int($0.version) }
                unsupported?(UnsupportedNode(node: name, op: p.opType, domain: isDefault ? "ai.onnx" : p.domain,
                                             opset: isDefault ? opset : domainOpset, reason: reason))
            }
            // Without a collector the first rejected node throws `message`; with one it is listed.
            func reject(_ message: String, reason: String) throws {
                if unsupported == nil { throw ONNXError(subject: "node '\(name)'", message) }
                skip(reason)
            }
            guard isDefault || contrib != nil else {
                let reason = "only the default ONNX domain and onnxruntime's quantized com.microsoft ops are supported"
                try reject("unsupported op '\(p.opType)' in domain '\(p.domain)' (opset \(opset)); \(reason)", reason: reason)
                continue
            }
            guard let entry = contrib ?? lookupOp(p.opType, opset: opset) else {
                if let first = onnxOpTable[p.opType]?.first?.since {
                    try reject("op '\(p.opType)' (domain 'ai.onnx') at opset \(opset) is outside the supported versions (from opset \(first))",
                               reason: "outside the supported versions (from opset \(first))")
                } else {
                    try reject("unsupported op '\(p.opType)' (domain 'ai.onnx', opset \(opset))", reason: "unsupported op")
                }
                continue
            }
            let t = NodeTranslation(
                proto: p, opset: opset, name: name, used: used,
                initializer: { initializers[$0] },
                declaredShape: { fixedInputShapes[$0] },
                declaredType: { inputTypes[$0] },
                declaredElementType: { elementTypes[$0] },
                freshName: { base in
                    var n = base, k = 1
                    while taken.contains(n) { n = "\(base)_\(k)"; k += 1 }
                    taken.insert(n)
                    return n
                })
            do {
                try entry.translate(t)
            } catch where unsupported != nil {
                // Listed unless it fails only because an input comes from a node already listed.
                let message = (error as? ONNXError)?.message ?? (error as? GraphError)?.message ?? "\(error)"
                skip(message, listed: !p.inputs.contains { missing.contains($0) })
                continue
            }
            for c in t.constants { initializers[c.name] = c.tensor }
            for var node in t.nodes {
                if onnxruntimeOrder.contains(index), case .conv(var params) = node.op {
                    params.summation = .onnxruntimeCPU
                    node.op = .conv(params)
                }
                if constantsAsInitializers, case .constant(let value) = node.op, value.dtype.isFloat,
                   node.outputs.count == 1, !node.outputs[0].isEmpty {
                    initializers[node.outputs[0]] = value
                } else {
                    nodes.append(node)
                }
            }
        }

        return Graph(name: g.name, inputs: inputs, outputs: outputs, initializers: initializers,
                     nodes: nodes, metadata: metadata(model, opset: opset))
    }

    private func defaultOpset(_ model: ONNXModelProto) throws -> Int {
        let entries = model.opsetImport.filter { $0.domain.isEmpty || $0.domain == "ai.onnx" }
        let opset: Int
        if let e = entries.last {
            opset = Int(e.version)
        } else if model.opsetImport.isEmpty && model.irVersion < 3 {
            opset = 1  // IR versions 1 and 2 predate opset_import.
        } else {
            throw ONNXError("model declares no opset for the default ONNX domain")
        }
        guard (1...maxSupportedOpset).contains(opset) else {
            throw ONNXError("default-domain opset \(opset) is outside the supported range 1...\(maxSupportedOpset)")
        }
        return opset
    }

    private func valueDecl(_ v: ONNXValueInfoProto, role: String) throws -> ValueDecl {
        let subject = "\(role) '\(v.name)'"
        switch v.type {
        case .none:
            return ValueDecl(name: v.name, dtype: .float32, shape: nil)
        case .tensor(let elem, let shape):
            let dtype = elem == 0 ? .float32 : try braidType(code: elem, subject: subject)
            let dims = try shape.map { dims in
                try dims.enumerated().map { (axis, d) -> Dim in
                    switch d {
                    // Some exporters write -1 or "?" for "unknown"; each such axis gets its
                    // own symbol, since a shared name would claim the axes are equal.
                    case .value(let n) where n >= 0: return .fixed(Int(n))
                    case .param(let p) where p != "?": return .symbol(p)
                    default: return .symbol("\(v.name)_dim\(axis)")
                    }
                }
            }
            return ValueDecl(name: v.name, dtype: dtype, shape: dims)
        default:
            throw ONNXError(subject: subject, "unsupported value type \(v.type.kindName); only tensors are supported")
        }
    }

    private func metadata(_ m: ONNXModelProto, opset: Int) -> [String: String] {
        var meta = ["format": "onnx", "ir_version": String(m.irVersion), "opset": String(opset)]
        if !m.producerName.isEmpty { meta["producer_name"] = m.producerName }
        if !m.producerVersion.isEmpty { meta["producer_version"] = m.producerVersion }
        if !m.domain.isEmpty { meta["domain"] = m.domain }
        if m.modelVersion != 0 { meta["model_version"] = String(m.modelVersion) }
        if !m.docString.isEmpty && m.docString.count <= 200 { meta["doc_string"] = m.docString }
        for o in m.opsetImport where !(o.domain.isEmpty || o.domain == "ai.onnx") {
            meta["opset.\(o.domain)"] = String(o.version)
        }
        for p in m.metadataProps where p.value.count <= 65_536 { meta["meta.\(p.key)"] = p.value }
        return meta
    }
}

/// A node `ONNXImporter.unsupportedNodes` lists: which node, its op, domain and the opset the
/// model imports for that domain, and why Braid cannot import it.
public struct UnsupportedNode: Sendable, Equatable, CustomStringConvertible {
    public var node: String
    public var op: String
    /// "ai.onnx" for the default domain.
    public var domain: String
    /// The opset the model imports for `domain` (nil when it imports none).
    public var opset: Int?
    public var reason: String

    public var description: String {
        "node '\(node)': op '\(op)' (domain '\(domain)', opset \(opset.map { String($0) } ?? "none")): \(reason)"
    }
}

/// Imports the ONNX model at `path` (see `ONNXImporter`).
public func importONNX(path: String) throws -> Graph {
    try ONNXImporter().importModel(path: path)
}

/// Imports a serialized ONNX model; `baseDirectory` is where external data files live.
public func importONNX(data: Data, baseDirectory: String? = nil) throws -> Graph {
    try ONNXImporter().importModel(data: data, baseDirectory: baseDirectory)
}

/// Imports a serialized ONNX model held in bytes.
public func importONNX(bytes: [UInt8], baseDirectory: String? = nil) throws -> Graph {
    try ONNXImporter().importModel(data: Data(bytes), baseDirectory: baseDirectory)
}
