import Foundation

/// What an exported ensemble records about itself in the model's metadata: class names, how
/// it was made, and the preprocessing its `image` input expects.
public struct EnsembleInfo: Sendable, Equatable {
    public var classes: [String]
    public var sources: [String]
    /// The members' output names, in member order.
    public var members: [String]
    public var depths: [Int]
    public var method: String
    public var dataset: String
    public var braidVersion: String
    /// How `logits` and `probabilities` combine the members.
    public var vote: EnsembleVote
    /// The `image` input: `[N, channels, height, width]`, NCHW, float32 pixels in 0...255.
    public var image: EnsembleImage

    public init(classes: [String], sources: [String], members: [String], depths: [Int], method: String,
                dataset: String, braidVersion: String = BraidRuntime.braidVersion, vote: EnsembleVote = .sumOfLogits,
                image: EnsembleImage) {
        self.classes = classes; self.sources = sources; self.members = members; self.depths = depths
        self.method = method; self.dataset = dataset; self.braidVersion = braidVersion; self.vote = vote
        self.image = image
    }

    /// The model's `metadata_props`.
    public var metadata: [String: String] {
        func json<T: Encodable>(_ v: T) -> String {
            let enc = JSONEncoder()
            enc.outputFormatting = [.withoutEscapingSlashes]
            return String(decoding: (try? enc.encode(v)) ?? Data("[]".utf8), as: UTF8.self)
        }
        return ["classes": json(classes), "sources": json(sources), "members": json(members),
                "freeze_depths": json(depths), "method": method, "dataset": dataset,
                "braid_version": braidVersion, "vote": vote.rawValue,
                "input_name": EnsembleNames.image, "input_range": "0..255", "input_layout": "NCHW",
                "input_channels": String(image.channels), "input_height": String(image.height),
                "input_width": String(image.width)]
    }

    /// The metadata keys `init?(metadata:)` needs that are missing or malformed.
    public static func missing(in metadata: [String: String]) -> [String] {
        func get(_ k: String) -> String? { metadata[k] ?? metadata["meta." + k] }
        var missing: [String] = []
        if get("input_range") != "0..255" { missing.append("input_range (0..255)") }
        if get("input_layout") != "NCHW" { missing.append("input_layout (NCHW)") }
        if !["1", "3"].contains(get("input_channels") ?? "") { missing.append("input_channels (1 or 3)") }
        for k in ["input_height", "input_width"] where (get(k).flatMap(Int.init) ?? 0) <= 0 { missing.append(k) }
        let classes = get("classes").flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) } ?? []
        if classes.isEmpty { missing.append("classes (a JSON list of names)") }
        return missing
    }

    /// Reads the fields back from `metadata_props` (keys bare or with the importer's `meta.`
    /// prefix). Nil when the preprocessing or the class names are missing or malformed.
    public init?(metadata: [String: String]) {
        func get(_ k: String) -> String? { metadata[k] ?? metadata["meta." + k] }
        func list<T: Decodable>(_ k: String, _ t: T.Type) -> T? {
            get(k).flatMap { try? JSONDecoder().decode(T.self, from: Data($0.utf8)) }
        }
        guard get("input_range") == "0..255", get("input_layout") == "NCHW",
              let c = get("input_channels").flatMap(Int.init), c == 1 || c == 3,
              let h = get("input_height").flatMap(Int.init), h > 0,
              let w = get("input_width").flatMap(Int.init), w > 0,
              let classes = list("classes", [String].self), !classes.isEmpty else { return nil }
        self.init(classes: classes, sources: list("sources", [String].self) ?? [],
                  members: list("members", [String].self) ?? [], depths: list("freeze_depths", [Int].self) ?? [],
                  method: get("method") ?? "", dataset: get("dataset") ?? "",
                  braidVersion: get("braid_version") ?? "",
                  vote: get("vote").flatMap(EnsembleVote.init(rawValue:)) ?? .sumOfLogits,
                  image: EnsembleImage(channels: c, height: h, width: w))
    }
}

/// The image an exported ensemble takes: `[N, channels, height, width]` float32 in 0...255.
public struct EnsembleImage: Sendable, Equatable {
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels; self.height = height; self.width = width
    }
}

/// How an ensemble combines its members, as the run voted (`TrainOptions.vote`).
public enum EnsembleVote: String, Sendable, Equatable {
    /// `logits` = the sum of the members' logits, `probabilities` = its softmax.
    case sumOfLogits = "sum_of_logits"
    /// `probabilities` = the mean of the members' softmaxes, `logits` = its log (so that
    /// softmax(logits) = probabilities; a class every member gives probability 0 has logit -inf).
    case meanOfProbabilities = "mean_of_probabilities"
}

/// Names of the ensemble graph's input and outputs.
public enum EnsembleNames {
    public static let image = "image"
    public static let logits = "logits"
    public static let probabilities = "probabilities"
}
