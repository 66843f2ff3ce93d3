import Foundation

/// The range pixels are brought to before mean and std: `x = p * scale - offset` for a
/// pixel `p` in 0...255.
public enum PixelRange: String, Codable, Sendable, CaseIterable {
    /// `p / 255`.
    case unit = "0-1"
    /// `p` as it is.
    case byte = "0-255"
    /// `p / 127.5 - 1` (Inception and MobileNet in Keras, "tf" mode).
    case symmetric = "-1-1"

    /// Multiplier of a 0...255 pixel.
    public var scale: Float {
        switch self {
        case .unit: return 1 / 255
        case .byte: return 1
        case .symmetric: return 1 / 127.5
        }
    }

    /// Subtracted after scaling.
    public var offset: Float { self == .symmetric ? 1 : 0 }

    /// The range a scale and offset describe, if one of the three.
    public init?(scale: Float, offset: Float) {
        guard let r = PixelRange.allCases.first(where: { abs($0.scale - scale) <= 1e-6 * max(1, $0.scale) && $0.offset == offset })
        else { return nil }
        self = r
    }
}

/// Named preprocessing conventions (`--preprocess`).
public enum PreprocessPreset: String, Codable, Sendable, CaseIterable {
    /// torchvision and most PyTorch models: RGB, 0-1, ImageNet mean and std.
    case imagenet
    /// Caffe and Keras "caffe" mode (VGG, ResNet50 in keras.applications): BGR, 0-255,
    /// ImageNet means in BGR order, std 1.
    case caffe
    /// Keras "tf" mode (Inception, Xception, MobileNet): RGB, -1..1.
    case inception
    /// RGB, 0-255, nothing subtracted.
    case none

    /// The settings the preset stands for (it says nothing about layout).
    public var settings: PreprocessOverride {
        switch self {
        case .imagenet:
            return PreprocessOverride(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], range: .unit, bgr: false)
        case .caffe:
            return PreprocessOverride(mean: [103.939, 116.779, 123.68], std: [1], range: .byte, bgr: true)
        case .inception:
            return PreprocessOverride(mean: [0], std: [1], range: .symmetric, bgr: false)
        case .none:
            return PreprocessOverride(mean: [0], std: [1], range: .byte, bgr: false)
        }
    }
}

/// Where a preprocessing setting came from, most binding first.
public enum SettingSource: String, Codable, Sendable, Comparable {
    /// A command-line flag or an experiment config.
    case flag
    /// The model file's own metadata (Braid's exports write it).
    case metadata
    /// The model's entry in Models/manifest.
    case manifest
    /// Braid's default: the declared input shape, RGB, 0-1, mean 0, std 1.
    case `default`

    public static func < (a: SettingSource, b: SettingSource) -> Bool {
        let order: [SettingSource] = [.flag, .metadata, .manifest, .default]
        return order.firstIndex(of: a)! < order.firstIndex(of: b)!
    }
}

/// Settings that override part of a model's `InputSpec` (nil: not set). Each setting is
/// parsed and checked in one place, `set(_:_:)`, which the CLI, experiment configs and
/// model metadata all go through.
///
/// The mean and std apply after the range: `x = (p * range.scale - range.offset - mean) / std`
/// (see `InputSpec`).
public struct PreprocessOverride: Codable, Sendable, Equatable {
    public var mean: [Float]?
    public var std: [Float]?
    public var range: PixelRange?
    /// A free multiplier of 0...255 pixels, instead of a range.
    public var scale: Float?
    public var bgr: Bool?
    public var layout: InputLayout?

    public init(mean: [Float]? = nil, std: [Float]? = nil, range: PixelRange? = nil, scale: Float? = nil,
                bgr: Bool? = nil, layout: InputLayout? = nil) {
        self.mean = mean; self.std = std; self.range = range; self.scale = scale; self.bgr = bgr; self.layout = layout
    }

    /// The settings a text option names (`--mean`, `--std`, `--scale`, `--range`,
    /// `--channel-order`, `--layout`, `--preprocess`).
    public enum Key: String, Sendable, CaseIterable {
        case mean, std, scale, range
        case channelOrder = "channel-order"
        case layout, preprocess
    }

    /// True when no setting is given.
    public var isEmpty: Bool { self == PreprocessOverride() }

    /// Sets `key` from its text form: mean and std a comma-separated list of 1 or 3 numbers
    /// (std non-zero), scale a positive number, range `0-1`, `0-255` or `-1-1`,
    /// channel-order `rgb` or `bgr`, layout `nchw` or `nhwc`, preprocess a preset name
    /// (which sets mean, std, range and channel order).
    ///
    /// - Throws: `DataError.invalidArgument` naming the setting and the accepted values.
    public mutating func set(_ key: Key, _ text: String) throws {
        let value = text.trimmingCharacters(in: .whitespaces)
        func fail(_ expected: String) -> DataError {
            DataError.invalidArgument("\(key.rawValue) takes \(expected), got '\(text)'")
        }
        switch key {
        case .mean, .std:
            let parts = value.split(separator: ",", omittingEmptySubsequences: false)
                .map { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 1 || parts.count == 3, parts.allSatisfy({ $0 != nil && $0!.isFinite }) else {
                throw fail("1 or 3 comma-separated numbers")
            }
            let v = parts.map { $0! }
            if key == .mean { mean = v } else {
                guard !v.contains(0) else { throw fail("non-zero numbers") }
                std = v
            }
        case .scale:
            guard let v = Float(value), v.isFinite, v > 0 else { throw fail("a positive number (1/255 = 0.00392157)") }
            scale = v; range = nil
        case .range:
            guard let r = PixelRange(rawValue: value) else {
                throw fail(PixelRange.allCases.map(\.rawValue).joined(separator: ", "))
            }
            range = r; scale = nil
        case .channelOrder:
            switch value.lowercased() {
            case "rgb": bgr = false
            case "bgr": bgr = true
            default: throw fail("rgb or bgr")
            }
        case .layout:
            guard let l = InputLayout(rawValue: value.uppercased()) else { throw fail("nchw or nhwc") }
            layout = l
        case .preprocess:
            guard let p = PreprocessPreset(rawValue: value.lowercased()) else {
                throw fail(PreprocessPreset.allCases.map(\.rawValue).joined(separator: ", "))
            }
            self = p.settings.over(self)
        }
    }

    /// These settings, with `base`'s where these have none.
    public func over(_ base: PreprocessOverride) -> PreprocessOverride {
        var o = self
        o.mean = mean ?? base.mean
        o.std = std ?? base.std
        if range == nil && scale == nil { o.range = base.range; o.scale = base.scale }
        o.bgr = bgr ?? base.bgr
        o.layout = layout ?? base.layout
        return o
    }

    /// The names of the settings given, as `InputSpec.Field`s.
    public var fields: [InputSpec.Field] {
        var f: [InputSpec.Field] = []
        if layout != nil { f.append(.layout) }
        if range != nil || scale != nil { f.append(.range) }
        if mean != nil { f.append(.mean) }
        if std != nil { f.append(.std) }
        if bgr != nil { f.append(.channelOrder) }
        return f
    }

    /// `spec` with these settings applied (layout is the caller's: it changes the size).
    ///
    /// - Throws: `DataError.invalidArgument` when a mean or std has 3 values for a
    ///   1-channel input.
    public func applied(to spec: InputSpec) throws -> InputSpec {
        var s = spec
        if let range { s.scale = range.scale; s.offset = range.offset } else if let scale { s.scale = scale; s.offset = 0 }
        if let mean { s.mean = mean }
        if let std { s.std = std }
        if let bgr { s.bgr = bgr }
        try s.validate()
        return s
    }

    /// The settings Braid's own exports (and other producers following the same keys) state in
    /// a model's metadata: `input_range` (`0..255`, `0..1`, `-1..1`), `input_layout`
    /// (`NCHW`, `NHWC`), `input_mean`, `input_std` (comma-separated) and
    /// `input_channel_order` (`RGB`, `BGR`); keys bare or with the ONNX importer's `meta.`
    /// prefix. Nil when none is present.
    ///
    /// - Throws: `DataError.invalidArgument` naming the key when a value is malformed.
    public init?(metadata: [String: String]) throws {
        func get(_ k: String) -> String? { metadata[k] ?? metadata["meta." + k] }
        var o = PreprocessOverride()
        let keys: [(String, Key, (String) -> String)] = [
            ("input_range", .range, { $0.replacingOccurrences(of: "..", with: "-") }),
            ("input_layout", .layout, { $0 }), ("input_mean", .mean, { $0 }), ("input_std", .std, { $0 }),
            ("input_channel_order", .channelOrder, { $0 }),
        ]
        for (name, key, normalise) in keys {
            guard let v = get(name) else { continue }
            do { try o.set(key, normalise(v)) } catch {
                throw DataError.invalidArgument("metadata \(name): \(error)")
            }
        }
        guard !o.isEmpty else { return nil }
        self = o
    }
}

extension InputSpec {
    /// The parts of a spec whose origin `braid inspect` and metrics.json report.
    public enum Field: String, Codable, Sendable, CaseIterable {
        case size, layout, range, mean, std
        case channelOrder = "channel_order"
    }

    /// The pixel range the spec's scale and offset describe, or nil for a free scale.
    public var range: PixelRange? { PixelRange(scale: scale, offset: offset) }

    /// The spec as metrics.json and `braid inspect --json` state it, with each field's source.
    public func report(sources: [Field: SettingSource]) -> InputReport {
        func rounded(_ v: [Float]) -> [Double] { v.map { Double("\($0)") ?? Double($0) } }
        let r = range
        return InputReport(layout: layout.rawValue, channels: channels, height: height, width: width,
                           range: r?.rawValue, scale: r == nil ? Double(scale) : nil, offset: r == nil ? Double(offset) : nil,
                           mean: rounded(mean), std: rounded(std),
                           channelOrder: channels == 3 ? (bgr ? "BGR" : "RGB") : "gray",
                           sources: Dictionary(uniqueKeysWithValues: sources.map { ($0.key.rawValue, $0.value.rawValue) }))
    }

    /// One line: `RGB NCHW 3x224x224, 0-1, mean [0.485, ...], std [...]`.
    public var summary: String {
        func list(_ v: [Float]) -> String { "[" + v.map { String(format: "%g", $0) }.joined(separator: ", ") + "]" }
        let order = channels == 3 ? (bgr ? "BGR" : "RGB") : "gray"
        let size = layout == .nchw ? "\(channels)x\(height)x\(width)" : "\(height)x\(width)x\(channels)"
        let pixels = range.map { "pixels \($0.rawValue)" } ?? String(format: "pixels x %g", scale)
        return "\(order) \(layout.rawValue) \(size), \(pixels), mean \(list(mean)), std \(list(std))"
    }
}

extension InputLayout: Codable {}

/// How a model's input was prepared, as metrics.json and `braid inspect --json` state it:
/// layout, channels, height, width, the pixel range (or a free scale and offset), mean, std,
/// channel order, and where each field came from (`sources`: field -> flag, metadata,
/// manifest or default).
public struct InputReport: Codable, Sendable, Equatable {
    public var layout: String
    public var channels: Int
    public var height: Int
    public var width: Int
    public var range: String?
    public var scale: Double?
    public var offset: Double?
    public var mean: [Double]
    public var std: [Double]
    public var channelOrder: String
    public var sources: [String: String]

    enum CodingKeys: String, CodingKey {
        case layout, channels, height, width, range, scale, offset, mean, std, sources
        case channelOrder = "channel_order"
    }

    /// The report as a JSON object (for writers that assemble `[String: Any]`).
    public var jsonObject: Any {
        (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(self))) ?? [:]
    }
}
