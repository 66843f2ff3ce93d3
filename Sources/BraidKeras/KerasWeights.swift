import BraidTensor
import Foundation

/// A layer's saved weights in the order the layer created them, with their names when the
/// file states them (HDF5 `weight_names`; the `.keras` format stores only positions).
struct LayerWeights {
    var tensors: [(name: String?, tensor: Tensor)]
    var file: String
}

/// Where a (possibly nested) model's weights live in an HDF5 file.
///
/// - `legacy`: Keras 2 and Keras 3 `.h5` files. Each top-level layer has a group (under
///   `model_weights/` for a whole-model save, at the root for `save_weights`) whose
///   `weight_names` attribute lists datasets relative to that group. A nested model's
///   weights all sit in its own group, their names containing the inner layer's name.
/// - `keras3`: `model.weights.h5` from a `.keras` zip: `layers/<key>/vars/<i>` where the key
///   is the layer's class name in snake case, numbered `_1`, `_2`... in layer order, and a
///   nested model's layers under `layers/<key>/layers/...`.
enum WeightScope {
    case legacy(file: HDF5File, root: String, group: String?, innerNames: [String])
    case keras3(file: HDF5File, prefix: String)
    case none

    /// The scope for one layer of the model this scope describes. `keras3Key` is the
    /// layer's snake-case key (see `Keras3Keys`).
    func child(layer: String, keras3Key: String) -> WeightScope {
        switch self {
        case .legacy(let f, let root, let group, let inner):
            if let group { return .legacy(file: f, root: root, group: group, innerNames: inner + [layer]) }
            return .legacy(file: f, root: root, group: layer, innerNames: [])
        case .keras3(let f, let prefix):
            return .keras3(file: f, prefix: "\(prefix)layers/\(keras3Key)/")
        case .none:
            return .none
        }
    }

    /// The weights of the layer this scope points at.
    func load() throws -> LayerWeights {
        switch self {
        case .none:
            return LayerWeights(tensors: [], file: "")
        case .keras3(let f, let prefix):
            let vars = prefix + "vars"
            guard f.isGroup(vars) else { return LayerWeights(tensors: [], file: f.path) }
            let names = try f.children(vars).filter { Int($0) != nil }.sorted { Int($0)! < Int($1)! }
            return LayerWeights(tensors: try names.map { (nil, try f.floatDataset("\(vars)/\($0)")) }, file: f.path)
        case .legacy(let f, let root, let group, let inner):
            guard let group else { return LayerWeights(tensors: [], file: f.path) }
            let gpath = root.isEmpty ? group : "\(root)/\(group)"
            guard f.isGroup(gpath) else { return LayerWeights(tensors: [], file: f.path) }
            var names = try f.stringsAttribute("weight_names", at: gpath) ?? []
            if !inner.isEmpty {
                // Nested model: keep the weights whose path names the inner layer.
                names = names.filter { n in
                    let parts = n.split(separator: "/").dropLast().map(String.init)
                    return inner.allSatisfy(parts.contains)
                }
            }
            return LayerWeights(tensors: try names.map { (shortName($0), try f.floatDataset("\(gpath)/\($0)")) },
                                file: f.path)
        }
    }

    private func shortName(_ n: String) -> String {
        var s = n.split(separator: "/").last.map(String.init) ?? n
        if let colon = s.lastIndex(of: ":") { s = String(s[..<colon]) }
        return s
    }
}

/// Keras 3's container keys: snake-case class name, deduplicated with `_1`, `_2`... in order.
struct Keras3Keys {
    private var used: [String: Int] = [:]

    mutating func next(className: String) -> String {
        let base = Keras3Keys.snakeCase(className)
        if let n = used[base] {
            used[base] = n + 1
            return "\(base)_\(n + 1)"
        }
        used[base] = 0
        return base
    }

    /// Keras's `to_snake_case`: `(.)([A-Z][a-z]+)` -> `\1_\2`, then `([a-z])([A-Z])` ->
    /// `\1_\2`, lower-cased ("Conv2DTranspose" -> "conv2d_transpose", "PReLU" -> "p_re_lu").
    static func snakeCase(_ name: String) -> String {
        var s = name.filter { $0.isLetter || $0.isNumber || $0 == "_" }
        s = s.replacingOccurrences(of: "(.)([A-Z][a-z]+)", with: "$1_$2", options: .regularExpression)
        s = s.replacingOccurrences(of: "([a-z])([A-Z])", with: "$1_$2", options: .regularExpression)
        return s.lowercased()
    }
}

/// Hands out a layer's weights by the names the layer expects, checking count and shape.
struct WeightCursor {
    let weights: LayerWeights
    let expected: [String]
    let err: (String) -> KerasError

    /// `expected` lists the layer's weight names in creation order (e.g. `["kernel", "bias"]`).
    init(_ weights: LayerWeights, expected: [String], err: @escaping (String) -> KerasError) throws {
        self.weights = weights; self.expected = expected; self.err = err
        if weights.tensors.count != expected.count {
            let found = weights.tensors.map { $0.name ?? "?" }
            throw err("expected \(expected.count) weights (\(expected.joined(separator: ", "))), found \(weights.tensors.count)"
                      + (found.isEmpty ? "" : " (\(found.joined(separator: ", ")))")
                      + (expected.count > weights.tensors.count ? ": missing weight" : ""))
        }
    }

    /// The weight called `name` (or one of `aliases`, names other Keras versions use), which
    /// must have `shape` (nil entries match any size).
    func take(_ name: String, aliases: [String] = [], shape: [Int?]) throws -> Tensor {
        guard let pos = expected.firstIndex(of: name) else { throw err("internal: no weight '\(name)'") }
        var t = weights.tensors[pos]
        if weights.tensors.contains(where: { $0.name != nil }) {
            let names = [name] + aliases
            guard let byName = weights.tensors.first(where: { $0.name.map(names.contains) == true }) else {
                throw err("missing weight '\(name)' (found \(weights.tensors.map { $0.name ?? "?" }.joined(separator: ", ")))")
            }
            t = byName
        }
        let ok = t.tensor.shape.count == shape.count
            && zip(t.tensor.shape, shape).allSatisfy { $1 == nil || $0 == $1! }
        guard ok else {
            let want = shape.map { $0.map(String.init) ?? "?" }.joined(separator: ", ")
            throw err("weight '\(name)' has shape \(t.tensor.shape), expected [\(want)]")
        }
        return t.tensor
    }
}
