import Foundation

/// One `[id]` block of `Models/manifest` (format: Models/README.md).
///
/// Every `key = value` line is kept in `fields`; the typed properties read the keys the
/// README defines. An empty value means "none".
public struct ModelManifest: Sendable, Equatable {
    public let id: String
    public let fields: [String: String]

    public init(id: String, fields: [String: String]) {
        self.id = id
        self.fields = fields
    }

    public subscript(key: String) -> String? {
        guard let v = fields[key], !v.isEmpty else { return nil }
        return v
    }

    public var package: String? { self["package"] }
    public var version: String? { self["version"] }
    public var wheel: String? { self["wheel"] }
    public var wheelSHA256: String? { self["wheel_sha256"] }
    public var path: String? { self["path"] }
    public var sha256: String? { self["sha256"] }
    public var bytes: Int? { self["bytes"].flatMap { Int($0) } }
    public var format: String? { self["format"] }
    public var formatVersion: String? { self["format_version"] }
    public var task: String? { self["task"] }
    public var input: String? { self["input"] }
    public var output: String? { self["output"] }
    public var layout: InputLayout? { self["layout"].flatMap(InputLayout.init(rawValue:)) }
    /// Declared input shape; letters (dynamic dims) are kept as strings.
    public var inputShape: [String] { list("input_shape") }
    public var outputShape: [String] { list("output_shape") }
    /// `input_size` split on `x`: CxHxW for NCHW, HxWxC for NHWC.
    public var inputSize: [Int]? {
        guard let v = self["input_size"] else { return nil }
        let parts = v.split(separator: "x").compactMap { Int($0) }
        return parts.count == 3 ? parts : nil
    }
    public var outputKind: String? { self["output_kind"] }
    /// `BGR`, `RGB` or `gray`.
    public var channelOrder: String? { self["channel_order"] }
    public var scale: Float? { self["scale"].flatMap { Float($0) } }
    public var mean: [Float] { list("mean").compactMap { Float($0) } }
    public var std: [Float] { list("std").compactMap { Float($0) } }
    public var labels: [String] { list("labels") }
    public var labelsSource: String? { self["labels_source"] }
    public var preprocessSource: String? { self["preprocess_source"] }
    public var referenceShape: [Int] {
        (self["reference_shape"] ?? "").split(separator: "x").compactMap { Int($0) }
    }
    public var referencePatterns: [String] { list("reference_patterns") }

    private func list(_ key: String) -> [String] {
        (self[key] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// The model's input as an `InputSpec` (from `layout`, `input_size`, `channel_order`,
    /// `scale`, `mean`, `std`; scale defaults to 1, mean to 0, std to 1).
    ///
    /// - Throws: `DataError.badFormat` when layout or input size is missing or malformed.
    public func inputSpec() throws -> InputSpec {
        guard let layout, let size = inputSize else {
            throw DataError.badFormat(path: "Models/manifest [\(id)]", detail: "needs 'layout' and a 3-part 'input_size'")
        }
        let (c, h, w) = layout == .nchw ? (size[0], size[1], size[2]) : (size[2], size[0], size[1])
        let spec = InputSpec(channels: c, height: h, width: w, layout: layout, scale: scale ?? 1,
                             mean: mean.isEmpty ? [0] : mean, std: std.isEmpty ? [1] : std,
                             bgr: channelOrder?.uppercased() == "BGR")
        do {
            try spec.validate()
        } catch {
            throw DataError.badFormat(path: "Models/manifest [\(id)]", detail: "\(error)")
        }
        return spec
    }

    /// Parses a manifest's text into its blocks, in file order.
    ///
    /// - Throws: `DataError.badFormat` naming `path` and the line for a line that is neither
    ///   `[id]`, `key = value`, a comment nor blank, or a key before the first block.
    public static func parse(_ text: String, path: String = "Models/manifest") throws -> [ModelManifest] {
        var blocks: [(String, [String: String])] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                blocks.append((String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces), [:]))
                continue
            }
            guard let eq = line.firstIndex(of: "="), !blocks.isEmpty else {
                throw DataError.badFormat(path: path, detail: "line \(number + 1): expected '[id]' or 'key = value', got '\(raw)'")
            }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            blocks[blocks.count - 1].1[key] = value
        }
        return blocks.map { ModelManifest(id: $0.0, fields: $0.1) }
    }

    /// Reads and parses a manifest file.
    public static func load(path: String) throws -> [ModelManifest] {
        let data = try readFile(path)
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }
}
