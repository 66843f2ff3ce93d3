/// SplitMix64: a small, fast, seedable generator whose stream is fixed by its seed on every
/// platform (Swift's own generators are not seedable).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for one item of a seeded stream: the same (seed, a, b) always gives the
    /// same numbers, whatever order items are visited in.
    public init(seed: UInt64, _ a: Int, _ b: Int = 0) {
        var g = SeededGenerator(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        let s1 = g.next() ^ UInt64(bitPattern: Int64(a))
        var h = SeededGenerator(seed: s1)
        state = h.next() ^ (UInt64(bitPattern: Int64(b)) &* 0xBF58_476D_1CE4_E5B9)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in `range`.
    public mutating func uniform(_ range: ClosedRange<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * nextUnit()
    }
}

/// A Fisher-Yates permutation of 0..<count fixed by `seed` (Swift's `shuffled(using:)` is
/// not documented to be stable across releases, so the algorithm is spelled out).
public func seededPermutation(_ count: Int, seed: UInt64) -> [Int] {
    var g = SeededGenerator(seed: seed)
    var order = Array(0..<count)
    shuffleInPlace(&order, using: &g)
    return order
}

func shuffleInPlace<T>(_ items: inout [T], using g: inout SeededGenerator) {
    guard items.count > 1 else { return }
    for i in stride(from: items.count - 1, to: 0, by: -1) {
        let j = Int(g.next() % UInt64(i + 1))
        items.swapAt(i, j)
    }
}
