import BraidTensor

extension Elementwise {
    /// Converts `src` into `dst` element by element (equal counts; `dst.dtype` is the target).
    ///
    /// - float32 -> integer: truncation toward zero; NaN gives 0 and values beyond the Int64
    ///   range saturate (ONNX leaves out-of-range conversions undefined; NumPy on x86 yields
    ///   INT64_MIN), then the value wraps to the target width as NumPy's `astype` does
    ///   (`300.0 -> uint8` is 44, `-1.0 -> uint8` is 255).
    /// - anything -> bool: nonzero is true (NaN is true, as `bool(nan)` in NumPy).
    /// - integer -> integer: wraps to the target width; uint64 keeps its bit pattern.
    /// - integer -> float32: nearest float; uint64 is read unsigned.
    public static func cast(_ src: Tensor, to dst: Tensor) {
        precondition(src.count == dst.count, "cast count mismatch")
        let n = src.count
        switch (src.dtype.isFloat, dst.dtype.isFloat) {
        case (true, true):
            dst.floats.update(from: src.floats, count: n)
        case (true, false):
            let x = src.floats, y = dst.ints
            if dst.dtype == .bool {
                map(x, y, n) { $0 != 0 || $0.isNaN ? 1 : 0 }
            } else {
                map(x, y, n) { saturatingInt64(Double($0)) }
                wrap(y, count: n, to: dst.dtype)
            }
        case (false, true):
            let x = src.ints, y = dst.floats
            if src.dtype == .uint64 {
                map(x, y, n) { Float(UInt64(bitPattern: $0)) }
            } else {
                map(x, y, n) { Float($0) }
            }
        case (false, false):
            dst.ints.update(from: src.ints, count: n)
            wrap(dst.ints, count: n, to: dst.dtype)
        }
    }

    /// Reduces Int64-held values in place to what `dtype` can hold: two's-complement wrap
    /// for the narrow integer types, 0/1 for bool; int64 and uint64 are left alone.
    public static func wrap(_ p: UnsafeMutablePointer<Int64>, count: Int, to dtype: DType) {
        let y = p, x = UnsafePointer(p)
        switch dtype {
        case .int8: map(x, y, count) { Int64(Int8(truncatingIfNeeded: $0)) }
        case .int16: map(x, y, count) { Int64(Int16(truncatingIfNeeded: $0)) }
        case .int32: map(x, y, count) { Int64(Int32(truncatingIfNeeded: $0)) }
        case .uint8: map(x, y, count) { $0 & 0xFF }
        case .uint16: map(x, y, count) { $0 & 0xFFFF }
        case .uint32: map(x, y, count) { $0 & 0xFFFF_FFFF }
        case .bool: map(x, y, count) { $0 != 0 ? 1 : 0 }
        case .int64, .uint64, .float32: return
        }
    }
}
