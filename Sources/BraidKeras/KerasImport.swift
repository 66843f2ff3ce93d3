import BraidGraph
import BraidTensor
import BraidHDF5
import Foundation
import ZIPFoundation

/// Imports a Keras model file into Braid's IR.
///
/// Reads Keras 2 / tf.keras HDF5 (`.h5`, `.hdf5`), Keras 3 legacy HDF5 and Keras 3 native
/// `.keras` zips. The graph keeps Keras's layout at its boundary: an image input is fed as
/// `[N, H, W, C]` and outputs come back as Keras returns them; inside, convolutions and
/// pooling run channels-first with transposes inserted where the layout changes. Inputs
/// are named after the Keras input layers; the batch axis is the symbol `N`.
///
/// Throws `KerasError` naming the file, and the layer (name, class, position) when one is
/// at fault: unknown layer classes, Lambda layers, missing or wrongly shaped weights,
/// configs that reference layers that do not exist, files that are not Keras models.
public func importKeras(path: String) throws -> Graph {
    guard FileManager.default.fileExists(atPath: path) else { throw KerasError(file: path, "no such file") }
    if isZip(path) { return try importKerasZip(path: path) }
    return try hdf5Lock.withLock {
        let f = try HDF5File(path: path)
        guard let configText = try f.stringAttribute("model_config") else {
            let hint = f.hasAttribute("layer_names") || f.isGroup("layers")
                ? " (it holds weights only: use importKeras(configPath:weightsPath:))" : ""
            throw KerasError(file: path, "not a Keras model: no 'model_config' attribute\(hint)")
        }
        let version = try f.stringAttribute("keras_version") ?? ""
        let backend = try f.stringAttribute("backend") ?? ""
        let json = try parseConfig(configText, file: path)
        let root = f.isGroup("model_weights") ? "model_weights" : ""
        let t = ModelTranslator(file: path, kerasMajor: kerasMajor(version, json))
        var meta = ["format": "keras-hdf5", "keras_version": version, "backend": backend]
        meta["producer"] = "keras \(version)"
        return try t.translate(try modelSpec(json, file: path), scope: .legacy(file: f, root: root, group: nil, innerNames: []),
                               metadata: meta)
    }
}

/// Imports a model from a JSON config (`model.to_json()`, or a `.keras` zip's config.json)
/// and a weights-only HDF5 file (Keras 2 `save_weights` or Keras 3 `.weights.h5`).
public func importKeras(configPath: String, weightsPath: String) throws -> Graph {
    guard let data = FileManager.default.contents(atPath: configPath) else {
        throw KerasError(file: configPath, "cannot read config file")
    }
    let json = try parseConfig(String(decoding: data, as: UTF8.self), file: configPath)
    return try hdf5Lock.withLock {
        let f = try HDF5File(path: weightsPath)
        let scope: WeightScope
        if f.hasAttribute("layer_names") {
            scope = .legacy(file: f, root: "", group: nil, innerNames: [])
        } else if f.isGroup("model_weights") {
            scope = .legacy(file: f, root: "model_weights", group: nil, innerNames: [])
        } else if f.isGroup("layers") || f.isGroup("vars") {
            scope = .keras3(file: f, prefix: "")
        } else {
            throw KerasError(file: weightsPath, "not a Keras weights file (no layer_names attribute, no layers group)")
        }
        let version = try f.stringAttribute("keras_version") ?? ""
        let t = ModelTranslator(file: weightsPath, kerasMajor: kerasMajor(version, json))
        return try t.translate(try modelSpec(json, file: configPath), scope: scope,
                               metadata: ["format": "keras-config+weights", "keras_version": version])
    }
}

private func importKerasZip(path: String) throws -> Graph {
    let archive: Archive
    do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
        throw KerasError(file: path, "not a readable zip archive (\(error))")
    }
    func read(_ name: String) throws -> Data? {
        guard let entry = archive[name] else { return nil }
        var data = Data()
        do { _ = try archive.extract(entry) { data.append($0) } } catch {
            throw KerasError(file: path, "cannot extract \(name) (\(error))")
        }
        return data
    }
    guard let config = try read("config.json") else { throw KerasError(file: path, "not a .keras archive: no config.json") }
    let meta = try read("metadata.json").flatMap { try? JSONObject.parse(String(decoding: $0, as: UTF8.self), what: "metadata.json") }
    let version = meta?.string("keras_version") ?? ""
    let json = try parseConfig(String(decoding: config, as: UTF8.self), file: path)
    let spec = try modelSpec(json, file: path)
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("braid-\(UUID().uuidString).weights.h5")
    defer { try? FileManager.default.removeItem(at: tmp) }
    if let weights = try read("model.weights.h5") {
        try weights.write(to: tmp)
    }
    return try hdf5Lock.withLock {
        let scope: WeightScope
        var hdf: HDF5File?
        if FileManager.default.fileExists(atPath: tmp.path) {
            do { hdf = try HDF5File(path: tmp.path) } catch let e as KerasError {
                throw KerasError(file: path, "model.weights.h5: \(e.message)")
            }
            scope = .keras3(file: hdf!, prefix: "")
        } else {
            scope = .none
        }
        let t = ModelTranslator(file: path, kerasMajor: kerasMajor(version, json))
        return try t.translate(spec, scope: scope, metadata: ["format": "keras-zip", "keras_version": version,
                                                              "producer": "keras \(version)"])
    }
}

private func isZip(_ path: String) -> Bool {
    guard let h = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? h.close() }
    let magic = (try? h.read(upToCount: 4)) ?? Data()
    return magic == Data([0x50, 0x4B, 0x03, 0x04])
}

private func parseConfig(_ text: String, file: String) throws -> JSONObject {
    do { return try JSONObject.parse(text, what: "model config") } catch let e as KerasError {
        throw KerasError(file: file, e.message)
    }
}

private func modelSpec(_ json: JSONObject, file: String) throws -> ModelSpec {
    do { return try ModelSpec(json) } catch var e as KerasError {
        if e.file == nil { e.file = file }
        throw e
    }
}

/// The Keras major version whose defaults apply: from the file, else from the config's
/// style (Keras 3 configs carry `module` keys).
private func kerasMajor(_ version: String, _ json: JSONObject) -> Int {
    if let m = version.split(separator: ".").first.flatMap({ Int($0) }) { return m }
    return json["module"] != nil ? 3 : 2
}
