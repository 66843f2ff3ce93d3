import BraidTensor
import XCTest

/// How far one list of values is from a reference, measured against the reference's scale.
///
/// `worst` is `max_i |got_i - want_i| / scale`, with `scale = max(floor, max_i |want_i|)` over
/// the finite reference values. It is never NaN: a NaN on one side only, an infinity that is
/// not matched by the same infinity, or a count mismatch makes it `+infinity`, so a `max`
/// over several differences cannot drop it and `worst <= tolerance` fails. NaN on both sides
/// at the same place counts as agreement (ONNX's references hold NaN where the op gives one).
public struct Difference: CustomStringConvertible, Sendable {
    public var worst: Double
    /// Where `worst` was found (nil when nothing differs or the counts differ).
    public var index: Int?
    public var got: Double?, want: Double?
    public var scale: Double
    public var countMismatch: (got: Int, want: Int)?

    public var description: String {
        if let c = countMismatch { return "\(c.got) values, expected \(c.want)" }
        guard let i = index, let g = got, let w = want else { return "no difference" }
        return "worst difference \(worst) of the reference's scale \(scale), at flat index \(i): \(g), expected \(w)"
    }
}

/// The difference of `got` from `want` relative to `want`'s scale (see `Difference`).
/// `floor` bounds the scale from below, so values near zero are compared absolutely.
public func difference(_ got: [Double], _ want: [Double], floor: Double = 1) -> Difference {
    guard got.count == want.count else {
        return Difference(worst: .infinity, scale: 0, countMismatch: (got.count, want.count))
    }
    var scale = floor
    for w in want where w.isFinite { scale = max(scale, abs(w)) }
    var result = Difference(worst: 0, scale: scale)
    for i in got.indices {
        let a = got[i], b = want[i]
        if a == b || (a.isNaN && b.isNaN) { continue }
        var e = abs(a - b) / scale
        if !e.isFinite { e = .infinity }
        if !(e <= result.worst) { result.worst = e; result.index = i; result.got = a; result.want = b }
    }
    return result
}

public func difference(_ got: [Float], _ want: [Float], floor: Double = 1) -> Difference {
    difference(got.map(Double.init), want.map(Double.init), floor: floor)
}

/// Tensors: shapes must agree (a mismatch is `+infinity`), then as `difference` of the values.
public func difference(_ got: Tensor, _ want: Tensor, floor: Double = 1) -> Difference {
    guard got.shape == want.shape else {
        return Difference(worst: .infinity, scale: 0, countMismatch: (got.count, want.count))
    }
    return difference(got.doubleArray, want.doubleArray, floor: floor)
}

/// Fails unless `got` is within `tolerance` of `want`'s scale (NaN-aware, see `Difference`).
/// Returns the difference for callers that print or collect it.
@discardableResult
public func assertClose(_ got: Tensor, _ want: Tensor, tolerance: Double, floor: Double = 1, _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) -> Difference {
    if got.shape != want.shape {
        XCTFail("\(message()): shape \(got.shape), expected \(want.shape)", file: file, line: line)
        return Difference(worst: .infinity, scale: 0)
    }
    return assertClose(got.doubleArray, want.doubleArray, tolerance: tolerance, floor: floor, message(), file: file, line: line)
}

@discardableResult
public func assertClose(_ got: [Tensor], _ want: [Tensor], tolerance: Double, floor: Double = 1, _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) -> Double {
    guard got.count == want.count else {
        XCTFail("\(message()): \(got.count) outputs, expected \(want.count)", file: file, line: line)
        return .infinity
    }
    var worst = 0.0
    for (k, (g, w)) in zip(got, want).enumerated() {
        worst = max(worst, assertClose(g, w, tolerance: tolerance, floor: floor, "\(message()) output \(k)", file: file, line: line).worst)
    }
    return worst
}

@discardableResult
public func assertClose(_ got: [Float], _ want: [Float], tolerance: Double, floor: Double = 1, _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) -> Difference {
    assertClose(got.map(Double.init), want.map(Double.init), tolerance: tolerance, floor: floor, message(), file: file, line: line)
}

@discardableResult
public func assertClose(_ got: [Double], _ want: [Double], tolerance: Double, floor: Double = 1, _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) -> Difference {
    let d = difference(got, want, floor: floor)
    if !(d.worst <= tolerance) {
        XCTFail("\(message()): \(d) (tolerance \(tolerance))", file: file, line: line)
    }
    return d
}

/// ONNX's element-wise rule (`numpy.testing.assert_allclose`): each element within
/// `atol + rtol * |want|`, NaN only where the reference has NaN. Nil when equal within
/// tolerance, else the first difference. Used where the reference data was made for that rule
/// (ONNX's backend test cases).
public func allCloseFailure(_ got: Tensor, _ want: Tensor, rtol: Double, atol: Double) -> String? {
    if got.shape != want.shape && !(got.count == want.count && got.count == 1) {
        return "shape \(got.shape), expected \(want.shape)"
    }
    if got.dtype.isFloat != want.dtype.isFloat || (!got.dtype.isFloat && (got.dtype == .bool) != (want.dtype == .bool)) {
        return "dtype \(got.dtype), expected \(want.dtype)"
    }
    let a = got.doubleArray, b = want.doubleArray
    for i in 0..<a.count {
        if (a[i].isNaN && b[i].isNaN) || a[i] == b[i] { continue }
        if !(abs(a[i] - b[i]) <= atol + rtol * abs(b[i])) {
            return "element \(i): \(a[i]), expected \(b[i])"
        }
    }
    return nil
}
