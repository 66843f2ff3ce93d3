/// SplitMix64: a small, fast, seedable generator whose stream is fixed by its seed on every
/// platform (Swift's own generators are not seedable). Braid's one random-number generator:
/// weight initialisation, data order and augmentation, search and dropout masks all draw
/// from it.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for one item of a seeded stream: the same (seed, a, b) always gives the
    /// same numbers, whatever order items are visited in.
    public init(seed: UInt64, _ a: Int, _ b: Int = 0) {
        var g = SplitMix64(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        let s1 = g.next() ^ UInt64(bitPattern: Int64(a))
        var h = SplitMix64(seed: s1)
        state = h.next() ^ (UInt64(bitPattern: Int64(b)) &* 0xBF58_476D_1CE4_E5B9)
    }

    @inlinable
    public mutating func next() -> UInt64 { SplitMix64.advance(&state) }

    /// One step of the generator on a bare state (for streams kept in a class, like dropout's).
    @inlinable @inline(__always)
    public static func advance(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1), on a 2^-24 grid.
    public mutating func nextUnit() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in `range`.
    public mutating func uniform(_ range: ClosedRange<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * nextUnit()
    }

    /// Uniform in `[lo, hi)`.
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { uniform(lo...hi) }
}
