import Foundation

/// A JSON object from a Keras config, with typed accessors that name the key on failure.
struct JSONObject: @unchecked Sendable {
    let dict: [String: Any]

    init(_ dict: [String: Any]) { self.dict = dict }

    static func parse(_ text: String, what: String) throws -> JSONObject {
        guard let data = text.data(using: .utf8),
              let obj = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
              let dict = obj as? [String: Any] else {
            throw KerasError("\(what) is not a JSON object")
        }
        return JSONObject(dict)
    }

    subscript(key: String) -> Any? {
        guard let v = dict[key] else { return nil }
        // `v is NSNull` would bridge a nested array or dictionary to Foundation, copying its
        // whole subtree on every lookup (minutes for a deeply nested hostile config).
        return type(of: v) is NSNull.Type ? nil : v
    }

    func string(_ key: String) -> String? { self[key] as? String }
    func bool(_ key: String) -> Bool? { (self[key] as? NSNumber)?.boolValue }
    func double(_ key: String) -> Double? { (self[key] as? NSNumber)?.doubleValue }
    func float(_ key: String) -> Float? { double(key).map(Float.init) }
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    func object(_ key: String) -> JSONObject? { (self[key] as? [String: Any]).map(JSONObject.init) }
    func array(_ key: String) -> [Any]? { self[key] as? [Any] }

    /// An int or a list of ints (Keras accepts `3` for `(3, 3)`), expanded to `count` entries.
    func ints(_ key: String, count: Int) -> [Int]? {
        if let n = int(key), !(self[key] is [Any]) { return Array(repeating: n, count: count) }
        guard let a = array(key) else { return nil }
        let v = a.compactMap { ($0 as? NSNumber)?.intValue }
        guard v.count == a.count else { return nil }
        if v.count == 1 && count > 1 { return Array(repeating: v[0], count: count) }
        return v
    }
}

/// One reference to a tensor produced by a layer call: `layer`'s call number `node`,
/// output number `tensor`.
struct TensorRef: Equatable {
    var layer: String
    var node: Int
    var tensor: Int
}

/// One layer entry of a model config.
struct LayerSpec {
    var name: String
    var className: String
    var config: JSONObject
    /// The whole entry (`class_name`, `config`, ...), for nested models.
    var entry: JSONObject
    /// One entry per call of the layer, each listing the tensors passed to it. Empty for
    /// Sequential layers and input layers.
    var calls: [[TensorRef]]
    /// Per call, the top-level positional arguments in order: tensors (taken from `calls` in
    /// turn) and Python numbers. Keras 3 operation nodes (`x + 3.0`) need the numbers and
    /// their positions; empty for Keras 2 configs.
    var operands: [[CallOperand]] = []
    /// Position in the model's layer list (0-based), for error messages.
    var position: Int

    /// True for a Keras 3 operation node (a `keras.ops` call such as `x + 3.0` recorded in a
    /// functional config) rather than a layer.
    /// Legacy .h5 configs drop `module`: there an operation is told from a layer of the same
    /// class name (Reshape, Add...) by its config, which lacks the `trainable` every layer
    /// config has, or by a number among its arguments.
    var isOperation: Bool {
        if let module = entry.string("module") { return module.hasPrefix("keras.src.ops") }
        guard operationTable[className] != nil else { return false }
        return layerTable[className] == nil || config["trainable"] == nil
            || operands.contains { $0.contains { if case .number = $0 { return true } else { return false } } }
    }
}

/// One positional argument of a layer call: the next tensor of the call, or a number.
enum CallOperand: Equatable {
    case tensor
    case number(Double)
}

/// A Sequential or Functional model config, Keras 2 or 3.
struct ModelSpec {
    var name: String
    var className: String
    var isSequential: Bool
    var layers: [LayerSpec]
    var inputs: [TensorRef]
    var outputs: [TensorRef]
    /// For Sequential models: the declared input shape, without the batch axis.
    var sequentialInputShape: [Int?]?
    /// For Sequential models: the InputLayer's name, when the config has one.
    var sequentialInputName: String?

    static let modelClasses: Set<String> = ["Sequential", "Functional", "Model"]

    /// Parses `{"class_name": ..., "config": ...}`.
    init(_ json: JSONObject) throws {
        className = json.string("class_name") ?? ""
        guard ModelSpec.modelClasses.contains(className) else {
            throw KerasError("model config class '\(className)' is not Sequential, Functional or Model")
        }
        isSequential = className == "Sequential"
        var layerList: [Any]
        var cfg: JSONObject? = nil
        if let list = json.array("config") {
            // Keras 2.0/2.1 Sequential: the config is the bare layer list.
            layerList = list
        } else if let c = json.object("config"), let list = c.array("layers") {
            cfg = c
            layerList = list
        } else {
            throw KerasError("model config has no layer list")
        }
        name = cfg?.string("name") ?? json.string("name") ?? "model"
        layers = []
        for (i, item) in layerList.enumerated() {
            guard let d = item as? [String: Any] else {
                throw KerasError("layer entry \(i) is not a JSON object")
            }
            let entry = JSONObject(d)
            let cls = entry.string("class_name") ?? ""
            let config = entry.object("config") ?? JSONObject([:])
            let lname = entry.string("name") ?? config.string("name") ?? "layer_\(i)"
            let calls = try ModelSpec.parseInbound(entry["inbound_nodes"], layer: lname, cls: cls, position: i)
            layers.append(LayerSpec(name: lname, className: cls, config: config, entry: entry, calls: calls,
                                    operands: ModelSpec.parseOperands(entry["inbound_nodes"]), position: i))
        }
        inputs = []
        outputs = []
        sequentialInputShape = nil
        sequentialInputName = nil
        if isSequential {
            if let first = layers.first {
                let c = first.config
                if let s = c.array("batch_shape") ?? c.array("batch_input_shape") {
                    sequentialInputShape = s.dropFirst().map { ($0 as? NSNumber)?.intValue }
                } else if let bc = first.config.object("build_config") ?? entryBuildConfig(layerList.first),
                          let s = bc.array("input_shape") {
                    sequentialInputShape = s.dropFirst().map { ($0 as? NSNumber)?.intValue }
                }
            }
            if let first = layers.first, first.className == "InputLayer" {
                sequentialInputName = first.name
                layers.removeFirst()
            }
        } else {
            inputs = try ModelSpec.parseRefs(cfg?["input_layers"], what: "input_layers")
            outputs = try ModelSpec.parseRefs(cfg?["output_layers"], what: "output_layers")
        }
    }

    private func entryBuildConfig(_ item: Any?) -> JSONObject? {
        (item as? [String: Any]).flatMap { JSONObject($0).object("build_config") }
    }

    /// `[name, node, tensor]` or a list of them.
    static func parseRefs(_ v: Any?, what: String) throws -> [TensorRef] {
        guard let a = v as? [Any] else { throw KerasError("model config has no \(what)") }
        if let r = ref(a) { return [r] }
        return try a.map {
            guard let x = $0 as? [Any], let r = ref(x) else { throw KerasError("bad entry in \(what)") }
            return r
        }
    }

    private static func ref(_ a: [Any]) -> TensorRef? {
        guard a.count >= 3, let l = a[0] as? String, let n = (a[1] as? NSNumber)?.intValue,
              let t = (a[2] as? NSNumber)?.intValue else { return nil }
        return TensorRef(layer: l, node: n, tensor: t)
    }

    /// Keras 2: `[[[name, node, tensor, kwargs], ...], ...]`; Keras 3: `[{"args": [...],
    /// "kwargs": {...}}, ...]` where tensors appear as `__keras_tensor__` objects, possibly
    /// inside lists (merge layers).
    static func parseInbound(_ v: Any?, layer: String, cls: String, position: Int) throws -> [[TensorRef]] {
        guard let nodes = v as? [Any] else { return [] }
        return try nodes.map { node in
            if let d = node as? [String: Any] {
                var refs: [TensorRef] = []
                collectTensors(d["args"] ?? [], into: &refs)
                return refs
            }
            guard let list = node as? [Any] else {
                throw KerasError(layer: layer, layerClass: cls, position: position, "unreadable inbound_nodes")
            }
            return try list.map {
                guard let a = $0 as? [Any], let r = ref(a) else {
                    throw KerasError(layer: layer, layerClass: cls, position: position, "unreadable inbound_nodes entry")
                }
                return r
            }
        }
    }

    /// Keras 3 calls' top-level positional arguments: a tensor, a list of tensors (each one a
    /// `.tensor`), or a number.
    static func parseOperands(_ v: Any?) -> [[CallOperand]] {
        guard let nodes = v as? [Any] else { return [] }
        return nodes.map { node in
            guard let d = node as? [String: Any], let args = d["args"] as? [Any] else { return [] }
            var out: [CallOperand] = []
            for a in args {
                if let n = a as? NSNumber {
                    out.append(.number(n.doubleValue))
                } else {
                    var refs: [TensorRef] = []
                    collectTensors(a, into: &refs)
                    out += refs.map { _ in .tensor }
                }
            }
            return out
        }
    }

    private static func collectTensors(_ v: Any, into refs: inout [TensorRef]) {
        if let d = v as? [String: Any] {
            if d["class_name"] as? String == "__keras_tensor__",
               let c = d["config"] as? [String: Any], let h = c["keras_history"] as? [Any], let r = ref(h) {
                refs.append(r)
            }
        } else if let a = v as? [Any] {
            for x in a { collectTensors(x, into: &refs) }
        }
    }
}
