import BraidTestSupport
import CKernels
import Foundation
import XCTest
@testable import BraidKernels

/// The C kernels (`CKernels`) on every instruction set this CPU has, each against its
/// definition computed in Double, and the dispatch's choices. `tools/test` also runs all
/// kernel tests with `BRAID_CPU=portable`, so the convolutions and activations built on these
/// kernels are checked on the portable path as well as the dispatched one.
final class CPUDispatchTests: XCTestCase {
    /// The sets this CPU can run, portable first.
    private var sets: [KernelISA] { KernelISA.allCases.filter { $0.rawValue <= KernelISA.best.rawValue } }

    /// Runs `body` with `isa` selected, then restores the set that was active.
    private func with(_ isa: KernelISA, _ body: () throws -> Void) rethrows {
        let before = KernelISA.active
        XCTAssertEqual(KernelISA.select(isa), isa)
        defer { KernelISA.select(before) }
        try body()
    }

    func testEnvironmentChoosesTheSet() {
        // Whatever the environment asked for is what runs (clamped to what the CPU has), so
        // `BRAID_CPU=portable swift test` really tests the portable path.
        let wanted = ProcessInfo.processInfo.environment["BRAID_CPU"].flatMap(KernelISA.parse) ?? KernelISA.best
        XCTAssertEqual(KernelISA.active, KernelISA(rawValue: min(wanted.rawValue, KernelISA.best.rawValue)))
        XCTAssertEqual(KernelISA.parse("auto"), KernelISA.best)
        XCTAssertEqual(KernelISA.parse("portable"), .portable)
        XCTAssertNil(KernelISA.parse("avx3"))
        XCTAssertEqual(KernelISA.names, ["auto", "portable", "avx2", "avx512"])
        #if arch(x86_64)
        // This project's CI machines have AVX2 and FMA; a set above the CPU's falls back.
        if KernelISA.best == .avx2 { XCTAssertEqual(KernelISA.select(.avx512), .avx2); KernelISA.select(.avx2) }
        #else
        XCTAssertEqual(KernelISA.best, .portable)
        #endif
    }

    /// Inputs that exercise every branch: tiny, ordinary, near the overflow and underflow
    /// limits, beyond them, infinities and NaN; a length that leaves a tail for every width.
    private let inputs: [Float] = {
        var v: [Float] = [0, -0.0, 1e-8, -1e-8, 0.3, -0.3, 0.62, 0.63, -0.63, 1, -1, 2.5, -7, 20, -20, 40, -40,
                          87, -87, 88.7, 88.8, -87.4, -104, 100, -100, .infinity, -.infinity, .nan, 9.5, -9.5,
                          0.999, 1.001, -1.001, 1.414, 1.415, -1.414, -1.415, 3.9, -3.9, -13.1, 14.2, -14.2]
        var r = UInt64(7)
        for _ in 0..<203 {
            r = r &* 6364136223846793005 &+ 1442695040888963407
            v.append(Float(Int64(bitPattern: r >> 11) % 2_000_000) / 100_000)   // [-20, 20]
        }
        return v
    }()

    /// Within 1e-6 relative, or `floor` absolute where that is larger.
    private func checkMap(_ function: Int32, _ name: String, floor: Double = 0, _ want: (Double) -> Double) {
        for isa in sets {
            with(isa) {
                var y = [Float](repeating: 0, count: inputs.count)
                inputs.withUnsafeBufferPointer { x in
                    y.withUnsafeMutableBufferPointer { braid_map(function, x.baseAddress!, $0.baseAddress!, x.count) }
                }
                for (i, x) in inputs.enumerated() {
                    let w = want(Double(x)), g = Double(y[i])
                    if w.isNaN { XCTAssert(g.isNaN, "\(name)(\(x)) on \(isa): \(g), expected NaN"); continue }
                    let wf = Double(Float(w))
                    if !wf.isFinite || wf == 0 || abs(w) < 1.2e-38 {
                        // Beyond float's range (or 0): float's value, or 0 below its smallest normal.
                        XCTAssert(g == wf || (abs(w) < 1.2e-38 && g == 0), "\(name)(\(x)) on \(isa): \(g), expected \(w)")
                        continue
                    }
                    XCTAssertLessThanOrEqual(abs(g - w), Swift.max(1e-6 * abs(w), floor), "\(name)(\(x)) on \(isa): \(g), expected \(w)")
                }
            }
        }
    }

    func testExp() { checkMap(Int32(BRAID_MAP_EXP), "exp") { Foundation.exp($0) } }
    func testSigmoid() { checkMap(Int32(BRAID_MAP_SIGMOID), "sigmoid") { 1 / (1 + Foundation.exp(-$0)) } }
    func testSiLU() { checkMap(Int32(BRAID_MAP_SILU), "silu") { $0 / (1 + Foundation.exp(-$0)) } }
    func testTanh() { checkMap(Int32(BRAID_MAP_TANH), "tanh") { Foundation.tanh($0) } }
    func testErf() { checkMap(Int32(BRAID_MAP_ERF), "erf") { Foundation.erf($0) } }
    /// GELU's far lower tail (|y| under 1e-12, from x < -7) is held to 1e-12 absolute: there its
    /// e^(-x^2/2) loses relative precision as it nears float's smallest normal.
    func testGELU() {
        checkMap(Int32(BRAID_MAP_GELU), "gelu", floor: 1e-12) { 0.5 * $0 * Foundation.erfc(-$0 / 2.0.squareRoot()) }
    }

    func testDepthwiseAccumulate() {
        // A [rows, cols, 8] band; pixel p reads tap t at pixelOffsets[p] + tapOffsets[t] bytes.
        let rows = 6, cols = 13, kH = 3, kW = 3
        let band = nnRandom(rows * cols * 8, seed: 3), taps = nnRandom(kH * kW * 8, seed: 4), bias = nnRandom(8, seed: 5)
        var pixelOffsets: [Int] = [], tapOffsets: [Int] = []
        for oy in 0..<(rows - kH + 1) { for ox in 0..<(cols - kW + 1) { pixelOffsets.append((oy * cols + ox) * 32) } }
        for ky in 0..<kH { for kx in 0..<kW { tapOffsets.append((ky * cols + kx) * 32) } }
        let pixels = pixelOffsets.count   // 44: five blocks of eight and a tail of four
        var want = [Float](repeating: 0, count: pixels * 8)
        for p in 0..<pixels {
            for l in 0..<8 {
                var s = Double(bias[l])
                for t in 0..<(kH * kW) { s += Double(band[(pixelOffsets[p] + tapOffsets[t]) / 4 + l]) * Double(taps[t * 8 + l]) }
                want[p * 8 + l] = Float(s)
            }
        }
        for isa in sets {
            with(isa) {
                var out = [Float](repeating: .nan, count: pixels * 8)
                braid_dw8_accumulate(band, pixelOffsets, tapOffsets, pixels, kH * kW, taps, bias, &out)
                nnAssertClose(out, want, "depthwise on \(isa)")
            }
        }
    }

    func testSmallKStrip() {
        // 37 columns: two full tiles and a last one stepping back to end at 37; three valid rows
        // of the four; a residual; rows 45 floats apart.
        let k = 19, ld = 40, cols = 37, ldy = 45, valid = 3
        let b = nnRandom(k * ld + 64, seed: 6), w = nnRandom(4 * k, seed: 7), bias: [Float] = [0.5, -1, 2, 0]
        let residual = nnRandom(4 * ldy, seed: 8)
        let rowOffsets = (0..<k).map { $0 * ld + 3 }
        var want = [Float](repeating: .infinity, count: 4 * ldy)
        for r in 0..<valid {
            for c in 0..<cols {
                var s = Double(bias[r]) + Double(residual[r * ldy + c])
                for j in 0..<k { s += Double(w[r * k + j]) * Double(b[rowOffsets[j] + c]) }
                want[r * ldy + c] = Float(s)
            }
        }
        for isa in sets {
            with(isa) {
                var out = [Float](repeating: .infinity, count: 4 * ldy)
                w.withUnsafeBufferPointer { wp in
                    let p = wp.baseAddress!
                    braid_smallk_strip(b, rowOffsets, k, p, p + k, p + 2 * k, p + 3 * k, bias, cols, &out, ldy,
                                       residual, valid)
                }
                // Columns past `cols` and the fourth row stay untouched (infinity on both sides).
                nnAssertClose(out, want, "small-k strip on \(isa)")
            }
        }
    }

    func testInterleaveAndBack() {
        // 21 columns: two 8x8 blocks and a tail of five; planes 30 floats apart.
        let n = 21, plane = 30
        let src = nnRandom(8 * plane, seed: 9), residual = nnRandom(8 * plane, seed: 10)
        for isa in sets {
            with(isa) {
                var packed = [Float](repeating: .nan, count: n * 8)
                braid_interleave8(src, plane, n, &packed)
                for c in 0..<n { for l in 0..<8 where packed[c * 8 + l] != src[l * plane + c] {
                    XCTFail("interleave on \(isa): column \(c) lane \(l)"); return
                } }
                var back = [Float](repeating: 7, count: 8 * plane)
                braid_deinterleave8(packed, n, &back, plane, nil)
                var plus = [Float](repeating: 7, count: 8 * plane)
                braid_deinterleave8(packed, n, &plus, plane, residual)
                for l in 0..<8 {
                    for c in 0..<plane {
                        let i = l * plane + c
                        XCTAssertEqual(back[i], c < n ? src[i] : 7, "deinterleave on \(isa) at \(i)")
                        XCTAssertEqual(plus[i], c < n ? src[i] + residual[i] : 7, "with residual on \(isa) at \(i)")
                    }
                }
            }
        }
    }

    func testPoolRow() {
        // Two window rows 40 floats apart, three taps a dilation of 2 apart, 13 outputs (a
        // vector and an overlapping last one) at strides 1 and 2; a NaN tap is skipped by the
        // maximum and poisons the average.
        var x = nnRandom(120, seed: 11)
        x[44] = .nan
        let offsets = [0, 40], kw = 3, tap = 2, count = 13
        for stride in [1, 2] {
            for average in [false, true] {
                var want = [Float](repeating: 0, count: count)
                for j in 0..<count {
                    var acc: Float = average ? 0 : -.infinity
                    for r in offsets { for kx in 0..<kw {
                        let v = x[r + j * stride + kx * tap]
                        acc = average ? acc + v : (v > acc ? v : acc)
                    } }
                    want[j] = average ? acc / 6 : acc
                }
                for isa in sets {
                    with(isa) {
                        var out = [Float](repeating: 0, count: count)
                        braid_pool_row(average ? 1 : 0, x, offsets, 2, kw, tap, stride, 6, &out, count)
                        for j in 0..<count where !(out[j] == want[j] || (out[j].isNaN && want[j].isNaN)) {
                            XCTFail("pool row (average \(average), stride \(stride)) on \(isa) at \(j): \(out[j]) against \(want[j])")
                        }
                    }
                }
            }
        }
    }

    func testGatherEven() {
        // 21 outputs (two vectors and a tail of five) from exactly 41 floats: nothing past the
        // last one read is needed.
        let src = nnRandom(41, seed: 12)
        for isa in sets {
            with(isa) {
                var out = [Float](repeating: .nan, count: 21)
                braid_gather_even(src, 21, &out)
                XCTAssertEqual(out, (0..<21).map { src[2 * $0] }, "gather on \(isa)")
            }
        }
    }

    func testActivationsMatchTheirSwiftForms() {
        // Each activation of braid_activate on every set gives the same floats as the Swift
        // epilogue function's vector form (one rounding per step in both), over rows with a stride and a
        // tail shorter than any vector; NaN stays NaN; the gap between rows is not touched.
        let cols = inputs.count, stride = cols + 5
        func check<F: EpilogueFunction>(_ f: F, _ name: String) {
            let k = f.kernel!
            var want = [Float](repeating: 7, count: 2 * stride)
            for r in 0..<2 { for c in 0..<cols { want[r * stride + c] = f(SIMD8(repeating: inputs[(c + r) % cols]))[0] } }
            for isa in sets {
                with(isa) {
                    var y = [Float](repeating: 7, count: 2 * stride)
                    for r in 0..<2 { for c in 0..<cols { y[r * stride + c] = inputs[(c + r) % cols] } }
                    braid_activate(k.kind, k.a, k.b, &y, 2, cols, stride)
                    for i in 0..<y.count where !(y[i] == want[i] || (y[i].isNaN && want[i].isNaN)) {
                        XCTFail("\(name) on \(isa) at \(i): \(y[i]) against \(want[i])")
                        return
                    }
                }
            }
        }
        check(ReluEpilogue(), "relu")
        check(LeakyReluEpilogue(alpha: 0.1), "leaky relu")
        check(ClipEpilogue(lo: -1.5, hi: 6), "clip")
        check(HardSigmoidEpilogue(alpha: 0.2, beta: 0.5), "hard sigmoid")
        check(HardSwishEpilogue(), "hard swish")
    }

    func testConvolutionsAgreeAcrossSets() {
        // A depthwise 3x3 (eight channels at a time) and a pointwise convolution with a short
        // inner dimension (the small-k tiles), through the convolution kernels on each set: all
        // within rounding of each other, and not all identical (fused multiply-adds against
        // separate ones), which shows each set ran its own code.
        let dw = ConvGeometry(batch: 2, inChannels: 12, inH: 9, inW: 11, outChannels: 12, outH: 9, outW: 11,
                              kernelH: 3, kernelW: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                              padTop: 1, padLeft: 1, group: 12)
        let pw = ConvGeometry(batch: 1, inChannels: 8, inH: 10, inW: 10, outChannels: 6, outH: 10, outW: 10,
                              kernelH: 1, kernelW: 1, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                              padTop: 0, padLeft: 0, group: 1)
        for g in [dw, pw] {
            let x = nnRandom(g.batch * g.inChannels * g.inH * g.inW, seed: 21)
            let w = nnRandom(g.outChannels * g.patch, seed: 22), b = nnRandom(g.outChannels, seed: 23)
            var outputs: [[Float]] = []
            for isa in sets {
                with(isa) {
                    let conv = Conv2D(g)
                    var y = [Float](repeating: .nan, count: g.batch * g.outChannels * g.outH * g.outW)
                    conv.forward(x: x, weight: w, bias: b, y: &y)
                    outputs.append(y)
                }
            }
            for (i, y) in outputs.enumerated().dropFirst() {
                nnAssertClose(y, outputs[0], "\(g) on \(sets[i]) vs portable")
                XCTAssertNotEqual(y, outputs[0], "\(g): \(sets[i]) gave the portable build's bits exactly")
            }
        }
    }
}
