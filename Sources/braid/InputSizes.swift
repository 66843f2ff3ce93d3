import ArgumentParser

/// Parses `--input-size` values: `HxW` for every source, or `NAME=HxW` for the source whose
/// file stem (or path) is NAME. Returns one entry per source (nil: its own size), or nil when
/// no value was given.
func parseInputSizes(_ values: [String], sources: [String]) throws -> [[Int]?]? {
    guard !values.isEmpty else { return nil }
    var sizes: [[Int]?] = sources.map { _ in nil }
    let stems = sources.map { path -> String in
        let file = path.split(separator: "/").last.map(String.init) ?? path
        return file.split(separator: ".").dropLast().joined(separator: ".")
    }
    for value in values {
        let parts = value.split(separator: "=", maxSplits: 1).map(String.init)
        let sizeText = parts.last!
        let dims = sizeText.lowercased().split(separator: "x").compactMap { Int($0) }
        guard dims.count == 2, dims.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
            throw ValidationError("--input-size takes HEIGHTxWIDTH or NAME=HEIGHTxWIDTH (sides 1...4096), got '\(value)'")
        }
        if parts.count == 1 {
            sizes = sizes.map { _ in dims }
            continue
        }
        let matches = sources.indices.filter { stems[$0] == parts[0] || sources[$0] == parts[0] }
        guard !matches.isEmpty else {
            throw ValidationError("--input-size \(value): no --source named '\(parts[0])' (sources: \(stems.joined(separator: ", ")))")
        }
        for j in matches { sizes[j] = dims }
    }
    return sizes
}
