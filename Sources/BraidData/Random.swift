import BraidTensor

/// A Fisher-Yates permutation of 0..<count fixed by `seed` (Swift's `shuffled(using:)` is
/// not documented to be stable across releases, so the algorithm is spelled out).
public func seededPermutation(_ count: Int, seed: UInt64) -> [Int] {
    var g = SplitMix64(seed: seed)
    var order = Array(0..<count)
    shuffleInPlace(&order, using: &g)
    return order
}

func shuffleInPlace<T>(_ items: inout [T], using g: inout SplitMix64) {
    guard items.count > 1 else { return }
    for i in stride(from: items.count - 1, to: 0, by: -1) {
        let j = Int(g.next() % UInt64(i + 1))
        items.swapAt(i, j)
    }
}
