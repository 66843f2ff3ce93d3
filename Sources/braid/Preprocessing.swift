import ArgumentParser
import BraidData

/// The preprocessing options of `finetune`, `inspect` and `run --image`. Each value is
/// `VALUE` (every source) or `NAME=VALUE` (the source whose file stem or path is NAME) and is
/// decoded into `PreprocessOverride`, which checks it.
struct PreprocessOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditionalSingleValue,
            help: "[NAME=]imagenet|caffe|inception|none: imagenet is RGB, 0-1, ImageNet mean and std; caffe BGR, 0-255, mean 103.939,116.779,123.68; inception -1..1; none 0-255.")
    var preprocess: [String] = []
    @Option(name: .long, parsing: .unconditionalSingleValue, help: "[NAME=]M or M1,M2,M3: mean subtracted after the range.")
    var mean: [String] = []
    @Option(name: .long, parsing: .unconditionalSingleValue, help: "[NAME=]S or S1,S2,S3: std divided by after the mean.")
    var std: [String] = []
    @Option(name: .long, parsing: .unconditionalSingleValue, help: "[NAME=]X: multiply 0..255 pixels by X (instead of --range).")
    var scale: [String] = []
    @Option(name: .long, parsing: .unconditionalSingleValue, help: "[NAME=]0-1|0-255|-1-1: the range pixels are brought to.")
    var range: [String] = []
    @Option(name: .long, help: "[NAME=]rgb|bgr: channel order the model expects.") var channelOrder: [String] = []
    @Flag(name: .long, help: "Every source expects BGR (as --channel-order bgr).") var bgr = false
    @Option(name: .long, help: "[NAME=]nchw|nhwc: the model's input layout.") var layout: [String] = []

    /// True when no option was given.
    var isEmpty: Bool {
        !bgr && [preprocess, mean, std, scale, range, channelOrder, layout].allSatisfy(\.isEmpty)
    }

    /// One override per source (nil: none for it), or nil when no option was given. Presets
    /// apply first, then the single settings; for each, values for every source before
    /// values for one.
    func overrides(sources: [String]) throws -> [PreprocessOverride?]? {
        guard !isEmpty else { return nil }
        var result = [PreprocessOverride](repeating: PreprocessOverride(), count: max(sources.count, 1))
        let given: [(PreprocessOverride.Key, [String])] = [
            (.preprocess, preprocess), (.mean, mean), (.std, std), (.scale, scale), (.range, range),
            (.channelOrder, (bgr ? ["bgr"] : []) + channelOrder), (.layout, layout),
        ]
        for (key, values) in given {
            let split = try values.map { v -> (targets: [Int], value: String, named: Bool) in
                let parts = v.split(separator: "=", maxSplits: 1).map(String.init)
                if parts.count == 1 { return (Array(result.indices), v, false) }
                return (try sourceIndices(named: parts[0], in: sources, option: "--\(key.rawValue) \(v)"), parts[1], true)
            }
            for (targets, value, _) in split.filter({ !$0.named }) + split.filter(\.named) {
                for j in targets {
                    do { try result[j].set(key, value) } catch { throw ValidationError("--\(error)") }
                }
            }
        }
        return result.map { $0.isEmpty ? nil : $0 }
    }
}

/// The indices of the sources whose file stem (or path) is `name`.
func sourceIndices(named name: String, in sources: [String], option: String) throws -> [Int] {
    let stems = sources.map(fileStem)
    let matches = sources.indices.filter { stems[$0] == name || sources[$0] == name }
    guard !matches.isEmpty else {
        throw ValidationError("\(option): no --source named '\(name)' (sources: \(stems.joined(separator: ", ")))")
    }
    return matches
}

/// A path's file name without its last extension.
func fileStem(_ path: String) -> String {
    let file = path.split(separator: "/").last.map(String.init) ?? path
    return file.split(separator: ".").dropLast().joined(separator: ".")
}
