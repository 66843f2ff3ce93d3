import BraidRuntime
import Foundation

/// Parses `NAME=1x3x224x224` or `1x3x224x224`.
func parseShapeArg(_ s: String) throws -> (name: String?, shape: [Int]) {
    var name: String?
    var dims = Substring(s)
    if let eq = s.lastIndex(of: "=") {
        name = String(s[..<eq])
        dims = s[s.index(after: eq)...]
    }
    let parts = dims.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
    guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! > 0 }) else {
        throw GraphError(node: nil, "bad shape '\(s)': expected [NAME=]D1xD2x... with positive sizes")
    }
    return (name, parts.map { $0! })
}

/// Binds `[NAME=]VALUE` arguments to the model's feed inputs: named ones by name, the rest
/// in input order.
func bindArguments<T>(_ args: [(name: String?, value: T)], graph: Graph) throws -> [String: T] {
    let feeds = graph.feedInputs.map(\.name)
    var result: [String: T] = [:]
    var next = 0
    for (name, value) in args {
        if let name {
            guard feeds.contains(name) else {
                throw GraphError(node: nil, "unknown input '\(name)' (the model's inputs: \(feeds.joined(separator: ", ")))")
            }
            result[name] = value
        } else {
            while next < feeds.count && result[feeds[next]] != nil { next += 1 }
            guard next < feeds.count else {
                throw GraphError(node: nil, "more inputs given than the model takes (\(feeds.count): \(feeds.joined(separator: ", ")))")
            }
            result[feeds[next]] = value
            next += 1
        }
    }
    return result
}
