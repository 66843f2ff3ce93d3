import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// The QDQ groups onnxruntime's CPU provider runs as integer kernels are read as those kernels
/// (`ONNXImporter.fusesQDQGroups`), and only those. Which groups onnxruntime fuses was checked
/// against its own optimised graphs of the quant zoo's seven QDQ files (same counts of
/// QLinearConv, QLinearMatMul, QGemm, QLinearAdd, ... per file); these cases pin the rules.
final class QDQFusionTests: XCTestCase {
    /// Deterministic values in [-1, 1).
    func values(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2000) / 1000
        }
    }

    /// x [1, 2, 5, 5] -> QuantizeLinear -> DequantizeLinear -> Conv (weights int8 per channel,
    /// bias int32) -> [Relu] -> QuantizeLinear -> DequantizeLinear -> y. `activation` is the
    /// activations' type (uint8 or int8); `shareInput` gives the quantized input a second
    /// DequantizeLinear reader (a graph output); `explicit` writes the QLinearConv itself.
    func convModel(activation: ONNXDataType = .uint8, shareInput: Bool = false, relu: Bool = false,
                   outputZeroPoint: Int64? = nil, explicit: Bool = false) -> ONNXModelProto {
        var b = ModelBuilder(opset: 13)
        b.input("x", dims(1, 2, 5, 5))
        b.output("y")
        let dtype: DType = activation == .int8 ? .int8 : .uint8
        let xZero: Int64 = activation == .int8 ? -3 : 125
        b.initializer("xs", Tensor(shape: [], floats: [0.011]))
        b.initializer("xzp", Tensor(shape: [], ints: [xZero], dtype: dtype))
        b.initializer("ys", Tensor(shape: [], floats: [0.007]))
        b.initializer("yzp", Tensor(shape: [], ints: [outputZeroPoint ?? (activation == .int8 ? 4 : 131)], dtype: dtype))
        let w = values(3 * 2 * 9, seed: 7).map { Int64(($0 * 63).rounded()) }
        b.initializer("w", Tensor(shape: [3, 2, 3, 3], ints: w, dtype: .int8))
        let ws: [Float] = [0.004, 0.006, 0.005]
        b.initializer("ws", Tensor(shape: [3], floats: ws))
        b.initializer("wzp", Tensor(shape: [3], ints: [0, 0, 0], dtype: .int8))
        b.initializer("bias", Tensor(shape: [3], ints: [40, -25, 3], dtype: .int32))
        b.initializer("bs", Tensor(shape: [3], floats: ws.map { $0 * 0.011 }))
        b.initializer("bzp", Tensor(shape: [3], ints: [0, 0, 0], dtype: .int32))
        b.node("QuantizeLinear", ["x", "xs", "xzp"], ["xq"])
        if explicit {
            b.node("QLinearConv", ["xq", "xs", "xzp", "w", "ws", "wzp", "ys", "yzp", "bias"], ["yq"], .ints("pads", [1, 1, 1, 1]))
        } else {
            b.node("DequantizeLinear", ["xq", "xs", "xzp"], ["xd"])
            b.node("DequantizeLinear", ["w", "ws", "wzp"], ["wd"], .int("axis", 0))
            b.node("DequantizeLinear", ["bias", "bs", "bzp"], ["bd"], .int("axis", 0))
            b.node("Conv", ["xd", "wd", "bd"], ["c"], name: "conv", .ints("pads", [1, 1, 1, 1]), .ints("kernel_shape", [3, 3]))
            if relu { b.node("Relu", ["c"], ["r"]) }
            b.node("QuantizeLinear", [relu ? "r" : "c", "ys", "yzp"], ["yq"])
        }
        b.node("DequantizeLinear", ["yq", "ys", "yzp"], ["y"])
        if shareInput {
            b.node("DequantizeLinear", ["xq", "xs", "xzp"], ["x_again"])
            b.output("x_again")
        }
        return b.model
    }

    func importGraph(_ m: ONNXModelProto, fuse: Bool = true) throws -> Graph {
        try ONNXImporter(fusesQDQGroups: fuse).importModel(m)
    }

    func sourceOps(_ g: Graph) -> Set<String> { Set(g.nodes.map(\.sourceOp)) }

    func input() -> Tensor { Tensor(shape: [1, 2, 5, 5], floats: values(50, seed: 3).map { $0 * 1.3 }) }

    func testConvGroupIsReadAsQLinearConvAndMatchesItToTheBit() throws {
        let fused = try importGraph(convModel())
        XCTAssertTrue(sourceOps(fused).contains("QLinearConv"), "\(sourceOps(fused))")
        XCTAssertFalse(sourceOps(fused).contains("Conv"))
        let explicit = try importGraph(convModel(explicit: true))
        let a = try runGraph(fused, [input()])[0], b = try runGraph(explicit, [input()])[0]
        XCTAssertEqual(a.floatArray, b.floatArray)
        // Read as written, the same file has a float convolution and no integer kernel.
        let plain = try importGraph(convModel(), fuse: false)
        XCTAssertTrue(sourceOps(plain).contains("Conv"))
        XCTAssertFalse(sourceOps(plain).contains("QLinearConv"))
    }

    func testInt8ActivationsFuseOnlyWhenTheQuantizeLinearHasOneReader() throws {
        // One reader: onnxruntime turns the pair into uint8 and fuses the group.
        XCTAssertTrue(sourceOps(try importGraph(convModel(activation: .int8))).contains("QLinearConv"))
        // A second DequantizeLinear reader keeps the input int8, which x86 does not fuse.
        let shared = try importGraph(convModel(activation: .int8, shareInput: true))
        XCTAssertTrue(sourceOps(shared).contains("Conv"))
        XCTAssertFalse(sourceOps(shared).contains("QLinearConv"))
        // uint8 activations fuse either way.
        XCTAssertTrue(sourceOps(try importGraph(convModel(shareInput: true))).contains("QLinearConv"))
    }

    func testReluBeforeTheQuantizeLinearJoinsOnlyWhenTheRangeAlreadyClips() throws {
        // Zero point 0 of uint8: quantizing clips at 0 as Relu does; the group fuses, Relu goes.
        let redundant = try importGraph(convModel(relu: true, outputZeroPoint: 0))
        XCTAssertTrue(sourceOps(redundant).contains("QLinearConv"))
        XCTAssertFalse(sourceOps(redundant).contains("Relu"))
        // Zero point 131: negative values survive quantization, so Relu matters; no fusion.
        let needed = try importGraph(convModel(relu: true, outputZeroPoint: 131))
        XCTAssertFalse(sourceOps(needed).contains("QLinearConv"))
        XCTAssertTrue(sourceOps(needed).contains("Relu"))
    }

    /// DequantizeLinear (uint8 activations, int8 weights per column) -> MatMul with no
    /// QuantizeLinear after it: onnxruntime's MatMulIntegerToFloat, the exact integer product
    /// times a_scale * b_scale.
    func testMatMulWithoutQuantizeLinearIsTheScaledIntegerProduct() throws {
        var b = ModelBuilder(opset: 13)
        b.input("a", dims(2, 3), type: .uint8)
        b.output("y")
        let bq: [Int64] = [12, -40, 7, 63, -64, 5, 0, 33]
        b.initializer("as", Tensor(shape: [], floats: [0.013]))
        b.initializer("azp", Tensor(shape: [], ints: [120], dtype: .uint8))
        b.initializer("b", Tensor(shape: [3, 2], ints: Array(bq[0..<6]), dtype: .int8))
        b.initializer("bs", Tensor(shape: [2], floats: [0.021, 0.017]))
        b.initializer("bzp", Tensor(shape: [2], ints: [0, 0], dtype: .int8))
        b.node("DequantizeLinear", ["a", "as", "azp"], ["ad"])
        b.node("DequantizeLinear", ["b", "bs", "bzp"], ["bd"], .int("axis", 1))
        b.node("MatMul", ["ad", "bd"], ["y"])
        let g = try importGraph(b.model)
        XCTAssertTrue(sourceOps(g).contains("MatMulInteger"), "\(sourceOps(g))")
        let a: [Int64] = [3, 200, 120, 255, 0, 77]
        let y = try runGraph(g, [Tensor(shape: [2, 3], ints: a, dtype: .uint8)])[0]
        var expected: [Float] = []
        for i in 0..<2 {
            for j in 0..<2 {
                let acc = (0..<3).reduce(Int64(0)) { $0 + (a[i * 3 + $1] - 120) * bq[$1 * 2 + j] }
                expected.append(Float(acc) * (Float(0.013) * [Float(0.021), 0.017][j]))
            }
        }
        XCTAssertEqual(y.floatArray, expected)
    }

    /// Add of two uint8 tensors into uint8: onnxruntime's QLinearAdd; an int8 constant
    /// operand within [-64, 64] stays int8 and so blocks it (types must match).
    func testAddFusesOnlyWhenAllTypesMatch() throws {
        func model(constant: Bool) -> ONNXModelProto {
            var b = ModelBuilder(opset: 13)
            b.input("x", dims(4))
            b.output("y")
            b.initializer("s", Tensor(shape: [], floats: [0.02]))
            b.initializer("zu", Tensor(shape: [], ints: [128], dtype: .uint8))
            b.initializer("zi", Tensor(shape: [], ints: [0], dtype: .int8))
            b.initializer("k", Tensor(shape: [4], ints: [1, -5, 30, 64], dtype: .int8))
            b.node("QuantizeLinear", ["x", "s", "zu"], ["xq"])
            b.node("DequantizeLinear", ["xq", "s", "zu"], ["xd"])
            if constant {
                b.node("DequantizeLinear", ["k", "s", "zi"], ["kd"])
            } else {
                b.node("QuantizeLinear", ["x", "s", "zu"], ["xq2"])
                b.node("DequantizeLinear", ["xq2", "s", "zu"], ["kd"])
            }
            b.node("Add", ["xd", "kd"], ["sum"])
            b.node("QuantizeLinear", ["sum", "s", "zu"], ["yq"])
            b.node("DequantizeLinear", ["yq", "s", "zu"], ["y"])
            return b.model
        }
        XCTAssertTrue(sourceOps(try importGraph(model(constant: false))).contains("QLinearAdd"))
        XCTAssertFalse(sourceOps(try importGraph(model(constant: true))).contains("QLinearAdd"))
    }

    /// com.microsoft QLinearAdd on every pair of int8 values (65,536), with the scales and zero
    /// points of a residual add in EfficientNet-Lite0 quantized by onnxruntime (where Braid's
    /// earlier two-rounding arithmetic moved one output a step): each output must equal
    /// onnxruntime's x86 kernel formula, round_half_even(fma(A, rA, fma(B, rB, fixed))),
    /// computed here with Swift's single-rounding `addingProduct`.
    func testQLinearAddRoundsAsOnnxruntimesFusedMultiplyAdds() throws {
        let (sA, zA, sB, zB, sC, zC): (Float, Int64, Float, Int64, Float, Int64) = (0.0823589637875557, -11, 0.19098688662052155, 11, 0.2037472128868103, 11)
        var b = ModelBuilder(opset: 13)
        b.input("a", dims(256, 256), type: .int8)
        b.input("b", dims(256, 256), type: .int8)
        b.output("y", type: .int8)
        b.model.opsetImport.append(("com.microsoft", 1))
        for (name, value) in [("as", sA), ("bs", sB), ("cs", sC)] { b.initializer(name, Tensor(shape: [], floats: [value])) }
        for (name, value) in [("az", zA), ("bz", zB), ("cz", zC)] { b.initializer(name, Tensor(shape: [], ints: [value], dtype: .int8)) }
        b.node("QLinearAdd", ["a", "as", "az", "b", "bs", "bz", "cs", "cz"], ["y"], domain: "com.microsoft")
        let g = try importGraph(b.model)
        var a: [Int64] = [], bv: [Int64] = []
        for i in 0..<256 { for j in 0..<256 { a.append(Int64(i - 128)); bv.append(Int64(j - 128)) } }
        let y = try runGraph(g, [Tensor(shape: [256, 256], ints: a, dtype: .int8),
                                 Tensor(shape: [256, 256], ints: bv, dtype: .int8)])[0]
        let rA = sA / sC, rB = sB / sC
        let fixed = Float(zC) - (rA * Float(zA) + rB * Float(zB))
        var mismatches = 0, twoRoundingDiffers = 0
        let got = y.intArray
        for k in 0..<a.count {
            let inner = fixed.addingProduct(Float(bv[k]), rB)
            let value = inner.addingProduct(Float(a[k]), rA)
            let want = Int64(min(max(value.rounded(.toNearestOrEven), -128), 127))
            if got[k] != want { mismatches += 1 }
            let twice = (Float(a[k] - zA) * rA + Float(bv[k] - zB) * rB).rounded(.toNearestOrEven) + Float(zC)
            if Int64(min(max(twice, -128), 127)) != want { twoRoundingDiffers += 1 }
        }
        XCTAssertEqual(mismatches, 0, "outputs that differ from onnxruntime's kernel formula")
        // The case is one that tells the arithmetics apart.
        XCTAssertGreaterThan(twoRoundingDiffers, 0)
    }
}

