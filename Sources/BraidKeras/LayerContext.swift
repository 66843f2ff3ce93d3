import BraidGraph
import BraidTensor

/// Translates one call of one Keras layer: given the input tensors, adds IR nodes and
/// returns the output tensors.
typealias LayerTranslator = @Sendable (LayerContext, [KTensor]) throws -> [KTensor]

/// What a layer translator sees: the layer's config, the builder, the layer's weights and
/// the Keras version whose defaults apply.
struct LayerContext {
    let spec: LayerSpec
    let b: GraphBuilder
    let scope: WeightScope
    /// A key unique to this layer in the whole model (nested path), for shared constants.
    let key: String
    let kerasMajor: Int
    let file: String?

    var config: JSONObject { spec.config }
    var name: String { spec.name }
    var cls: String { spec.className }

    func err(_ message: String) -> KerasError {
        KerasError(file: file, layer: spec.name, layerClass: spec.className, position: spec.position, message)
    }

    /// The layer's weights, checked against the names it should have in creation order.
    func weights(_ expected: [String]) throws -> WeightCursor {
        try WeightCursor(try scope.load(), expected: expected, err: err)
    }

    /// A weight turned into an IR constant once per layer (shared across calls).
    func weightConstant(_ label: String, _ make: () throws -> Tensor) throws -> String {
        try b.sharedConstant(key: "\(key)#\(label)", name: "\(name)/\(label)", make: make)
    }

    func add(_ op: Op, _ inputs: [String], suffix: String? = nil) -> String {
        b.add1(op, inputs, name: suffix.map { "\(name)/\($0)" } ?? name, source: cls)
    }

    func one(_ inputs: [KTensor]) throws -> KTensor {
        guard inputs.count == 1 else { throw err("expected 1 input, got \(inputs.count)") }
        return inputs[0]
    }

    func requireRank(_ t: KTensor, _ ranks: Set<Int>) throws {
        guard ranks.contains(t.rank) else {
            throw err("input has rank \(t.rank) (shape \(describe(t.shape))), expected rank \(ranks.sorted().map(String.init).joined(separator: " or "))")
        }
    }

    /// Rejects `data_format: channels_first`, which the importer does not handle.
    func requireChannelsLast() throws {
        if let f = config.string("data_format"), f != "channels_last" {
            throw err("data_format '\(f)' is not supported (only channels_last)")
        }
    }

    /// Applies the layer's `activation` config entry.
    func activation(_ t: KTensor, key: String = "activation") throws -> KTensor {
        guard let a = activationName(config[key]) else { return t }
        return try applyActivation(a, t, self)
    }

    func describe(_ shape: [Int?]) -> String {
        "[" + shape.map { $0.map(String.init) ?? "?" }.joined(separator: ", ") + "]"
    }
}

/// An activation given as a string, or (Keras 3) as a serialized function object.
func activationName(_ v: Any?) -> String? {
    if let s = v as? String { return s }
    if let d = v as? [String: Any] {
        if let c = d["config"] as? String { return c }
        if let c = d["config"] as? [String: Any], let n = c["name"] as? String { return n }
        if let n = d["class_name"] as? String { return n }
    }
    return nil
}
