import Foundation

/// How one rank's share of spread-out work ended: a value or an error message.
private struct Share<R: Codable>: Codable {
    var index: Int
    var value: R?
    var error: String?
}

extension ProcessGroup {
    /// `work(i)` for every `i` in `0..<count`, item `i` computed on rank `i % size`, and every
    /// result on every rank, in item order. An item that throws on any rank makes every
    /// rank throw one error naming the rank and the item.
    public func spread<R: Codable>(_ count: Int, _ work: (Int) throws -> R) throws -> [R] {
        var mine: [Share<R>] = []
        for i in stride(from: rank, to: count, by: size) {
            do { mine.append(Share(index: i, value: try work(i))) } catch {
                mine.append(Share(index: i, error: String(describing: error)))
                break
            }
        }
        var results = [R?](repeating: nil, count: count)
        for (r, shares) in try allGather(mine).enumerated() {
            for s in shares {
                if let e = s.error { throw TrainingErrorOnRank(rank: r, message: e) }
                results[s.index] = s.value
            }
        }
        return try results.enumerated().map { i, v in
            guard let v else { throw TrainingErrorOnRank(rank: i % size, message: "item \(i) returned no result") }
            return v
        }
    }
}

/// An error one rank met in shared work, reported on every rank.
public struct TrainingErrorOnRank: Error, CustomStringConvertible, Sendable {
    public var rank: Int
    public var message: String
    public var description: String { "rank \(rank): \(message)" }
}
