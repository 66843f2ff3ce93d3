import BraidKernels
import XCTest

/// `MLASOrderConv2D` against onnxruntime's float Conv to the bit (tools/fixtures/
/// gen_mlas_conv_literals.py: CPU provider, one thread, weights as graph inputs, the kernel a
/// quantized graph's float convolutions run with). Inputs come from an integer hash both sides
/// compute exactly; full 24-bit mantissas, so the products round and the order shows. The
/// first `keep` outputs of each output channel are compared. The cases cover MLAS's three
/// slicings: K 300 over 324 outputs (slices of 128), K 672 over 49 (of 256), and im2col
/// (3x3, padded; strided, grouped). `Conv2D` (OpenBLAS's order) differs on 54 to 59 of each
/// case's 64 compared outputs.
final class MLASOrderConvTests: XCTestCase {
    struct MLASCase {
        var name: String
        var c, h, w, m, kernel, stride, pad, group: Int
        var out: [Int]
        var keep: Int
        var bits: [UInt32]
    }

    static let cases: [MLASCase] = [
        // onnxruntime 1.31.1
        MLASCase(name: "pointwise K 300 over 324 outputs", c: 300, h: 18, w: 18, m: 4, kernel: 1, stride: 1, pad: 0, group: 1,
                 out: [18, 18], keep: 16, bits: [
                     0x3e9e83f0, 0x3ee88f38, 0x3e8b1a1c, 0x3ec9cd96, 0x3eb1eaec, 0x3ee513b8, 0x3eda515e, 0x3e74c33c,
                     0x3e66c66a, 0x3ec9ea2b, 0x3e86afb0, 0x3eb96cb8, 0x3e9403f4, 0x3ee2f70b, 0x3ec8b32b, 0x3e868921,
                     0x3d9f5c80, 0xbbad0988, 0xbe470394, 0xbd4b26fe, 0x3cb5ff10, 0xbdd83745, 0xbda7a020, 0xbd45780e,
                     0x3ddceae0, 0xbb0ac500, 0xbe5acfc0, 0xbc9820e8, 0x3d9ff534, 0xbd3f367d, 0x3d49f62c, 0x3d1de1a0,
                     0xbef1e918, 0xbee026aa, 0xbe936892, 0xbeccfdf0, 0xbefaad62, 0xbeffcd72, 0xbeabdb42, 0xbeb8952e,
                     0xbee0df11, 0xbeb72245, 0xbe9ba834, 0xbf0adaae, 0xbedc6996, 0xbeba40a8, 0xbe8ccd61, 0xbee4c432,
                     0x3e0353e5, 0x3eb747f2, 0x3e991fa8, 0x3e06cbb7, 0x3eaad006, 0x3e131710, 0x3e19aff1, 0x3e89b8f9,
                     0x3e90c95a, 0x3e842113, 0x3e1deace, 0x3d741978, 0x3e872934, 0x3dcbb43a, 0x3e0877ce, 0x3e815eb0,
                 ]),
        MLASCase(name: "pointwise K 672 over 49 outputs", c: 672, h: 7, w: 7, m: 4, kernel: 1, stride: 1, pad: 0, group: 1,
                 out: [7, 7], keep: 16, bits: [
                     0x3eeb062e, 0x3eca8d54, 0x3e975ec8, 0x3ebf2472, 0x3eaa9c11, 0x3ecdab57, 0x3ec16178, 0x3ead3169,
                     0x3ef3eb2f, 0x3e8fd9d5, 0x3e879a3c, 0x3ec8c18b, 0x3e8c70f6, 0x3eec178c, 0x3e8428d2, 0x3e9a581b,
                     0xbe08473b, 0x3db21ee2, 0xbd9aae7c, 0xbd4acf34, 0x3d8d07a5, 0xbe336733, 0x3dfe3a4c, 0xbdbc55bf,
                     0xbdc4c0ae, 0x3d92c992, 0xbdf804a9, 0xbc35cb60, 0xbc80b090, 0xbe5ce113, 0x3ddff200, 0x3d643c80,
                     0xbeebd7b7, 0xbedaec72, 0xbe7e11b0, 0xbebd0f56, 0xbf1019cb, 0xbeae1228, 0xbee02833, 0xbeda246a,
                     0xbe95f7ec, 0xbef705b7, 0xbea5117b, 0xbee67770, 0xbedfc47a, 0xbebd1a54, 0xbeb935ca, 0xbeb73336,
                     0x3ea40687, 0x3e8615fe, 0x3e03e99f, 0x3ea97a5c, 0x3d3bd240, 0x3e532dde, 0x3e9d0cf3, 0x3c89cc70,
                     0x3e83f4c5, 0x3e39b5c6, 0x3e28b655, 0x3eca20b2, 0x3cac7930, 0x3ea7659f, 0x3e734be6, 0x3ca044a8,
                 ]),
        MLASCase(name: "3x3 padded K 288", c: 32, h: 18, w: 18, m: 4, kernel: 3, stride: 1, pad: 1, group: 1,
                 out: [18, 18], keep: 16, bits: [
                     0x3e6b4f78, 0x3ea9cde3, 0x3ebd64ce, 0x3e6c38d5, 0x3f0561e0, 0x3ec02930, 0x3eceb8de, 0x3ec82e92,
                     0x3e151dcd, 0x3f03e745, 0x3eef22aa, 0x3e2accc0, 0x3ef23a3e, 0x3e5f986d, 0x3ec6886a, 0x3ee81130,
                     0xbe1c6ff8, 0x3d2f286c, 0xbc68bea0, 0xbe7dd4f8, 0x3e492a54, 0xbd3968c0, 0x3c475cb8, 0x3ceeeaec,
                     0xbe9f0d20, 0x3e5a15a5, 0x3d8cdd02, 0xbe4e8de2, 0x3e08ca72, 0xbe5e6101, 0x3dd99010, 0x3d9cab82,
                     0xbefb7b60, 0xbeafb3c0, 0xbee52e89, 0xbf1a5e8a, 0xbe53e5fc, 0xbebe6acc, 0xbeb9b860, 0xbec95460,
                     0xbf279d18, 0xbe37af9f, 0xbebe60ed, 0xbf109776, 0xbe8e384f, 0xbf0d41ca, 0xbe8da4a5, 0xbeb52d8e,
                     0x3e757820, 0x3e7a9407, 0x3dfa6cc5, 0x3d98f97e, 0x3ea76ea5, 0x3e895d04, 0x3e84759b, 0x3e574b24,
                     0x3d678be4, 0x3ec6ba0a, 0x3e9a971b, 0x3dba5438, 0x3e6fe3b6, 0x3e441983, 0x3ea551df, 0x3e6929d7,
                 ]),
        MLASCase(name: "3x3 stride 2, two groups", c: 64, h: 15, w: 15, m: 4, kernel: 3, stride: 2, pad: 1, group: 2,
                 out: [8, 8], keep: 16, bits: [
                     0x3ea0ab16, 0x3f00bfbb, 0xbd084110, 0x3f23bde0, 0x3e87d9cc, 0x3f30a453, 0x3cd972c0, 0x3ef816a1,
                     0x3e865ec7, 0x3ed5e3b1, 0x3ea2fa0c, 0x3ed85664, 0x3e0b0064, 0x3ef79dd0, 0x3e4c939a, 0x3f06b42a,
                     0xbd8a8dfc, 0x3df00900, 0xbef80932, 0x3e7dedae, 0xbd8a52c0, 0x3ed48ac8, 0xbee0aa86, 0x3d9f36d3,
                     0xbdf248ca, 0x3d34c8e8, 0x3b0e5540, 0x3d258dec, 0xbe9f85f2, 0x3dc341ac, 0xbe062ccd, 0x3e830e20,
                     0xbebbc2ce, 0xbe3de282, 0xbf182027, 0xbf31f3cc, 0xbe4382c2, 0xbed7d753, 0xbe933ada, 0xbf351302,
                     0xbf205cc5, 0xbea0977f, 0xbf210250, 0x3d3bfb90, 0xbf35dfa3, 0xbee75f91, 0xbf00ea48, 0xbe89c890,
                     0x3e0e9d2c, 0x3ed15c19, 0x3db1ce9c, 0x3d9990fa, 0x3e96edee, 0x3e1b48ae, 0x3ebea766, 0xbc1848e0,
                     0x3dabd4d4, 0x3eb7b3b0, 0xbdf6590c, 0x3f2539c8, 0xbcb10e10, 0x3ea5d7c2, 0xbc6917f0, 0x3ea1e973,
                 ]),
    ]

    /// tools/fixtures/gen_mlas_conv_literals.py's `hashed`.
    static func hashed(_ count: Int, salt: UInt64, scale: Float) -> [Float] {
        (0..<count).map { i in
            let h = ((UInt64(i) + salt) &* 2654435761) % (1 << 32)
            return (Float(h >> 8) / Float(1 << 24) - 0.5) * scale
        }
    }

    /// In every instruction set the CPU has (the portable x86-64 build calls fmaf).
    func testSumsAsOnnxruntime() {
        let before = KernelISA.active
        defer { KernelISA.select(before) }
        for isa in KernelISA.allCases where isa.rawValue <= KernelISA.best.rawValue {
            XCTAssertEqual(KernelISA.select(isa), isa)
            check(isa)
        }
    }

    func check(_ isa: KernelISA) {
        for t in Self.cases {
            let g = ConvGeometry(batch: 1, inChannels: t.c, inH: t.h, inW: t.w, outChannels: t.m, outH: t.out[0],
                                 outW: t.out[1], kernelH: t.kernel, kernelW: t.kernel, strideH: t.stride,
                                 strideW: t.stride, padTop: t.pad, padLeft: t.pad, group: t.group)
            XCTAssertTrue(MLASOrderConv2D.handles(g), t.name)
            let x = Self.hashed(t.c * t.h * t.w, salt: 1, scale: 1)
            let w = Self.hashed(t.m * (t.c / t.group) * t.kernel * t.kernel, salt: 2, scale: 0.125)
            let b = Self.hashed(t.m, salt: 3, scale: 1)
            let plane = t.out[0] * t.out[1]
            var y = [Float](repeating: .nan, count: t.m * plane)
            let conv = MLASOrderConv2D(g)
            y.withUnsafeMutableBufferPointer { yp in
                conv.forward(x: x, weight: w, bias: b, y: yp.baseAddress!)
            }
            var wrong = 0
            for m in 0..<t.m {
                for j in 0..<t.keep where y[m * plane + j].bitPattern != t.bits[m * t.keep + j] { wrong += 1 }
            }
            XCTAssertEqual(wrong, 0, "\(t.name) (\(isa)): \(wrong) of \(t.m * t.keep) outputs differ from onnxruntime's in the last bits")
        }
    }

    /// The slice lengths MLAS's SGEMM picks (its K stride).
    func testSliceLength() {
        XCTAssertEqual(MLASOrderConv2D.sliceLength(outputs: 324, depth: 300), 128)
        XCTAssertEqual(MLASOrderConv2D.sliceLength(outputs: 3136, depth: 24), 32)
        XCTAssertEqual(MLASOrderConv2D.sliceLength(outputs: 49, depth: 672), 256)
        XCTAssertEqual(MLASOrderConv2D.sliceLength(outputs: 25, depth: 600), 512)
        XCTAssertEqual(MLASOrderConv2D.sliceLength(outputs: 10, depth: 600), 1024)
    }
}
