import BraidGraph
import BraidTensor
import Foundation

/// The default-domain opsets the exporter writes.
public let supportedExportOpsets = 13...21

/// Writes Braid graphs as ONNX models.
///
/// Every IR op is written with ONNX ops valid at `opset` (the writers sit beside the readers
/// in `Ops/*.swift`); an op or form the opset cannot express throws an `ONNXError` naming the
/// node, the IR op and the opset. Identical initializers are written once; graph inputs and
/// outputs carry their element type and dimensions (symbols as `dim_param`; shapes the graph
/// does not declare are found by planning with the Executor where that works).
public struct ONNXExporter: Sendable {
    public var opset: Int
    /// Writes float initializers of 16 elements or more as float16, each followed by a Cast
    /// to float: a half-size file, computed in float32. Values beyond float16's range are
    /// clamped to its largest finite value.
    public var fp16Weights: Bool
    /// Written as the model's `metadata_props`, sorted by key.
    public var metadata: [String: String]
    /// `producer_version` in the written model.
    public var producerVersion: String
    /// Total initializer bytes past which `write` stores weights as external data even when
    /// not asked (protobuf cannot hold a message of 2 GB).
    var externalThreshold = 2_000_000_000 - 64 << 20

    public init(opset: Int = 17, fp16Weights: Bool = false, metadata: [String: String] = [:],
                producerVersion: String = "") {
        self.opset = opset; self.fp16Weights = fp16Weights; self.metadata = metadata
        self.producerVersion = producerVersion
    }

    /// The graph as an ONNX model message, every initializer inline.
    public func model(_ graph: Graph) throws -> ONNXModelProto {
        guard supportedExportOpsets.contains(opset) else {
            throw ONNXError("cannot export at opset \(opset): Braid writes opsets \(supportedExportOpsets.lowerBound)...\(supportedExportOpsets.upperBound)")
        }
        let shapes = ShapeKnowledge(planning: graph)
        let session = ExportSession(graph: graph, shapes: shapes)
        var nodes: [ONNXNodeProto] = []
        for node in graph.nodes {
            let n = NodeExport(node: node, opset: opset, session: session)
            try writeNode(n)
            nodes += n.protos
        }

        let publicNames = Set(graph.inputs.map(\.name)).union(graph.outputs.map(\.name))
        var referenced = publicNames
        for n in nodes { referenced.formUnion(n.inputs) }
        let names = graph.initializers.keys.sorted() + session.added
        var initializers: [ONNXTensorProto] = []
        var canonical: [TensorKey: String] = [:]
        var rename: [String: String] = [:]
        var castNodes: [ONNXNodeProto] = []
        for name in names where referenced.contains(name) {
            let t = session.initializers[name]!
            if !publicNames.contains(name) {
                let key = TensorKey(t)
                if let first = canonical[key] { rename[name] = first; continue }
                canonical[key] = name
            }
            if fp16Weights, t.dtype.isFloat, t.count >= 16, !publicNames.contains(name) {
                let half = session.freshName("\(name)__fp16")
                initializers.append(ONNXTensorProto(float16: t, name: half))
                castNodes.append(ONNXNodeProto(name: half, opType: "Cast", inputs: [half], outputs: [name],
                                               attributes: [.int("to", Int64(ONNXDataType.float.rawValue))]))
            } else {
                initializers.append(ONNXTensorProto(t, name: name))
            }
        }
        if !rename.isEmpty {
            for i in nodes.indices { nodes[i].inputs = nodes[i].inputs.map { rename[$0] ?? $0 } }
        }

        var g = ONNXGraphProto()
        g.name = graph.name.isEmpty ? "braid" : graph.name
        g.nodes = castNodes + nodes
        g.initializers = initializers
        g.inputs = graph.inputs.map { d in
            valueInfo(d, dims: d.shape.map(onnxDims) ?? shapes.onnxDims(d.name), dtype: d.dtype)
        }
        g.outputs = graph.outputs.map { d in
            valueInfo(d, dims: shapes.onnxDims(d.name) ?? d.shape.map(onnxDims), dtype: shapes.dtype(d.name) ?? d.dtype)
        }

        var m = ONNXModelProto()
        m.irVersion = opset >= 21 ? 10 : opset >= 19 ? 9 : opset >= 15 ? 8 : 7
        m.producerName = "braid"
        m.producerVersion = producerVersion
        m.graph = g
        m.opsetImport = [("", Int64(opset))]
        m.metadataProps = metadata.keys.sorted().map { ($0, metadata[$0]!) }
        return m
    }

    /// The serialized model, every initializer inline. Throws when it would pass protobuf's
    /// 2 GB limit (write to a file with external data instead).
    public func bytes(_ graph: Graph) throws -> [UInt8] {
        let m = try model(graph)
        let weightBytes = m.graph.initializers.reduce(0) { $0 + ($1.rawData?.count ?? 0) }
        guard weightBytes <= externalThreshold else {
            throw ONNXError("the model's \(weightBytes) bytes of weights pass protobuf's 2 GB limit; write it to a file with external data")
        }
        return m.serialized()
    }

    /// Writes the model to `path` through a temporary file and a rename, so a failed export
    /// leaves nothing behind. With `externalData` (or automatically when the weights pass
    /// 2 GB), initializers of 1 KiB or more go to one file beside it, `<file name>.data`,
    /// referenced by location, offset and length.
    public func write(_ graph: Graph, to path: String, externalData: Bool = false) throws {
        var m = try model(graph)
        let weightBytes = m.graph.initializers.reduce(0) { $0 + ($1.rawData?.count ?? 0) }
        var files: [(path: String, data: Data)] = []
        if externalData || weightBytes > externalThreshold {
            let location = (path as NSString).lastPathComponent + ".data"
            let dataPath = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(location)
            var blob = Data()
            for i in m.graph.initializers.indices {
                guard let raw = m.graph.initializers[i].rawData, raw.count >= 1024 else { continue }
                // Offsets are 64-byte aligned so readers may map the file.
                blob.append(Data(count: (64 - blob.count % 64) % 64))
                m.graph.initializers[i].externalData = [("location", location), ("offset", String(blob.count)),
                                                        ("length", String(raw.count))]
                m.graph.initializers[i].isExternal = true
                m.graph.initializers[i].rawData = nil
                blob.append(raw)
            }
            files.append((dataPath, blob))
        }
        files.append((path, Data(m.serialized())))
        try writeAllOrNothing(files)
    }

    private func writeNode(_ n: NodeExport) throws {
        for family in [writeMathOp, writeNNOp, writeShapeOp, writeReduceOp, writeIndexingOp] where try family(n) { return }
        throw n.error("no ONNX writer for this op")
    }
}

/// Writes `graph` as an ONNX model at `path` (see `ONNXExporter`).
///
/// - Parameters:
///   - opset: default-domain opset, 13...21.
///   - externalData: store weights of 1 KiB or more in `<file name>.data` beside the model
///     (done automatically past 2 GB).
///   - fp16Weights: store float weights as float16 (cast back to float32 in the graph).
///   - metadata: the model's `metadata_props`.
public func exportONNX(_ graph: Graph, to path: String, opset: Int = 17, externalData: Bool = false,
                       fp16Weights: Bool = false, metadata: [String: String] = [:]) throws {
    try ONNXExporter(opset: opset, fp16Weights: fp16Weights, metadata: metadata)
        .write(graph, to: path, externalData: externalData)
}

/// The serialized ONNX model of `graph`, every weight inline (see `ONNXExporter`).
public func exportONNXBytes(_ graph: Graph, opset: Int = 17, fp16Weights: Bool = false,
                            metadata: [String: String] = [:]) throws -> [UInt8] {
    try ONNXExporter(opset: opset, fp16Weights: fp16Weights, metadata: metadata).bytes(graph)
}

private func onnxDims(_ dims: [Dim]) -> [ONNXDim] {
    dims.map { d in
        switch d {
        case .fixed(let n): return .value(Int64(n))
        case .symbol(let s): return .param(s)
        }
    }
}

private func valueInfo(_ d: ValueDecl, dims: [ONNXDim]?, dtype: DType) -> ONNXValueInfoProto {
    ONNXValueInfoProto(name: d.name, type: .tensor(elemType: ONNXDataType(dtype).rawValue, shape: dims))
}

/// Identity of a tensor's contents, for writing identical initializers once.
private struct TensorKey: Hashable {
    let dtype: DType
    let shape: [Int]
    let bytes: Data

    init(_ t: Tensor) {
        dtype = t.dtype; shape = t.shape
        bytes = Data(bytes: t.buffer.raw, count: t.count * t.dtype.storageStride)
    }
}

extension ONNXTensorProto {
    /// A FLOAT16 TensorProto of a float32 tensor, rounding to nearest even and clamping to
    /// float16's finite range.
    init(float16 t: Tensor, name: String) {
        self.init()
        self.name = name
        dims = t.shape.map { Int64($0) }
        dataType = ONNXDataType.float16.rawValue
        var data = Data(count: 2 * t.count)
        data.withUnsafeMutableBytes { (dst: UnsafeMutableRawBufferPointer) in
            guard let d = dst.baseAddress else { return }
            for i in 0..<t.count {
                let x = t.floats[i]
                let clamped = x.isNaN ? x : Swift.min(Swift.max(x, -65504), 65504)
                d.storeBytes(of: Float16(clamped).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        }
        rawData = data
    }
}

/// Writes every file under a temporary name, then renames them all; on failure removes the
/// temporaries, so no half-written set is left.
private func writeAllOrNothing(_ files: [(path: String, data: Data)]) throws {
    var temporaries: [String] = []
    do {
        for f in files {
            let tmp = f.path + ".tmp-\(getpid())"
            temporaries.append(tmp)
            do { try f.data.write(to: URL(fileURLWithPath: tmp)) } catch {
                throw ONNXError(file: f.path, "cannot write: \(error.localizedDescription)")
            }
        }
        for (f, tmp) in zip(files, temporaries) {
            do { try commitTemporaryFile(tmp, to: f.path) } catch let e as NpyError {
                throw ONNXError(file: f.path, e.message)
            }
        }
    } catch {
        for t in temporaries { try? FileManager.default.removeItem(atPath: t) }
        throw error
    }
}
