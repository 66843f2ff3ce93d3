import XCTest
@testable import BraidKernels
import BraidTensor
import BraidTestSupport

/// Fused convolution epilogues and the phase-split depthwise kernel, against a plain loop.
final class ConvEpilogueTests: XCTestCase {
    /// `act(conv(x) + b + r)` straight from the definitions.
    private func reference(_ g: ConvGeometry, _ x: [Float], _ w: [Float], _ b: [Float]?, _ r: [Float]?,
                           _ act: ConvActivation?) -> [Float] {
        var y = [Float](repeating: 0, count: g.batch * g.outChannels * g.outH * g.outW)
        let cg = g.inChannels / g.group, mg = g.outChannels / g.group
        for n in 0..<g.batch {
            for m in 0..<g.outChannels {
                for oy in 0..<g.outH {
                    for ox in 0..<g.outW {
                        var s = Double(b?[m] ?? 0)
                        for ci in 0..<cg {
                            let c = (m / mg) * cg + ci
                            for ky in 0..<g.kernelH {
                                for kx in 0..<g.kernelW {
                                    let iy = oy * g.strideH + ky * g.dilationH - g.padTop
                                    let ix = ox * g.strideW + kx * g.dilationW - g.padLeft
                                    if iy < 0 || iy >= g.inH || ix < 0 || ix >= g.inW { continue }
                                    s += Double(x[((n * g.inChannels + c) * g.inH + iy) * g.inW + ix])
                                        * Double(w[((m * cg + ci) * g.kernelH + ky) * g.kernelW + kx])
                                }
                            }
                        }
                        let i = ((n * g.outChannels + m) * g.outH + oy) * g.outW + ox
                        var v = Float(s) + (r?[i] ?? 0)
                        switch act {
                        case nil: break
                        case .relu: v = max(0, v)
                        case .leakyRelu(let a): v = v < 0 ? a * v : v
                        case .clip(let lo, let hi): v = min(max(v, lo), hi)
                        case .hardSigmoid(let a, let c): v = max(0, min(1, a * v + c))
                        case .hardSwish: v = v * max(0, min(1, v / 6 + 0.5))
                        case .sigmoid: v = 1 / (1 + exp(-v))
                        case .silu: v = v / (1 + exp(-v))
                        }
                        y[i] = v
                    }
                }
            }
        }
        return y
    }

    /// Which kernel runs: `Conv2D` choosing for itself, or one depthwise kernel directly.
    private enum Kernel { case chosen, plane, blocked, winograd }

    private func check(_ g: ConvGeometry, act: ConvActivation?, residual: Bool, bias: Bool = true,
                       kernel: Kernel = .chosen, file: StaticString = #filePath, line: UInt = #line) {
        var rng = SystemRandomNumberGenerator()
        let x = (0..<(g.batch * g.inChannels * g.inH * g.inW)).map { _ in Float.random(in: -1...1, using: &rng) }
        let w = (0..<(g.outChannels * g.patch)).map { _ in Float.random(in: -1...1, using: &rng) }
        let b = bias ? (0..<g.outChannels).map { _ in Float.random(in: -1...1, using: &rng) } : nil
        let outCount = g.batch * g.outChannels * g.outH * g.outW
        let r = residual ? (0..<outCount).map { _ in Float.random(in: -2...2, using: &rng) } : nil
        let expected = reference(g, x, w, b, r, act)
        let epilogue = ConvEpilogue(activation: act, residual: residual)
        let run: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafePointer<Float>?,
                  UnsafeMutablePointer<Float>) -> Void
        switch kernel {
        case .chosen:
            let conv = Conv2D(g, epilogue: epilogue)
            run = { conv.forward(x: $0, weight: $1, bias: $2, residual: $3, y: $4) }
        case .plane:
            let conv = DepthwiseConv2D(g, epilogue: epilogue)
            run = { conv.forward(x: $0, weight: $1, bias: $2, residual: $3, y: $4) }
        case .blocked:
            let conv = BlockedDepthwiseConv2D(g, epilogue: epilogue)
            run = { conv.forward(x: $0, weight: $1, bias: $2, residual: $3, y: $4) }
        case .winograd:
            run = { WinogradConv3x3(g, weight: $1, epilogue: epilogue).forward(x: $0, bias: $2, residual: $3, y: $4) }
        }
        var y = [Float](repeating: .nan, count: outCount)
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    let bp = b?.withUnsafeBufferPointer { $0.baseAddress! }
                    let rp = r?.withUnsafeBufferPointer { $0.baseAddress! }
                    run(xp.baseAddress!, wp.baseAddress!, bp, rp, yp.baseAddress!)
                }
            }
        }
        // `y` starts as NaN: an output never written fails.
        assertClose(y, Array(expected.prefix(outCount)), tolerance: 1e-4, "\(g) \(String(describing: act)) residual \(residual)",
                    file: file, line: line)
    }

    private func geometry(batch: Int = 2, channels: Int, mult: Int = 1, h: Int, w: Int, k: Int, stride: Int,
                          pad: Int, dilation: Int = 1, depthwise: Bool = true, out: Int? = nil) -> ConvGeometry {
        let dk = (k - 1) * dilation + 1
        let oh = (h + 2 * pad - dk) / stride + 1, ow = (w + 2 * pad - dk) / stride + 1
        return ConvGeometry(batch: batch, inChannels: channels, inH: h, inW: w,
                            outChannels: depthwise ? channels * mult : (out ?? channels), outH: oh, outW: ow,
                            kernelH: k, kernelW: k, strideH: stride, strideW: stride, dilationH: dilation,
                            dilationW: dilation, padTop: pad, padLeft: pad, group: depthwise ? channels : 1)
    }

    /// Winograd's F(2x2, 3x3): odd and even sizes (a last tile half outside), rows of tiles
    /// not a multiple of eight, pads 0 to 2, blocks over a batch and output channels split
    /// for one small image, every epilogue.
    func testWinogradAgainstLoop() {
        let cases: [(batch: Int, c: Int, m: Int, h: Int, w: Int, pad: Int)] = [
            (1, 32, 16, 9, 9, 1), (1, 32, 40, 14, 14, 1), (2, 48, 16, 9, 20, 0), (3, 32, 32, 5, 37, 2),
            (1, 64, 32, 56, 18, 1), (2, 256, 256, 2, 2, 1), (1, 256, 256, 4, 5, 0),
        ]
        for t in cases {
            let g = geometry(batch: t.batch, channels: t.c, h: t.h, w: t.w, k: 3, stride: 1, pad: t.pad,
                             depthwise: false, out: t.m)
            XCTAssertTrue(WinogradConv3x3.handles(g), "\(g)")
            check(g, act: nil, residual: false, kernel: .winograd)
            check(g, act: .relu, residual: true, bias: t.batch != 2, kernel: .winograd)
        }
        let g = geometry(batch: 1, channels: 32, h: 11, w: 11, k: 3, stride: 1, pad: 1, depthwise: false, out: 24)
        for act in [ConvActivation.leakyRelu(alpha: 0.1), .clip(min: 0, max: 6), .hardSigmoid(alpha: 0.2, beta: 0.5),
                    .hardSwish, .sigmoid, .silu] {
            check(g, act: act, residual: false, kernel: .winograd)
        }
        XCTAssertFalse(WinogradConv3x3.handles(geometry(batch: 1, channels: 128, h: 7, w: 7, k: 3, stride: 1, pad: 1,
                                                        depthwise: false, out: 32)))
        XCTAssertFalse(WinogradConv3x3.handles(geometry(channels: 32, h: 8, w: 8, k: 3, stride: 2, pad: 1,
                                                        depthwise: false)))
        XCTAssertFalse(WinogradConv3x3.handles(geometry(channels: 32, h: 8, w: 8, k: 3, stride: 1, pad: 1,
                                                        dilation: 2, depthwise: false)))
    }

    func testDepthwiseShapesAgainstLoop() {
        for (k, s, pad) in [(3, 1, 1), (3, 2, 1), (5, 1, 2), (5, 2, 2), (3, 1, 0), (7, 3, 3), (1, 1, 0)] {
            for (h, w) in [(7, 7), (13, 11), (20, 9), (3, 17), (1, 1)] where h + 2 * pad >= k && w + 2 * pad >= k {
                check(geometry(channels: 3, h: h, w: w, k: k, stride: s, pad: pad), act: nil, residual: false)
            }
        }
    }

    func testDepthwiseDilationMultiplierAndAsymmetricStride() {
        check(geometry(channels: 2, h: 15, w: 19, k: 3, stride: 2, pad: 2, dilation: 2), act: .relu, residual: false)
        check(geometry(channels: 3, mult: 2, h: 10, w: 12, k: 3, stride: 1, pad: 1), act: .hardSwish, residual: true)
        var g = geometry(channels: 4, h: 12, w: 18, k: 3, stride: 1, pad: 1)
        g.strideH = 2; g.outH = (12 + 2 - 3) / 2 + 1
        check(g, act: .sigmoid, residual: false, bias: false)
    }

    func testDepthwiseLargeEnoughToRunInParallel() {
        check(geometry(batch: 3, channels: 16, h: 33, w: 35, k: 3, stride: 2, pad: 1), act: .hardSwish, residual: false)
        check(geometry(batch: 2, channels: 24, h: 28, w: 28, k: 5, stride: 1, pad: 2), act: .clip(min: 0, max: 6), residual: true)
    }

    /// Both depthwise kernels on the shapes of MobileNet-style models (many channels, small
    /// planes, a last block of fewer than eight channels), every activation, with and without
    /// a residual.
    func testBothDepthwiseKernelsOnManyChannels() {
        let acts: [ConvActivation?] = [nil, .relu, .leakyRelu(alpha: 0.1), .clip(min: 0, max: 6),
                                       .hardSigmoid(alpha: 0.2, beta: 0.5), .hardSwish, .sigmoid, .silu]
        let shapes = [geometry(batch: 1, channels: 37, h: 7, w: 7, k: 5, stride: 1, pad: 2),
                      geometry(batch: 2, channels: 20, h: 14, w: 14, k: 5, stride: 2, pad: 2),
                      geometry(batch: 1, channels: 9, h: 56, w: 56, k: 3, stride: 1, pad: 1),
                      geometry(batch: 1, channels: 3, h: 23, w: 5, k: 3, stride: 2, pad: 1, dilation: 2)]
        for (i, g) in shapes.enumerated() {
            for kernel in [Kernel.plane, .blocked] {
                check(g, act: acts[i % acts.count], residual: false, kernel: kernel)
                check(g, act: acts[(i + 3) % acts.count], residual: true, bias: i % 2 == 0, kernel: kernel)
            }
        }
        for act in acts {
            check(geometry(batch: 1, channels: 11, h: 9, w: 10, k: 3, stride: 1, pad: 1), act: act, residual: false, kernel: .blocked)
        }
    }

    func testEveryActivationOnGEMMPaths() {
        let acts: [ConvActivation?] = [nil, .relu, .leakyRelu(alpha: 0.1), .clip(min: -0.5, max: 0.7),
                                       .hardSigmoid(alpha: 0.2, beta: 0.5), .hardSwish, .sigmoid, .silu]
        for act in acts {
            check(geometry(channels: 5, h: 9, w: 11, k: 1, stride: 1, pad: 0, depthwise: false, out: 7), act: act, residual: false)
            check(geometry(channels: 3, h: 9, w: 7, k: 3, stride: 2, pad: 1, depthwise: false, out: 4), act: act, residual: true)
            check(geometry(batch: 1, channels: 40, h: 6, w: 7, k: 1, stride: 1, pad: 0, depthwise: false, out: 9), act: act,
                  residual: true)
        }
    }

    /// Inner dimensions on both sides of `SmallPatchConv.limit`, tiles with partial rows and
    /// columns, pointwise and im2col, one image and several.
    func testSmallPatchProductAtTheLimit() {
        let limit = SmallPatchConv.limit
        for channels in [limit, limit + 1, 32, 8, 1] {
            check(geometry(batch: 1, channels: channels, h: 5, w: 7, k: 1, stride: 1, pad: 0, depthwise: false, out: 6),
                  act: .hardSwish, residual: true)
            check(geometry(batch: 3, channels: channels, h: 11, w: 9, k: 1, stride: 1, pad: 0, depthwise: false, out: 13),
                  act: .relu, residual: false, bias: false)
        }
        check(geometry(batch: 1, channels: 3, h: 41, w: 37, k: 3, stride: 2, pad: 1, depthwise: false, out: 16),
              act: .hardSwish, residual: false)
        check(geometry(batch: 2, channels: 3, h: 20, w: 21, k: 3, stride: 1, pad: 1, depthwise: false, out: 7),
              act: .leakyRelu(alpha: 0.2), residual: true)
        // Few output channels over a long inner dimension (fer's 7-class head, its 8-channel 3x3).
        check(geometry(batch: 3, channels: 128, h: 4, w: 4, k: 3, stride: 1, pad: 1, depthwise: false, out: 7),
              act: nil, residual: false)
        check(geometry(batch: 2, channels: 8, h: 13, w: 12, k: 3, stride: 1, pad: 0, depthwise: false, out: 8),
              act: .relu, residual: true)
        // Stride 1: read from a padded copy of the input (one image cut into row bands).
        let banded = geometry(batch: 1, channels: 3, h: 17, w: 23, k: 3, stride: 1, pad: 1, depthwise: false, out: 5)
        XCTAssertTrue(DirectSmallConv.handles(banded))
        check(banded, act: .relu, residual: true)
        check(geometry(batch: 2, channels: 2, h: 9, w: 10, k: 3, stride: 1, pad: 2, dilation: 2, depthwise: false, out: 4),
              act: nil, residual: false, bias: false)
        check(geometry(batch: 1, channels: 1, h: 7, w: 6, k: 5, stride: 1, pad: 0, depthwise: false, out: 9),
              act: .sigmoid, residual: true)
        let squeeze = geometry(batch: 1, channels: 16, h: 19, w: 18, k: 3, stride: 1, pad: 1, depthwise: false, out: 64)
        XCTAssertTrue(DirectSmallConv.handles(squeeze))
        check(squeeze, act: .relu, residual: true)
        let dense = geometry(batch: 2, channels: 128, h: 7, w: 7, k: 3, stride: 1, pad: 1, depthwise: false, out: 32)
        XCTAssertTrue(DirectSmallConv.handles(dense))
        check(dense, act: nil, residual: false)
        XCTAssertTrue(SmallPatchConv.prefers(m: 7, k: 1152))
        XCTAssertFalse(SmallPatchConv.prefers(m: 17, k: 33))
    }

    /// One image on a small plane: the pointwise GEMM is cut by output channels, not columns.
    func testPointwiseSplitByOutputChannels() {
        let g = geometry(batch: 1, channels: 24, h: 7, w: 9, k: 1, stride: 1, pad: 0, depthwise: false, out: 70)
        XCTAssertEqual(Conv2D(g).rowBlocks, NNParallel.workers >= 2 && 70 >= 32 * NNParallel.workers ? NNParallel.workers : 1)
        check(g, act: .hardSwish, residual: true)
        check(g, act: nil, residual: false, bias: false)
        check(geometry(batch: 1, channels: 5, h: 3, w: 3, k: 1, stride: 1, pad: 0, depthwise: false, out: 131),
              act: .relu, residual: false)
        // A deep 3x3 on a small plane: one im2col matrix shared by the cores, output channels split.
        let deep = geometry(batch: 1, channels: 32, h: 9, w: 9, k: 3, stride: 1, pad: 1, depthwise: false, out: 70)
        XCTAssertEqual(Conv2D(deep).rowBlocks, NNParallel.workers >= 2 && 70 >= 32 * NNParallel.workers ? NNParallel.workers : 1)
        check(deep, act: .hardSwish, residual: true)
        check(geometry(batch: 1, channels: 40, h: 10, w: 11, k: 3, stride: 2, pad: 1, depthwise: false, out: 67),
              act: nil, residual: false, bias: false)
    }

    /// 1x1 maps over a batch (squeeze-excitation): one GEMM over the batch.
    func testPointwiseOnOneByOneMapsOverABatch() {
        check(geometry(batch: 5, channels: 24, h: 1, w: 1, k: 1, stride: 1, pad: 0, depthwise: false, out: 9),
              act: .hardSigmoid(alpha: 0.2, beta: 0.5), residual: true)
        check(geometry(batch: 3, channels: 7, h: 1, w: 1, k: 1, stride: 1, pad: 0, depthwise: false, out: 40),
              act: nil, residual: false, bias: false)
        check(geometry(batch: 4, channels: 40, h: 1, w: 1, k: 1, stride: 1, pad: 0, depthwise: false, out: 33),
              act: .relu, residual: false)
        // Large enough for its output channels to be split over the cores.
        check(geometry(batch: 1, channels: 512, h: 1, w: 1, k: 1, stride: 1, pad: 0, depthwise: false, out: 300),
              act: .hardSwish, residual: false)
        check(geometry(batch: 3, channels: 512, h: 1, w: 1, k: 1, stride: 1, pad: 0, depthwise: false, out: 301),
              act: nil, residual: true)
    }

    /// A frozen prefix's activations are cached per image and reused in other batch orders, so
    /// an image's output on 1x1 maps must not depend on where in the batch, or in a batch of
    /// what size, it runs (one GEMM over the batch gave edge rows other last bits).
    func testPointwiseOnOneByOneMapsIsTheSameAtAnyBatchPosition() {
        var rng = SystemRandomNumberGenerator()
        for (c, m) in [(40, 10), (63, 10), (10, 40), (512, 300)] {
            let w = (0..<(m * c)).map { _ in Float.random(in: -1...1, using: &rng) }
            let b = (0..<m).map { _ in Float.random(in: -1...1, using: &rng) }
            let x = (0..<(32 * c)).map { _ in Float.random(in: -1...1, using: &rng) }
            func run(_ batch: Int, _ images: [Float]) -> [Float] {
                let g = geometry(batch: batch, channels: c, h: 1, w: 1, k: 1, stride: 1, pad: 0, depthwise: false, out: m)
                let conv = Conv2D(g, epilogue: ConvEpilogue(activation: .relu, residual: false))
                var y = [Float](repeating: 0, count: batch * m)
                conv.forward(x: images, weight: w, bias: b, y: &y)
                return y
            }
            let whole = run(32, x)
            let reversed = run(32, (0..<32).reversed().flatMap { x[($0 * c)..<(($0 + 1) * c)] })
            for n in 0..<32 {
                let own = Array(whole[(n * m)..<((n + 1) * m)])
                XCTAssertEqual(own, Array(reversed[((31 - n) * m)..<((32 - n) * m)]), "C \(c), M \(m), image \(n) moved")
                XCTAssertEqual(own, run(1, Array(x[(n * c)..<((n + 1) * c)])), "C \(c), M \(m), image \(n) alone")
            }
        }
    }

    func testResidualWithoutBiasOnPointwiseAndIm2col() {
        check(geometry(batch: 1, channels: 6, h: 17, w: 19, k: 1, stride: 1, pad: 0, depthwise: false, out: 5),
              act: .relu, residual: true, bias: false)
        check(geometry(batch: 3, channels: 4, h: 12, w: 10, k: 3, stride: 1, pad: 1, depthwise: false, out: 6),
              act: nil, residual: true, bias: false)
    }

    func testActivationApplyMatchesElementwise() {
        let x = (0..<37).map { Float($0) * 0.37 - 6.5 }
        for (act, f) in [(ConvActivation.hardSwish, UnaryFunction.hardSwish), (.relu, .relu), (.sigmoid, .sigmoid),
                         (.leakyRelu(alpha: 0.3), .leakyRelu(alpha: 0.3)),
                         (.hardSigmoid(alpha: 0.25, beta: 0.4), .hardSigmoid(alpha: 0.25, beta: 0.4))] {
            var fused = x, plain = [Float](repeating: 0, count: x.count)
            fused.withUnsafeMutableBufferPointer { act.apply($0.baseAddress!, cols: x.count) }
            x.withUnsafeBufferPointer { xp in
                plain.withUnsafeMutableBufferPointer { Elementwise.unary(f, xp.baseAddress!, $0.baseAddress!, count: x.count) }
            }
            if act == .sigmoid {
                // The epilogue's sigmoid is Swift vector code, the element-wise one CKernels'
                // (fused multiply-adds where the CPU has them): equal within rounding.
                assertClose(fused, plain, tolerance: 1e-6, "\(act)")
            } else {
                XCTAssertEqual(fused, plain, "\(act)")
            }
        }
    }
}
