import BraidTensor
import Foundation
import XCTest

/// The model and data cache the tests read (`$BRAID_CACHE`, else `.cache` in the repository),
/// filled by tools/fetch-models, tools/fetch-conformance, tools/make-reference and the zoo
/// scripts.
///
/// A test that needs a cached file calls `require`. When the file is absent the test is
/// skipped, naming the tool that makes it, unless `BRAID_REQUIRE_CACHE=1` (tools/test and CI
/// set it), where the absence fails the test: CI always has the cache, so a skip there would
/// hide a test that never ran. A file that exists but lacks what belongs beside it (a model
/// without its reference outputs) is not "cache absent": callers fail on it in every mode.
public enum TestCache {
    /// The repository root.
    public static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    public static var root: URL {
        if let c = ProcessInfo.processInfo.environment["BRAID_CACHE"] { return URL(fileURLWithPath: c) }
        return repo.appendingPathComponent(".cache")
    }

    /// True when a missing cache file fails instead of skipping.
    public static var isRequired: Bool { ProcessInfo.processInfo.environment["BRAID_REQUIRE_CACHE"] == "1" }

    /// `relative` below the cache, as a path.
    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The path of `relative` below the cache when it exists; otherwise skips the test (or,
    /// under `BRAID_REQUIRE_CACHE=1`, fails it), saying that `tool` makes it.
    @discardableResult
    public static func require(_ relative: String, madeBy tool: String) throws -> String {
        let p = path(relative)
        try requireFile(p, madeBy: tool)
        return p
    }

    /// A reference array below the cache that belongs beside a model already required (its
    /// input or the outputs another framework gave): a missing one fails in every mode, since
    /// the tool that made the model did not finish.
    public static func reference(_ relative: String, madeBy tool: String) throws -> Tensor {
        let p = path(relative)
        guard FileManager.default.fileExists(atPath: p) else {
            throw MissingReference(description: "\(p) missing: run \(tool)")
        }
        return try Npy.read(path: p)
    }

    /// As `require`, for an absolute path inside the cache.
    public static func requireFile(_ path: String, madeBy tool: String) throws {
        guard !FileManager.default.fileExists(atPath: path) else { return }
        let text = "\(path) is not in the cache: run \(tool)"
        if isRequired { throw MissingCacheFile(description: text + " (BRAID_REQUIRE_CACHE=1)") }
        throw XCTSkip(text)
    }
}

/// A cached file a test needs is absent while `BRAID_REQUIRE_CACHE=1`.
public struct MissingCacheFile: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A reference output a test compares with is absent.
public struct MissingReference: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// The committed inputs of one fuzz target's regression folder, `Fuzz/regressions/<target>`,
/// as sorted paths. Fails (throws) when the folder is missing or empty: a moved or emptied
/// folder would otherwise check nothing.
public func fuzzRegressionInputs(_ target: String) throws -> [String] {
    let dir = TestCache.repo.appendingPathComponent("Fuzz/regressions/\(target)").path
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
        throw MissingRegressionFolder(description: "no fuzz-regression folder \(dir)")
    }
    let files = names.filter { !$0.hasPrefix(".") }.sorted()
    guard !files.isEmpty else { throw MissingRegressionFolder(description: "the fuzz-regression folder \(dir) is empty") }
    return files.map { "\(dir)/\($0)" }
}

public struct MissingRegressionFolder: Error, CustomStringConvertible {
    public var description: String
}
