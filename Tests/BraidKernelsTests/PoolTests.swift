import XCTest
@testable import BraidKernels

/// Pooling from the ONNX definition: window taps at `o * s + k * d - padBegin`; taps outside
/// the input are skipped, and for `countIncludePad` the divisor counts the taps inside the
/// explicitly padded input.
private func referencePool(_ g: PoolGeometry, _ r: PoolReduction, _ x: [Float]) -> (y: [Float], idx: [Int64]) {
    var y: [Float] = [], idx: [Int64] = []
    for p in 0..<g.planes {
        for od in 0..<g.outD {
            for oy in 0..<g.outH {
                for ox in 0..<g.outW {
                    var values: [Float] = [], positions: [Int] = [], padded = 0
                    for kd in 0..<g.kernelD {
                        for ky in 0..<g.kernelH {
                            for kx in 0..<g.kernelW {
                                let id = od * g.strideD + kd * g.dilationD - g.padFront
                                let iy = oy * g.strideH + ky * g.dilationH - g.padTop
                                let ix = ox * g.strideW + kx * g.dilationW - g.padLeft
                                if id >= -g.padFront && id < g.inD + g.padBack && iy >= -g.padTop && iy < g.inH + g.padBottom
                                    && ix >= -g.padLeft && ix < g.inW + g.padRight {
                                    padded += 1
                                }
                                if id >= 0 && id < g.inD && iy >= 0 && iy < g.inH && ix >= 0 && ix < g.inW {
                                    values.append(x[((p * g.inD + id) * g.inH + iy) * g.inW + ix])
                                    positions.append((id * g.inH + iy) * g.inW + ix)
                                }
                            }
                        }
                    }
                    switch r {
                    case .max:
                        let best = values.indices.max { values[$0] < values[$1] || (values[$0] == values[$1] && $0 > $1) }!
                        y.append(values[best])
                        idx.append(Int64(p * g.inD * g.inH * g.inW + positions[best]))
                    case .average(let include):
                        y.append(values.reduce(0, +) / Float(include ? padded : values.count))
                    case .lp(let pw):
                        y.append(Float(pow(values.reduce(0.0) { $0 + pow(Double(abs($1)), Double(pw)) }, 1 / Double(pw))))
                    }
                }
            }
        }
    }
    return (y, idx)
}

final class PoolTests: XCTestCase {
    /// A 3-D window with dilation, padding and a ceil-mode overhang on the depth axis.
    private func volume() -> PoolGeometry {
        var g = PoolGeometry(planes: 2, inH: 5, inW: 6, outH: 3, outW: 3, kernelH: 2, kernelW: 2, strideH: 2, strideW: 2,
                             padTop: 1, padLeft: 0, padBottom: 0, padRight: 0)
        g.inD = 7; g.outD = 3; g.kernelD = 3; g.strideD = 2; g.dilationD = 2; g.padFront = 1; g.padBack = 1
        return g
    }

    /// Small planes with "same" padding, ceil-mode overhang, dilation and stride 1 and 2: the
    /// padded-plane path, against the definition (and one wide plane that takes the other path).
    func testMaxPoolSmallPaddedPlanes() {
        let cases: [PoolGeometry] = [
            PoolGeometry(planes: 5, inH: 15, inW: 15, outH: 8, outW: 8, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2,
                         padTop: 1, padLeft: 1, padBottom: 1, padRight: 1),
            PoolGeometry(planes: 3, inH: 8, inW: 8, outH: 4, outW: 4, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2,
                         padTop: 0, padLeft: 0, padBottom: 1, padRight: 1),
            PoolGeometry(planes: 2, inH: 7, inW: 9, outH: 6, outW: 8, kernelH: 2, kernelW: 2),
            PoolGeometry(planes: 2, inH: 13, inW: 11, outH: 5, outW: 4, kernelH: 3, kernelW: 3, strideH: 3, strideW: 2,
                         dilationH: 2, dilationW: 2, padTop: 2, padLeft: 1, padBottom: 2, padRight: 1),
            PoolGeometry(planes: 1, inH: 6, inW: 40, outH: 6, outW: 40, kernelH: 3, kernelW: 3, padTop: 1, padLeft: 1,
                         padBottom: 1, padRight: 1),
        ]
        for g in cases {
            let x = (0..<(g.planes * g.inH * g.inW)).map { Float(($0 * 7919) % 101) - 50 }
            var y = [Float](repeating: .nan, count: g.planes * g.outH * g.outW)
            pool(g, .max, x: x, y: &y)
            XCTAssertEqual(y, referencePool(g, .max, x).y, "\(g)")
        }
    }

    func testIntegerMaxPoolMatchesFloat() {
        let g = volume()
        let xi = (0..<(g.planes * g.inD * g.inH * g.inW)).map { Int64(($0 * 7919) % 101) - 50 }
        var yi = [Int64](repeating: 0, count: g.planes * g.outD * g.outH * g.outW), ii = yi
        maxPoolInt64(g, x: xi, y: &yi, indices: &ii)
        let ref = referencePool(g, .max, xi.map(Float.init))
        XCTAssertEqual(yi.map(Float.init), ref.y)
        XCTAssertEqual(ii, ref.idx)
    }

    private func geometries() -> [PoolGeometry] {
        [
            PoolGeometry(planes: 3, inH: 8, inW: 9, outH: 4, outW: 4, kernelH: 2, kernelW: 2, strideH: 2, strideW: 2),
            PoolGeometry(planes: 2, inH: 7, inW: 7, outH: 4, outW: 4, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2,
                         padTop: 1, padLeft: 1, padBottom: 1, padRight: 1),
            // ceil-mode overhang: the last window reaches past the padded input.
            PoolGeometry(planes: 1, inH: 6, inW: 6, outH: 3, outW: 3, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2),
            PoolGeometry(planes: 2, inH: 9, inW: 10, outH: 5, outW: 4, kernelH: 3, kernelW: 2, strideH: 1, strideW: 3,
                         dilationH: 2, dilationW: 2, padTop: 0, padLeft: 1, padBottom: 1, padRight: 0),
            PoolGeometry(planes: 4, inH: 1, inW: 11, outH: 1, outW: 6, kernelH: 1, kernelW: 3, strideW: 2,
                         padLeft: 1, padRight: 1),
            PoolGeometry(planes: 40, inH: 30, inW: 30, outH: 15, outW: 15, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2,
                         padTop: 1, padLeft: 1, padBottom: 1, padRight: 1),
            volume(),
            // Wide rows: the eight-column paths at stride 1, and at stride 2 with dilation.
            PoolGeometry(planes: 3, inH: 9, inW: 40, outH: 9, outW: 40, kernelH: 3, kernelW: 3,
                         padTop: 1, padLeft: 1, padBottom: 1, padRight: 1),
            PoolGeometry(planes: 2, inH: 12, inW: 50, outH: 6, outW: 25, kernelH: 2, kernelW: 3, strideH: 2, strideW: 2,
                         dilationW: 2, padTop: 0, padLeft: 2, padBottom: 1, padRight: 2),
            PoolGeometry(planes: 2, inH: 7, inW: 33, outH: 4, outW: 17, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2,
                         padTop: 1, padLeft: 1, padBottom: 1, padRight: 2),
        ]
    }

    func testMaxPoolValuesAndIndices() {
        for g in geometries() {
            let x = nnRandom(g.planes * g.inD * g.inH * g.inW, seed: 31)
            var y = [Float](repeating: .nan, count: g.planes * g.outD * g.outH * g.outW)
            var idx = [Int64](repeating: -7, count: y.count)
            pool(g, .max, x: x, y: &y, indices: &idx)
            let ref = referencePool(g, .max, x)
            XCTAssertEqual(y, ref.y, "\(g)")
            XCTAssertEqual(idx, ref.idx, "\(g)")
        }
    }

    func testMaxPoolColumnMajorIndices() {
        let g = PoolGeometry(planes: 2, inH: 4, inW: 5, outH: 2, outW: 2, kernelH: 2, kernelW: 2, strideH: 2, strideW: 2)
        let x = nnRandom(40, seed: 32)
        var y = [Float](repeating: 0, count: 8), idx = [Int64](repeating: 0, count: 8)
        pool(g, .max, x: x, y: &y, indices: &idx, columnMajor: true)
        let ref = referencePool(g, .max, x)
        let expected = ref.idx.map { i -> Int64 in
            let plane = i / 20, h = (i % 20) / 5, w = i % 5
            return plane * 20 + h + w * 4
        }
        XCTAssertEqual(idx, expected)
    }

    func testAveragePoolWithAndWithoutPadding() {
        for g in geometries() {
            let x = nnRandom(g.planes * g.inD * g.inH * g.inW, seed: 33)
            for include in [false, true] {
                var y = [Float](repeating: .nan, count: g.planes * g.outD * g.outH * g.outW)
                pool(g, .average(countIncludePad: include), x: x, y: &y)
                nnAssertClose(y, referencePool(g, .average(countIncludePad: include), x).y, "\(g) include=\(include)")
            }
        }
    }

    func testLpPool() {
        for g in geometries() {
            let x = nnRandom(g.planes * g.inD * g.inH * g.inW, seed: 34)
            for p in [1, 2, 3] {
                var y = [Float](repeating: .nan, count: g.planes * g.outD * g.outH * g.outW)
                pool(g, .lp(p: p), x: x, y: &y)
                nnAssertClose(y, referencePool(g, .lp(p: p), x).y, "\(g) p=\(p)")
            }
        }
    }

    func testGlobalPool() {
        for (planes, size) in [(6, 49), (3, 1), (300, 300), (9, 6)] {
            let x = nnRandom(planes * size, seed: 35)
            var avg = [Float](repeating: .nan, count: planes), mx = avg, l2 = avg
            globalPool(.average(countIncludePad: false), planes: planes, size: size, x: x, y: &avg)
            globalPool(.max, planes: planes, size: size, x: x, y: &mx)
            globalPool(.lp(p: 2), planes: planes, size: size, x: x, y: &l2)
            for p in 0..<planes {
                let row = Array(x[(p * size)..<((p + 1) * size)])
                XCTAssertEqual(avg[p], row.reduce(0, +) / Float(size), accuracy: 1e-5)
                // Planes taken four at a time sum in the one-plane order, to the bit
                // (onnxruntime's order, which quantized models need).
                XCTAssertEqual(avg[p], row.withUnsafeBufferPointer { fourLaneSum($0.baseAddress!, size) } / Float(size),
                               "plane \(p) of \(planes)x\(size)")
                XCTAssertEqual(mx[p], row.max()!)
                XCTAssertEqual(l2[p], row.map { $0 * $0 }.reduce(0, +).squareRoot(), accuracy: 1e-4)
            }
        }
    }
}
