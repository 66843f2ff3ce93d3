import Foundation

/// Number formats narrower than Braid's storage: 8- and 4-bit floats, bfloat16 and 4- and 2-bit
/// integers. Braid holds their values as float32 (floats) or Int64 (integers, tagged int8 or
/// uint8); this type decodes their bit patterns and rounds wider values onto their grids, so
/// a conversion to such a format is computed exactly.
public enum NarrowFormat: Sendable, Equatable {
    case float8e4m3fn, float8e4m3fnuz, float8e5m2, float8e5m2fnuz, float4e2m1, bfloat16
    /// Powers of two 2^-127...2^127 (and NaN), rounding as named.
    case float8e8m0(E8M0Rounding)
    case int4, uint4, int2, uint2

    public enum E8M0Rounding: Sendable, Equatable { case up, down, nearest }

    /// Bits per element in a packed tensor.
    public var bits: Int {
        switch self {
        case .float4e2m1, .int4, .uint4: return 4
        case .int2, .uint2: return 2
        case .bfloat16: return 16
        default: return 8
        }
    }

    public var isInteger: Bool { [.int4, .uint4, .int2, .uint2].contains(self) }

    /// Sign, exponent and mantissa layout of the float formats (not e8m0 or bfloat16).
    private var layout: (exponentBits: Int, mantissaBits: Int, bias: Int, unsignedZeroNaN: Bool, hasInfinity: Bool, max: Float)? {
        switch self {
        case .float8e4m3fn: return (4, 3, 7, false, false, 448)
        case .float8e4m3fnuz: return (4, 3, 8, true, false, 240)
        case .float8e5m2: return (5, 2, 15, false, true, 57344)
        case .float8e5m2fnuz: return (5, 2, 16, true, false, 57344)
        case .float4e2m1: return (2, 1, 1, false, false, 6)
        default: return nil
        }
    }

    /// The value of one element's bit pattern (the low `bits` bits of `raw`).
    public func decode(_ raw: UInt32) -> Float {
        switch self {
        case .bfloat16: return Float(bitPattern: raw << 16)
        case .float8e8m0: return raw & 0xFF == 0xFF ? .nan : Float(sign: .plus, exponent: Int(raw & 0xFF) - 127, significand: 1)
        case .int4: return Float((Int32(raw & 0xF) << 28) >> 28)
        case .uint4: return Float(raw & 0xF)
        case .int2: return Float((Int32(raw & 0x3) << 30) >> 30)
        case .uint2: return Float(raw & 0x3)
        default: break
        }
        let l = layout!
        let total = 1 + l.exponentBits + l.mantissaBits
        let b = raw & ((1 << UInt32(total)) - 1)
        let negative = b >> UInt32(total - 1) == 1
        let e = Int((b >> UInt32(l.mantissaBits)) & ((1 << UInt32(l.exponentBits)) - 1))
        let m = Int(b & ((1 << UInt32(l.mantissaBits)) - 1))
        let eMax = (1 << l.exponentBits) - 1
        if l.unsignedZeroNaN && negative && e == 0 && m == 0 { return .nan }
        if l.hasInfinity && e == eMax { return m == 0 ? (negative ? -.infinity : .infinity) : .nan }
        if self == .float8e4m3fn && e == eMax && m == (1 << l.mantissaBits) - 1 { return .nan }
        let magnitude: Float = e == 0
            ? Float(m) * Float(sign: .plus, exponent: 1 - l.bias - l.mantissaBits, significand: 1)
            : (1 + Float(m) / Float(1 << l.mantissaBits)) * Float(sign: .plus, exponent: e - l.bias, significand: 1)
        return negative ? -magnitude : magnitude
    }

    /// `x` rounded to the nearest value of a float format (ties to even). Out of range:
    /// the largest finite value when `saturate` (infinities included), else infinity where
    /// the format has one and NaN otherwise. float4e2m1 always saturates and maps NaN to 0.
    public func round(_ x: Float, saturate: Bool) -> Float {
        switch self {
        case .bfloat16:
            if x.isNaN { return x }
            let bits = x.bitPattern
            let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
            return Float(bitPattern: rounded & 0xFFFF_0000)
        case .float8e8m0(let mode):
            if x.isNaN || x <= 0 && !(x == 0) { return x.isNaN ? .nan : Float(sign: .plus, exponent: -127, significand: 1) }
            if x == 0 { return Float(sign: .plus, exponent: -127, significand: 1) }
            if x.isInfinite { return saturate ? Float(sign: .plus, exponent: 127, significand: 1) : .nan }
            let e = x.exponent
            let low = Float(sign: .plus, exponent: e, significand: 1)
            var k = e
            if x != low {
                switch mode {
                case .up: k = e + 1
                case .down: k = e
                case .nearest: k = x >= low * 1.5 ? e + 1 : e
                }
            }
            if k > 127 { return saturate ? Float(sign: .plus, exponent: 127, significand: 1) : .nan }
            return Float(sign: .plus, exponent: max(k, -127), significand: 1)
        case .int4, .uint4, .int2, .uint2:
            let v = x.rounded(.towardZero)
            return inIntegerRange(v) ? v : 0
        default: break
        }
        let l = layout!
        let alwaysSaturate = self == .float4e2m1
        if x.isNaN { return alwaysSaturate ? 0 : .nan }
        if x.isInfinite {
            if saturate || alwaysSaturate { return x < 0 ? -l.max : l.max }
            return l.hasInfinity ? x : .nan
        }
        if x == 0 { return 0 }
        let minNormal = 1 - l.bias
        let e = max(Int(x.exponent), minNormal)
        let quantum = Float(sign: .plus, exponent: e - l.mantissaBits, significand: 1)
        let r = (x / quantum).rounded(.toNearestOrEven) * quantum
        if abs(r) > l.max {
            if saturate || alwaysSaturate { return r < 0 ? -l.max : l.max }
            return l.hasInfinity ? (r < 0 ? -.infinity : .infinity) : .nan
        }
        return r
    }

    /// Whether an integer value fits the integer formats (others: always true).
    public func inIntegerRange(_ v: Float) -> Bool {
        switch self {
        case .int4: return v >= -8 && v <= 7
        case .uint4: return v >= 0 && v <= 15
        case .int2: return v >= -2 && v <= 1
        case .uint2: return v >= 0 && v <= 3
        default: return true
        }
    }

    /// An integer value converted to an integer format: out-of-range values become 0 (as
    /// ml_dtypes, which ONNX's reference uses, converts them).
    public func narrow(_ v: Int64) -> Int64 { inIntegerRange(Float(v)) ? v : 0 }
}
