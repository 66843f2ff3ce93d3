import ArgumentParser

/// Parses `--input-size` values: `HxW` for every source, or `NAME=HxW` for the source whose
/// file stem (or path) is NAME. Returns one entry per source (nil: its own size), or nil when
/// no value was given.
func parseInputSizes(_ values: [String], sources: [String]) throws -> [[Int]?]? {
    guard !values.isEmpty else { return nil }
    var sizes: [[Int]?] = sources.map { _ in nil }
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
        for j in try sourceIndices(named: parts[0], in: sources, option: "--input-size \(value)") { sizes[j] = dims }
    }
    return sizes
}
