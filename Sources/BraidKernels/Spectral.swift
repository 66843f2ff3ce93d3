import Foundation
import BraidTensor

/// The discrete Fourier transform along one axis, directly (O(n^2) per signal, sums in
/// Float64), as ONNX DFT: signals `[outer, n, inner, c]` with c = 1 (real) or 2 (complex),
/// zero-padded or cut to `length`; forward keeps `length / 2 + 1` bins when one-sided;
/// inverse divides by `length`, and one-sided inverse takes a half spectrum to a real signal.
/// Output `[outer, m, inner, 2]` (`[outer, length, inner, 1]` for the one-sided inverse).
public struct DirectDFT: Sendable {
    public let outer: Int, n: Int, inner: Int, components: Int, length: Int
    public let inverse: Bool, onesided: Bool

    public init(outer: Int, n: Int, inner: Int, components: Int, length: Int, inverse: Bool, onesided: Bool) {
        self.outer = outer; self.n = n; self.inner = inner; self.components = components
        self.length = length; self.inverse = inverse; self.onesided = onesided
    }

    /// Output length along the axis and components per element.
    public var outputLength: Int { !inverse && onesided ? length / 2 + 1 : length }
    public var outputComponents: Int { inverse && onesided ? 1 : 2 }

    public func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let m = outputLength, oc = outputComponents, L = length
        let sign: Double = inverse ? 1 : -1
        for o in 0..<outer {
            for i in 0..<inner {
                func input(_ t: Int) -> (Double, Double) {
                    guard t < n else { return (0, 0) }
                    let at = ((o * n + t) * inner + i) * components
                    return (Double(x[at]), components == 2 ? Double(x[at + 1]) : 0)
                }
                for k in 0..<m {
                    var re = 0.0, im = 0.0
                    for t in 0..<L {
                        var v = input(t)
                        if inverse && onesided {
                            // The half spectrum extended by conjugate symmetry.
                            if t > L / 2 { let c = input(L - t); v = (c.0, -c.1) }
                        }
                        let angle = sign * 2 * Double.pi * Double(k * t % L) / Double(L)
                        re += v.0 * cos(angle) - v.1 * sin(angle)
                        im += v.0 * sin(angle) + v.1 * cos(angle)
                    }
                    if inverse { re /= Double(L); im /= Double(L) }
                    let at = ((o * m + k) * inner + i) * oc
                    y[at] = Float(re)
                    if oc == 2 { y[at + 1] = Float(im) }
                }
            }
        }
    }
}
