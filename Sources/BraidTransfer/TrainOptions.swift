import BraidTraining
import Foundation

/// How a fine-tuning run trains its members: every setting once, with its default and its
/// valid range (`validate()`).
///
/// The same type is written to a run directory's `run.json` (camelCase keys), read from an
/// experiment configuration's `training` object (snake_case keys, `decode(json:)`), and
/// filled from `braid finetune`'s flags (kebab-case: `--weight-decay`). Keys missing from a
/// record or configuration keep their defaults; unknown keys are errors.
public struct TrainOptions: Sendable, Equatable {
    /// Which layers train and with which loss.
    public enum Method: String, Codable, Sendable, CaseIterable {
        /// All layers, cross-entropy.
        case standard
        /// The new head alone (every backbone unit frozen).
        case linearProbe = "linear-probe"
        /// The first `freeze[j]` layer units of member j frozen.
        case freeze
        /// All layers re-initialised (He-uniform) and trained.
        case scratch
        /// All layers with the L2-SP penalty alpha/2 ||w - w0||^2 + beta/2 ||w_head||^2.
        case l2sp
        /// All layers, backbone gradients masked to a fraction `childP` (`childMode`).
        case childTuning = "child-tuning"
        /// One source, a freeze bitmask over its units chosen by a genetic search.
        case als
        /// Several sources with the collaborative loss, freeze depths searched by PSO (or
        /// given with `freeze`).
        case amcf
        /// Several sources with the collaborative loss at the given freeze depths.
        case amcfFixed = "amcf-fixed"
        /// Several sources, each fine-tuned on its own as `standard` does (all layers, no
        /// collaborative loss), their logits summed: the baseline of every multi-source method.
        case ensemble
        /// `ensemble` at freeze depths searched by AMCF's swarm (no collaborative loss, in the
        /// search's fine-tunes too).
        case ensembleSearched = "ensemble-searched"
        /// Several sources, all layers, with the collaborative loss; no search.
        case collab
        /// `collab` and `ensemble` both trained; the set of members whose vote scores higher
        /// on validation is kept. The vote is a weighted sum of logits (each member weighted
        /// by its validation accuracy when that beats equal weights there), dropping members
        /// whose removal raises the validation accuracy (`WeightedVote`).
        case amcfWeighted = "amcf-weighted"

        /// Methods training one source at a time.
        public var isSingleSource: Bool {
            ![.amcf, .amcfFixed, .ensemble, .ensembleSearched, .collab, .amcfWeighted].contains(self)
        }
    }

    /// The optimiser each member gets.
    public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
        /// SGD with `momentum` (Nesterov when `nesterov`) and coupled weight decay.
        case sgd
        /// Adam (beta1 0.9, beta2 0.999) with L2 weight decay added to the gradient.
        case adam
        /// AdamW: Adam with decoupled weight decay.
        case adamw
    }

    /// How the learning rate changes over epochs.
    public enum Schedule: String, Codable, Sendable, CaseIterable {
        /// lr * gamma^floor(epoch / stepSize) (PyTorch's StepLR).
        case step
        /// lr * (1 + cos(pi * epoch / epochs)) / 2.
        case cosine
        /// lr throughout.
        case constant
    }

    /// The collaborative consistency term of several members.
    public enum Consistency: String, Codable, Sendable, CaseIterable {
        /// (1/N) sum_j ||z_j - mean_i z_i||_2 on the logits z_j (per sample, not squared).
        case l2
        /// (1/N) sum_j KL(mean_i softmax(z_i) || softmax(z_j)).
        case kl
    }

    /// How the ensemble predicts.
    public enum Vote: String, Codable, Sendable, CaseIterable {
        /// argmax of the summed logits.
        case logits
        /// argmax of the mean of the members' probabilities.
        case softmax
    }

    /// What a NaN or infinite loss or gradient does.
    public enum NonFinitePolicy: String, Codable, Sendable, CaseIterable {
        /// Fail, after checkpointing the state before that batch.
        case stop
        /// Drop that batch's update (running statistics restored) and go on.
        case skip
    }

    public var method = Method.standard
    /// Freeze depth in layer units per member (one value: every member), for `freeze`,
    /// `amcf-fixed`, and `amcf` without a search.
    public var freeze: [Int] = []
    public var epochs = 10
    /// Images per batch; an epoch drops the last incomplete batch.
    public var batch = 64
    /// Base learning rate.
    public var lr: Float = 0.01
    public var optimizer = OptimizerKind.sgd
    public var momentum: Float = 0.9
    public var nesterov = false
    public var weightDecay: Float = 5e-4
    public var schedule = Schedule.step
    /// StepLR's period in epochs and factor.
    public var stepSize = 30
    public var gamma: Float = 0.1
    /// Steps of linear warm-up from 0 to the scheduled rate.
    public var warmupSteps = 0
    /// Cross-entropy against (1 - eps) one-hot + eps / K.
    public var labelSmoothing: Float = 0
    /// Weight of the collaborative consistency term (used with several members).
    public var lambda: Float = 0.2
    public var consistency = Consistency.l2
    public var vote = Vote.logits
    /// Clip each member's gradient to this global L2 norm (0: off).
    public var clipNorm: Float = 0
    /// Clip each member's gradient to this percentile of the global norms of its steps so far
    /// (`AdaptiveClip`; 0: off, 100: never clips). Not with `clipNorm`. A new run at an
    /// automatically chosen rate without either gets `autoRateClipPercentile`.
    public var clipPercentile: Float = 0
    /// Seeds the heads, splits, batch order, masks and searches.
    public var seed: UInt64 = 0
    /// Fractions of the dataset held out for validation and test (stratified).
    public var valFraction = 0.1
    public var testFraction = 0.2
    /// L2-SP: weight of alpha/2 ||w - w0||^2 on the backbone and beta/2 ||w||^2 on the head.
    public var l2spAlpha: Float = 0.01
    public var l2spBeta: Float = 0.01
    /// Child-Tuning: kept fraction p of backbone gradients, and `d` (a Bernoulli mask each
    /// step) or `f` (a fixed mask of the top-p Fisher information).
    public var childP: Float = 0.3
    public var childMode = ChildTuningMask.Mode.d
    /// Reuse frozen-prefix activations across epochs (when no augmentation changes images).
    public var prefixCache = true
    /// In-memory budget of the prefix cache in MiB (beyond it, activations spill to disk).
    public var cacheMB = 2048
    /// Also checkpoint every this many batches within an epoch (0: at epoch ends only).
    public var checkpointEvery = 0
    public var onNonfinite = NonFinitePolicy.stop
    /// A geometric ramp at the start of training: step i's rate is at most
    /// `rampFrom * rampGrowth^i` (0: no ramp). `--lr auto`'s restarts climb to their rate as
    /// its range test did (`Finetuner.trainRecoveringRate`).
    public var rampFrom: Float = 0
    public var rampGrowth: Float = 1
    /// Cap in bytes on the members' training plans (buffers, weights, optimiser state),
    /// checked before anything is allocated; nil: no cap.
    public var maxMemory: Int?

    public init() {}

    /// The defaults, as `init()` sets them.
    public static let defaults = TrainOptions()

    /// `clipPercentile` of a run whose rate the range test chooses (`--lr auto`), when neither
    /// clipping setting is given: the range test and the training clip each step to the median
    /// of the norms so far. Batch-norm-folded random-weight EfficientNets put out penultimate
    /// features whose norm is 6 on the median image and up to 1000 on a few; unclipped, the
    /// steps on those batches (gradient norms 20 to 130 against a median of 3) made every rate
    /// that learns diverge, in PyTorch as in Braid (BENCHMARKS.md, "Fine-tuning the files users hold").
    public static let autoRateClipPercentile: Float = 50

    /// Checks every setting's range.
    ///
    /// - Throws: `TrainingError` whose `setting` names the first offending setting.
    public func validate() throws {
        func check(_ ok: Bool, _ setting: String, _ expected: String, _ value: Any) throws {
            if !ok { throw TrainingError("\(setting) must be \(expected), got \(value)", setting: setting) }
        }
        try check(epochs >= 1, "epochs", "at least 1", epochs)
        try check(batch >= 1, "batch", "at least 1", batch)
        try check(lr > 0 && lr.isFinite, "lr", "a positive number", lr)
        try check(momentum >= 0 && momentum < 1, "momentum", "in [0, 1)", momentum)
        try check(weightDecay >= 0 && weightDecay.isFinite, "weightDecay", "non-negative", weightDecay)
        try check(stepSize >= 1, "stepSize", "at least 1", stepSize)
        try check(gamma > 0 && gamma.isFinite, "gamma", "positive", gamma)
        try check(warmupSteps >= 0, "warmupSteps", "non-negative", warmupSteps)
        try check(labelSmoothing >= 0 && labelSmoothing < 1, "labelSmoothing", "in [0, 1)", labelSmoothing)
        try check(lambda >= 0 && lambda.isFinite, "lambda", "non-negative", lambda)
        try check(clipNorm >= 0 && clipNorm.isFinite, "clipNorm", "non-negative", clipNorm)
        try check(clipPercentile >= 0 && clipPercentile <= 100, "clipPercentile", "in [0, 100] (0: off)", clipPercentile)
        try check(clipNorm == 0 || clipPercentile == 0, "clipPercentile", "0 when clipNorm is set (one clipping rule)",
                  clipPercentile)
        try check(valFraction >= 0 && valFraction < 1, "valFraction", "in [0, 1)", valFraction)
        try check(testFraction >= 0 && testFraction < 1 && valFraction + testFraction < 1, "testFraction",
                  "in [0, 1) with valFraction + testFraction below 1", testFraction)
        try check(l2spAlpha >= 0 && l2spBeta >= 0, "l2spAlpha", "non-negative (and l2spBeta too)", "\(l2spAlpha), \(l2spBeta)")
        try check(childP > 0 && childP <= 1, "childP", "in (0, 1]", childP)
        try check(cacheMB >= 0, "cacheMB", "non-negative", cacheMB)
        try check(checkpointEvery >= 0, "checkpointEvery", "a whole number of batches (0: off)", checkpointEvery)
        try check(freeze.allSatisfy { $0 >= 0 }, "freeze", "non-negative whole numbers", freeze)
        try check(rampFrom >= 0 && rampFrom.isFinite, "rampFrom", "non-negative (0: no ramp)", rampFrom)
        try check(rampGrowth >= 1 && rampGrowth.isFinite, "rampGrowth", "at least 1", rampGrowth)
        try check((maxMemory ?? 1) > 0, "maxMemory", "a positive number of bytes", maxMemory ?? 0)
    }
}

// MARK: - Coding

extension TrainOptions: Codable {
    /// One entry per setting: its key and how to read and write it. Decoding, encoding and
    /// the unknown-key check all walk this list.
    private static let fields: [any OptionField] = [
        Field(\.method, "method"), Field(\.freeze, "freeze"), Field(\.epochs, "epochs"), Field(\.batch, "batch"),
        Field(\.lr, "lr"), Field(\.optimizer, "optimizer"), Field(\.momentum, "momentum"),
        Field(\.nesterov, "nesterov"), Field(\.weightDecay, "weightDecay"), Field(\.schedule, "schedule"),
        Field(\.stepSize, "stepSize"), Field(\.gamma, "gamma"), Field(\.warmupSteps, "warmupSteps"),
        Field(\.labelSmoothing, "labelSmoothing"), Field(\.lambda, "lambda"), Field(\.consistency, "consistency"),
        Field(\.vote, "vote"), Field(\.clipNorm, "clipNorm"),
        Field(\.clipPercentile, "clipPercentile"), Field(\.seed, "seed"), Field(\.valFraction, "valFraction"),
        Field(\.testFraction, "testFraction"), Field(\.l2spAlpha, "l2spAlpha"), Field(\.l2spBeta, "l2spBeta"),
        Field(\.childP, "childP"), Field(\.childMode, "childMode"), Field(\.prefixCache, "prefixCache"),
        Field(\.cacheMB, "cacheMB"), Field(\.checkpointEvery, "checkpointEvery"), Field(\.onNonfinite, "onNonfinite"),
        Field(\.maxMemory, "maxMemory"), Field(\.rampFrom, "rampFrom"), Field(\.rampGrowth, "rampGrowth"),
    ]

    /// Every setting's key as `run.json` spells it.
    public static var keys: [String] { fields.map(\.key) }

    /// Decodes a run record or configuration; settings it lacks keep their defaults.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: OptionKey.self)
        for f in Self.fields { try f.decode(into: &self, from: c) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: OptionKey.self)
        for f in Self.fields { try f.encode(self, to: &c) }
    }

    /// Decodes an experiment configuration's `training` object (snake_case keys such as
    /// `weight_decay`) over the defaults and validates the result.
    ///
    /// - Parameters:
    ///   - object: the JSON object's bytes.
    ///   - place: how messages name the object (`training`).
    ///   - extraKeys: snake_case keys the caller reads itself (allowed here, ignored).
    /// - Throws: `TrainingError` naming `place.key` for an unknown key, a value of the wrong
    ///   type or one out of range.
    public static func decode(json object: Data, place: String, extraKeys: Set<String> = []) throws -> TrainOptions {
        let dict = try JSONSerialization.jsonObject(with: object) as? [String: Any] ?? [:]
        // Method and seed vary per cell; the others are shared.
        let camel = Dictionary(uniqueKeysWithValues: keys.filter { $0 != "method" && $0 != "seed" }.map { (snakeCase($0), $0) })
        let allowed = Set(camel.keys).union(extraKeys)
        let unknown = Set(dict.keys).subtracting(allowed)
        if !unknown.isEmpty {
            throw TrainingError("unknown key(s) \(unknown.sorted().joined(separator: ", ")) in \(place) (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in OptionKey(camel[path.last!.stringValue] ?? "") }
        let o: TrainOptions
        do {
            o = try decoder.decode(TrainOptions.self, from: object)
        } catch let e as OptionValueError {
            throw TrainingError("\(place).\(snakeCase(e.key)) must be \(e.expected)", setting: e.key)
        }
        do {
            try o.validate()
        } catch let e as TrainingError {
            throw TrainingError("\(place).\(snakeCase(e.setting ?? "")): \(e.description)", setting: e.setting)
        }
        return o
    }

    /// `weightDecay` -> `weight_decay`, `cacheMB` -> `cache_mb`.
    public static func snakeCase(_ key: String) -> String { settingWords(key, separator: "_") }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is UInt64.Type, is Int?.Type: return "a whole number"
        case is Float.Type, is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is [Int].Type: return "a list of whole numbers"
        default:
            guard let named = type as? any CaseIterable.Type else { return "a value of type \(type)" }
            let names = named.allCases.map { "\(($0 as? any RawRepresentable)?.rawValue ?? $0)" }
            return "one of " + names.joined(separator: ", ")
        }
    }
}

/// A setting whose value has the wrong type or is not one of its named values.
struct OptionValueError: Error, CustomStringConvertible {
    var key: String
    var expected: String
    var description: String { "\(key) must be \(expected)" }
}

/// A coding key for any setting name.
struct OptionKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private protocol OptionField: Sendable {
    var key: String { get }
    func decode(into o: inout TrainOptions, from c: KeyedDecodingContainer<OptionKey>) throws
    func encode(_ o: TrainOptions, to c: inout KeyedEncodingContainer<OptionKey>) throws
}

private struct Field<Value: Codable & Sendable>: OptionField, @unchecked Sendable {
    let path: WritableKeyPath<TrainOptions, Value>
    let key: String
    init(_ path: WritableKeyPath<TrainOptions, Value>, _ key: String) { self.path = path; self.key = key }

    func decode(into o: inout TrainOptions, from c: KeyedDecodingContainer<OptionKey>) throws {
        let value: Value?
        do {
            value = try c.decodeIfPresent(Value.self, forKey: OptionKey(key))
        } catch {
            // Foundation reports some mismatches (1.5 for a whole number) as its own errors.
            throw OptionValueError(key: key, expected: TrainOptions.describe(Value.self))
        }
        if let value { o[keyPath: path] = value }
    }

    func encode(_ o: TrainOptions, to c: inout KeyedEncodingContainer<OptionKey>) throws {
        try c.encode(o[keyPath: path], forKey: OptionKey(key))
    }
}
