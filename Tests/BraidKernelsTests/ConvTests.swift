import XCTest
@testable import BraidKernels

/// Convolution straight from its definition, over `[N, C, H, W]`.
private func referenceConv(_ g: ConvGeometry, _ x: [Float], _ w: [Float], _ b: [Float]?) -> [Float] {
    var y = [Float](repeating: 0, count: g.batch * g.outChannels * g.outH * g.outW)
    let cg = g.inChannels / g.group, mg = g.outChannels / g.group
    for n in 0..<g.batch {
        for m in 0..<g.outChannels {
            let grp = m / mg
            for oy in 0..<g.outH {
                for ox in 0..<g.outW {
                    var s: Double = Double(b?[m] ?? 0)
                    for ci in 0..<cg {
                        let c = grp * cg + ci
                        for ky in 0..<g.kernelH {
                            for kx in 0..<g.kernelW {
                                let iy = oy * g.strideH + ky * g.dilationH - g.padTop
                                let ix = ox * g.strideW + kx * g.dilationW - g.padLeft
                                if iy < 0 || iy >= g.inH || ix < 0 || ix >= g.inW { continue }
                                let xv = x[((n * g.inChannels + c) * g.inH + iy) * g.inW + ix]
                                let wv = w[((m * cg + ci) * g.kernelH + ky) * g.kernelW + kx]
                                s += Double(xv) * Double(wv)
                            }
                        }
                    }
                    y[((n * g.outChannels + m) * g.outH + oy) * g.outW + ox] = Float(s)
                }
            }
        }
    }
    return y
}

/// Transposed convolution straight from its definition (scatter form).
private func referenceConvTranspose(_ g: ConvGeometry, _ x: [Float], _ w: [Float], _ b: [Float]?) -> [Float] {
    var y = [Float](repeating: 0, count: g.batch * g.outChannels * g.outH * g.outW)
    let cg = g.inChannels / g.group, mg = g.outChannels / g.group
    for n in 0..<g.batch {
        for m in 0..<g.outChannels {
            for i in 0..<(g.outH * g.outW) { y[(n * g.outChannels + m) * g.outH * g.outW + i] = b?[m] ?? 0 }
        }
        for c in 0..<g.inChannels {
            let grp = c / cg
            for iy in 0..<g.inH {
                for ix in 0..<g.inW {
                    let xv = x[((n * g.inChannels + c) * g.inH + iy) * g.inW + ix]
                    for mi in 0..<mg {
                        let m = grp * mg + mi
                        for ky in 0..<g.kernelH {
                            for kx in 0..<g.kernelW {
                                let oy = iy * g.strideH + ky * g.dilationH - g.padTop
                                let ox = ix * g.strideW + kx * g.dilationW - g.padLeft
                                if oy < 0 || oy >= g.outH || ox < 0 || ox >= g.outW { continue }
                                y[((n * g.outChannels + m) * g.outH + oy) * g.outW + ox] +=
                                    xv * w[((c * mg + mi) * g.kernelH + ky) * g.kernelW + kx]
                            }
                        }
                    }
                }
            }
        }
    }
    return y
}

/// Output size along one axis for explicit pads.
private func outSize(_ n: Int, _ k: Int, _ s: Int, _ d: Int, _ p0: Int, _ p1: Int) -> Int {
    (n + p0 + p1 - (k - 1) * d - 1) / s + 1
}

private func geometry(n: Int, c: Int, h: Int, w: Int, m: Int, k: (Int, Int), s: (Int, Int) = (1, 1),
                      d: (Int, Int) = (1, 1), pads: (Int, Int, Int, Int) = (0, 0, 0, 0), group: Int = 1) -> ConvGeometry {
    ConvGeometry(batch: n, inChannels: c, inH: h, inW: w, outChannels: m,
                 outH: outSize(h, k.0, s.0, d.0, pads.0, pads.2), outW: outSize(w, k.1, s.1, d.1, pads.1, pads.3),
                 kernelH: k.0, kernelW: k.1, strideH: s.0, strideW: s.1, dilationH: d.0, dilationW: d.1,
                 padTop: pads.0, padLeft: pads.1, group: group)
}

final class ConvTests: XCTestCase {
    private func check(_ g: ConvGeometry, bias: Bool = true, expect method: Conv2D.Method,
                       file: StaticString = #filePath, line: UInt = #line) {
        let x = nnRandom(g.batch * g.inChannels * g.inH * g.inW, seed: 11)
        let w = nnRandom(g.outChannels * g.patch, seed: 12)
        let b = bias ? nnRandom(g.outChannels, seed: 13) : nil
        let conv = Conv2D(g)
        XCTAssertEqual(conv.method, method, file: file, line: line)
        var y = [Float](repeating: .nan, count: g.batch * g.outChannels * g.outH * g.outW)
        if let b {
            conv.forward(x: x, weight: w, bias: b, y: &y)
        } else {
            conv.forward(x: x, weight: w, bias: nil, y: &y)
        }
        nnAssertClose(y, referenceConv(g, x, w, b), "\(g)", file: file, line: line)
        // A second run over the same output must give the same answer (no accumulation).
        let first = y
        if let b { conv.forward(x: x, weight: w, bias: b, y: &y) } else { conv.forward(x: x, weight: w, bias: nil, y: &y) }
        XCTAssertEqual(y, first, file: file, line: line)
    }

    func testPointwiseGoesStraightToGEMM() {
        check(geometry(n: 2, c: 5, h: 6, w: 7, m: 9, k: (1, 1)), expect: .pointwise)
        check(geometry(n: 1, c: 3, h: 4, w: 4, m: 2, k: (1, 1)), bias: false, expect: .pointwise)
    }

    func testStridedOneByOneUsesIm2col() {
        check(geometry(n: 1, c: 4, h: 7, w: 7, m: 3, k: (1, 1), s: (2, 2)), expect: .im2col)
    }

    func testGeneralConvPaddingStrideDilation() {
        check(geometry(n: 1, c: 3, h: 9, w: 11, m: 4, k: (3, 3), pads: (1, 1, 1, 1)), expect: .im2col)
        check(geometry(n: 2, c: 3, h: 10, w: 9, m: 5, k: (3, 3), s: (2, 2), pads: (1, 0, 1, 1)), expect: .im2col)
        check(geometry(n: 1, c: 2, h: 12, w: 13, m: 3, k: (3, 2), s: (1, 3), d: (2, 3), pads: (2, 1, 0, 2)), expect: .im2col)
        check(geometry(n: 1, c: 3, h: 20, w: 21, m: 6, k: (5, 5), s: (2, 2), pads: (2, 2, 2, 2)), bias: false, expect: .im2col)
        check(geometry(n: 1, c: 1, h: 16, w: 16, m: 8, k: (3, 3)), expect: .im2col)
    }

    func testGroupedConv() {
        check(geometry(n: 2, c: 4, h: 8, w: 8, m: 6, k: (3, 3), pads: (1, 1, 1, 1), group: 2), expect: .im2col)
        check(geometry(n: 1, c: 6, h: 5, w: 5, m: 9, k: (1, 1), group: 3), expect: .pointwise)
    }

    func testDepthwise() {
        check(geometry(n: 2, c: 5, h: 13, w: 37, m: 5, k: (3, 3), pads: (1, 1, 1, 1), group: 5), expect: .depthwise)
        check(geometry(n: 1, c: 4, h: 14, w: 40, m: 4, k: (3, 3), s: (2, 2), pads: (1, 1, 1, 1), group: 4), expect: .depthwise)
        check(geometry(n: 1, c: 3, h: 15, w: 41, m: 3, k: (5, 5), s: (2, 2), pads: (2, 2, 2, 2), group: 3), expect: .depthwise)
        check(geometry(n: 1, c: 3, h: 11, w: 30, m: 3, k: (3, 3), d: (2, 2), pads: (2, 2, 2, 2), group: 3), bias: false, expect: .depthwise)
        check(geometry(n: 1, c: 3, h: 9, w: 20, m: 6, k: (3, 3), pads: (1, 1, 1, 1), group: 3), expect: .depthwise)
        check(geometry(n: 1, c: 2, h: 7, w: 25, m: 2, k: (3, 3), s: (3, 3), pads: (0, 1, 0, 1), group: 2), expect: .depthwise)
        check(geometry(n: 1, c: 2, h: 4, w: 5, m: 2, k: (3, 3), pads: (1, 1, 1, 1), group: 2), expect: .depthwise)
        check(geometry(n: 3, c: 64, h: 20, w: 20, m: 64, k: (3, 3), pads: (1, 1, 1, 1), group: 64), expect: .depthwise)
    }

    func testOneDimensionalConvAsHeightOne() {
        check(geometry(n: 2, c: 3, h: 1, w: 30, m: 4, k: (1, 5), s: (1, 2), pads: (0, 2, 0, 1)), expect: .im2col)
    }

    func testWorkSplitIntoPanelsAcrossImagesAndRows() {
        // Panels that end mid-row, several per image, and images split across workers.
        let big = geometry(n: 2, c: 32, h: 40, w: 40, m: 16, k: (3, 3), pads: (1, 1, 1, 1))
        XCTAssertGreaterThan((big.outH * big.outW + Conv2D(big).panel - 1) / Conv2D(big).panel, 2)
        check(big, expect: .im2col)
        check(geometry(n: 3, c: 8, h: 12, w: 12, m: 6, k: (3, 3), pads: (1, 1, 1, 1)), expect: .im2col)
        check(geometry(n: 3, c: 8, h: 12, w: 12, m: 6, k: (1, 1)), expect: .pointwise)
        check(geometry(n: 1, c: 3, h: 33, w: 35, m: 5, k: (1, 1)), expect: .pointwise)
        check(geometry(n: 1, c: 1, h: 31, w: 29, m: 8, k: (3, 3), s: (2, 2), pads: (1, 1, 1, 1)), expect: .im2col)
    }

    func testConvTransposeMatchesScatterDefinition() {
        let cases: [(ConvGeometry, Bool)] = [
            (ConvGeometry(batch: 1, inChannels: 2, inH: 3, inW: 3, outChannels: 3, outH: 5, outW: 5,
                          kernelH: 3, kernelW: 3), true),
            (ConvGeometry(batch: 2, inChannels: 4, inH: 4, inW: 5, outChannels: 6, outH: 9, outW: 10,
                          kernelH: 3, kernelW: 3, strideH: 2, strideW: 2, padTop: 1, padLeft: 1, group: 2), true),
            (ConvGeometry(batch: 1, inChannels: 3, inH: 1, inW: 6, outChannels: 2, outH: 1, outW: 16,
                          kernelH: 1, kernelW: 4, strideW: 3, dilationW: 2, padLeft: 2), false),
            (ConvGeometry(batch: 1, inChannels: 1, inH: 3, inW: 3, outChannels: 1, outH: 9, outW: 9,
                          kernelH: 3, kernelW: 3, strideH: 3, strideW: 3, padTop: -1, padLeft: 0), true),
        ]
        for (g, bias) in cases {
            let x = nnRandom(g.batch * g.inChannels * g.inH * g.inW, seed: 21)
            let w = nnRandom(g.inChannels * g.groupOut * g.kernelH * g.kernelW, seed: 22)
            let b = bias ? nnRandom(g.outChannels, seed: 23) : nil
            var y = [Float](repeating: .nan, count: g.batch * g.outChannels * g.outH * g.outW)
            let kernel = ConvTranspose2D(g)
            if let b { kernel.forward(x: x, weight: w, bias: b, y: &y) } else { kernel.forward(x: x, weight: w, bias: nil, y: &y) }
            nnAssertClose(y, referenceConvTranspose(g, x, w, b), "\(g)")
        }
    }
}
