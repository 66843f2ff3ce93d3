import BraidTensor

/// The input index that output index `o` of a padded axis reads, or -1 for the constant.
///
/// `size` is the input extent and `begin` the (possibly negative) leading pad. Reflect and
/// wrap repeat periodically when the pad exceeds the input, as NumPy's `pad` does.
public func padSourceIndex(_ o: Int, size: Int, begin: Int, fill: PadFill) -> Int {
    let i = o - begin
    if i >= 0 && i < size { return i }
    switch fill {
    case .constant:
        return -1
    case .edge:
        return i < 0 ? 0 : size - 1
    case .wrap:
        return ((i % size) + size) % size
    case .reflect:
        if size == 1 { return 0 }
        let period = 2 * (size - 1)
        let m = ((i % period) + period) % period
        return m < size ? m : period - m
    }
}

/// A planned Pad: x `[d0, ...]` -> `[d0 + begins[0] + ends[0], ...]`. Negative pads crop.
public struct PadCopy: Sendable {
    public let outShape: [Int]
    let copy: AxisMapCopy

    /// `begins` and `ends` have one entry per axis of `shape`. A reflect/edge/wrap pad of an
    /// empty axis has no source and is a precondition failure; the lowering rejects it first.
    public init(shape: [Int], begins: [Int], ends: [Int], fill: PadFill, elementSize: Int) {
        let outShape = shape.indices.map { shape[$0] + begins[$0] + ends[$0] }
        self.outShape = outShape
        let maps = shape.indices.map { a in
            (0..<max(outShape[a], 0)).map { padSourceIndex($0, size: shape[a], begin: begins[a], fill: fill) }
        }
        copy = shape.isEmpty ? AxisMapCopy(inShape: [1], maps: [[0]], elementSize: elementSize)
            : AxisMapCopy(inShape: shape, maps: maps, elementSize: elementSize)
    }

    /// Writes the padded tensor; `fillBits` is the constant's bit pattern (see `fillBits(_:float:)`).
    public func run(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, fillBits: UInt64) {
        copy.run(src, dst, fillBits: fillBits)
    }

    /// Backward for float32: `gx += g` cropped back to the input, with the gradient of every
    /// reflected, edge or wrapped copy added onto the element it copies. The constant gets
    /// no gradient.
    public func accumulateAdjoint(_ g: UnsafePointer<Float>, into gx: UnsafeMutablePointer<Float>) {
        copy.accumulateAdjoint(g, into: gx)
    }
}
