import BraidTensor

/// The random stream of a training-mode dropout: a SplitMix64 generator seeded once and
/// advanced on every run, so successive runs draw fresh masks and a reseeded stream repeats.
public final class DropoutStream: @unchecked Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// Restarts the stream (e.g. when resuming a run).
    public func reseed(_ seed: UInt64) { state = seed }

    @inline(__always)
    func next() -> UInt64 { SplitMix64.advance(&state) }
}

/// Training-mode dropout over `count` elements: draws `mask[i]` 1 with probability
/// `1 - ratio` (else 0) from `stream`, and writes `y[i] = x[i] * mask[i] / (1 - ratio)`
/// (all zeros when `ratio >= 1`).
public func dropoutTraining(count: Int, ratio: Float, stream: DropoutStream, x: UnsafePointer<Float>,
                            y: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Float>) {
    let scale: Float = ratio < 1 ? 1 / (1 - ratio) : 0
    // Compare 24-bit uniforms against the ratio scaled to the same range.
    let threshold = UInt64((Double(ratio) * Double(1 << 24)).rounded())
    var i = 0
    while i < count {
        let bits = stream.next()
        let a = (bits >> 40) >= threshold ? Float(1) : 0
        mask[i] = a; y[i] = x[i] * a * scale
        if i + 1 < count {
            let b = (bits & 0xFF_FFFF) >= threshold ? Float(1) : 0
            mask[i + 1] = b; y[i + 1] = x[i + 1] * b * scale
        }
        i += 2
    }
}

/// Backward of `dropoutTraining`: `dx[i] += dy[i] * mask[i] / (1 - ratio)`.
public func dropoutTrainingBackward(count: Int, ratio: Float, mask: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                    dx: UnsafeMutablePointer<Float>) {
    let scale: Float = ratio < 1 ? 1 / (1 - ratio) : 0
    for i in 0..<count { dx[i] += dy[i] * mask[i] * scale }
}
