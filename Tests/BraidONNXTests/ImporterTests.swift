import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest

final class ImporterTests: XCTestCase {
    private func load(_ b: ModelBuilder) throws -> Graph { try importONNX(bytes: b.bytes) }

    private func node(_ g: Graph, _ sourceOp: String) throws -> Node {
        try XCTUnwrap(g.nodes.first { $0.sourceOp == sourceOp }, "no \(sourceOp) node")
    }

    /// A small CNN written with its nodes in reverse order.
    private func smallCNN() -> ModelBuilder {
        var b = ModelBuilder(opset: 13)
        b.model.docString = "tiny cnn"
        b.input("x", [.param("N"), .value(3), .value(8), .value(8)])
        b.output("prob", [.param("N"), .value(2)])
        b.initializer("w", Tensor(shape: [4, 3, 3, 3], floats: (0..<108).map { Float($0) / 100 }))
        b.initializer("b", Tensor(shape: [4], floats: [0.1, 0.2, 0.3, 0.4]))
        b.initializer("fc", Tensor(shape: [2, 4], floats: [1, 2, 3, 4, 5, 6, 7, 8]))
        b.node("Softmax", ["logits"], ["prob"], name: "softmax")
        b.node("Gemm", ["flat", "fc"], ["logits"], name: "fc", .int("transB", 1))
        b.node("Flatten", ["gap"], ["flat"], name: "flatten")
        b.node("GlobalAveragePool", ["pool"], ["gap"], name: "gap")
        b.node("MaxPool", ["relu"], ["pool"], name: "pool", .ints("kernel_shape", [2, 2]), .ints("strides", [2, 2]))
        b.node("Relu", ["conv"], ["relu"], name: "relu")
        b.node("Conv", ["x", "w", "b"], ["conv"], name: "conv", .ints("kernel_shape", [3, 3]), .ints("pads", [1, 1, 1, 1]))
        return b
    }

    func testSmallCNNImportsInTopologicalOrderWithExplicitDefaults() throws {
        let g = try load(smallCNN())
        XCTAssertEqual(g.nodes.map(\.name), ["conv", "relu", "pool", "gap", "flatten", "fc", "softmax"])
        XCTAssertEqual(g.inputs, [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)])])
        XCTAssertEqual(g.outputs.first?.shape, [.symbol("N"), .fixed(2)])
        XCTAssertEqual(g.initializers["fc"]?.floatArray, [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(g.parameterCount, 108 + 4 + 8)

        guard case .conv(let c) = try node(g, "Conv").op else { return XCTFail("Conv") }
        XCTAssertEqual(c, ConvParams(kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1))
        guard case .pool(let p) = try node(g, "MaxPool").op else { return XCTFail("MaxPool") }
        XCTAssertEqual(p, PoolParams(kind: .max, kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0],
                                     dilations: [1, 1], autoPad: .explicit, ceilMode: false, countIncludePad: false))
        guard case .gemm(let ta, let tb, let alpha, let beta) = try node(g, "Gemm").op else { return XCTFail("Gemm") }
        XCTAssertEqual([ta, tb], [false, true])
        XCTAssertEqual([alpha, beta], [1, 1])
        XCTAssertEqual(try node(g, "Gemm").inputs, ["flat", "fc", ""])
        guard case .softmax(.softmax, let axis, let coerce) = try node(g, "Softmax").op else { return XCTFail("Softmax") }
        XCTAssertEqual(axis, -1)
        XCTAssertFalse(coerce)
        guard case .flatten(let fAxis) = try node(g, "Flatten").op else { return XCTFail("Flatten") }
        XCTAssertEqual(fAxis, 1)

        XCTAssertEqual(g.metadata["format"], "onnx")
        XCTAssertEqual(g.metadata["producer_name"], "braid-tests")
        XCTAssertEqual(g.metadata["producer_version"], "1")
        XCTAssertEqual(g.metadata["ir_version"], "8")
        XCTAssertEqual(g.metadata["opset"], "13")
        XCTAssertEqual(g.metadata["doc_string"], "tiny cnn")
    }

    func testSoftmaxBeforeOpset13CoercesTo2DAtAxis1() throws {
        var b = ModelBuilder(opset: 11)
        b.input("x", dims(2, 3))
        b.output("y")
        b.node("Softmax", ["x"], ["y"])
        guard case .softmax(_, let axis, let coerce) = try load(b).nodes[0].op else { return XCTFail() }
        XCTAssertEqual(axis, 1)
        XCTAssertTrue(coerce)
    }

    func testConvKernelComesFromWeightWhenAttributeIsAbsent() throws {
        var b = ModelBuilder(opset: 11)
        b.input("x", dims(1, 2, 5, 5))
        b.output("y")
        b.initializer("w", Tensor(zeros: [6, 1, 3, 1]))
        b.node("Conv", ["x", "w"], ["y"], .int("group", 2), .string("auto_pad", "SAME_UPPER"))
        guard case .conv(let c) = try load(b).nodes[0].op else { return XCTFail() }
        XCTAssertEqual(c.kernel, [3, 1])
        XCTAssertEqual(c.group, 2)
        XCTAssertEqual(c.autoPad, .sameUpper)

        var fed = ModelBuilder(opset: 13)
        fed.input("x", dims(1, 2, 5, 5))
        fed.input("w", dims(2, 4, 2, 3))
        fed.output("y")
        fed.node("ConvTranspose", ["x", "w"], ["y"])
        guard case .convTranspose(let t) = try load(fed).nodes[0].op else { return XCTFail() }
        XCTAssertEqual(t.conv.kernel, [2, 3])
        XCTAssertEqual(t.outputPadding, [0, 0])

        var unknown = ModelBuilder(opset: 13)
        unknown.input("x", dims(1, 2, 5, 5))
        unknown.input("w", [.param("M"), .value(2), .value(3), .value(3)])
        unknown.output("y")
        unknown.node("Conv", ["x", "w"], ["y"], name: "c")
        assertMentions(onnxError { try self.load(unknown) }, "node 'c'", "kernel_shape")
    }

    func testClip6BoundsBecomeConstantInputs() throws {
        var b = ModelBuilder(opset: 6)
        b.input("x", dims(4))
        b.output("y")
        b.output("z")
        b.node("Clip", ["x"], ["y"], name: "both", .float("min", 0), .float("max", 6))
        b.node("Clip", ["x"], ["z"], name: "upper", .float("max", 1))
        let g = try load(b)
        let both = g.nodes[0], upper = g.nodes[1]
        XCTAssertEqual(both.inputs.count, 3)
        XCTAssertEqual(g.initializers[both.inputs[1]]?.floatArray, [0])
        XCTAssertEqual(g.initializers[both.inputs[2]]?.floatArray, [6])
        XCTAssertEqual(upper.inputs[1], "")
        XCTAssertEqual(g.initializers[upper.inputs[2]]?.floatArray, [1])
        XCTAssertEqual(g.initializers[upper.inputs[2]]?.shape, [])
    }

    func testAttributeOperandsOfOldOpsetsBecomeInputs() throws {
        var b = ModelBuilder(opset: 9)
        b.input("x", dims(2, 3, 4))
        for o in ["s", "u", "p", "q0", "q1", "m", "up"] { b.output(o) }
        b.node("Slice", ["x"], ["s"], name: "slice", .ints("starts", [0, 1]), .ints("ends", [1, Int64.max]), .ints("axes", [0, 2]))
        b.node("Unsqueeze", ["x"], ["u"], name: "unsq", .ints("axes", [0]))
        b.node("Pad", ["x"], ["p"], name: "pad", .ints("pads", [0, 0, 1, 0, 0, 1]), .string("mode", "reflect"))
        b.node("Split", ["x"], ["q0", "q1"], name: "split", .int("axis", 2), .ints("split", [1, 3]))
        b.node("ReduceMean", ["x"], ["m"], name: "mean", .ints("axes", [1, 2]), .int("keepdims", 0))
        b.node("Upsample", ["x", "scales"], ["up"], name: "up")
        b.initializer("scales", Tensor(shape: [3], floats: [1, 2, 2]))
        let g = try load(b)
        func const(_ node: String, _ i: Int) -> [Int64]? {
            g.nodes.first { $0.name == node }.flatMap { g.initializers[$0.inputs[i]]?.intArray }
        }
        XCTAssertEqual(const("slice", 1), [0, 1])
        XCTAssertEqual(const("slice", 2), [1, Int64.max])
        XCTAssertEqual(const("slice", 3), [0, 2])
        XCTAssertEqual(const("unsq", 1), [0])
        XCTAssertEqual(const("pad", 1), [0, 0, 1, 0, 0, 1])
        XCTAssertEqual(const("split", 1), [1, 3])
        XCTAssertEqual(const("mean", 1), [1, 2])
        let pad = try XCTUnwrap(g.nodes.first { $0.name == "pad" })
        XCTAssertEqual(g.initializers[pad.inputs[2]]?.floatArray, [0])
        guard case .pad(let mode) = pad.op else { return XCTFail() }
        XCTAssertEqual(mode, .reflect)
        guard case .split(let axis, let count) = try node(g, "Split").op else { return XCTFail() }
        XCTAssertEqual([axis, count], [2, 2])
        guard case .reduce(.mean, let axes, let keep, let noop) = try node(g, "ReduceMean").op else { return XCTFail() }
        XCTAssertNil(axes)
        XCTAssertFalse(keep)
        XCTAssertFalse(noop)
        let up = try node(g, "Upsample")
        XCTAssertEqual(up.inputs, ["x", "", "scales", ""])
        guard case .resize(let r) = up.op else { return XCTFail() }
        XCTAssertEqual(r, ResizeParams(mode: .nearest, coordinate: .asymmetric, nearest: .floor))

        var old = ModelBuilder(opset: 1)
        old.input("x", dims(2, 3))
        old.output("r")
        old.node("Reshape", ["x"], ["r"], .ints("shape", [3, 2]))
        let og = try load(old)
        XCTAssertEqual(og.initializers[og.nodes[0].inputs[1]]?.intArray, [3, 2])
    }

    func testInputFormsOfNewerOpsets() throws {
        var b = ModelBuilder(opset: 18)
        b.input("x", dims(6, 4))
        b.input("axes", dims(1), type: .int64)
        for o in ["a", "b", "c", "s"] { b.output(o) }
        b.node("Split", ["x"], ["a", "b", "c"], .int("num_outputs", 3))
        b.node("ReduceSum", ["x", "axes"], ["s"], .int("noop_with_empty_axes", 1))
        let g = try load(b)
        guard case .split(0, 3) = g.nodes[0].op else { return XCTFail() }
        XCTAssertEqual(g.nodes[0].inputs, ["x", ""])
        guard case .reduce(.sum, nil, true, true) = g.nodes[1].op else { return XCTFail() }
        XCTAssertEqual(g.nodes[1].inputs, ["x", "axes"])
    }

    func testResize13ResolvesEveryAttribute() throws {
        var b = ModelBuilder(opset: 13)
        b.input("x", dims(1, 1, 2, 2))
        b.initializer("scales", Tensor(shape: [4], floats: [1, 1, 2, 2]))
        b.output("y")
        b.node("Resize", ["x", "", "scales"], ["y"], .string("mode", "linear"),
               .string("coordinate_transformation_mode", "align_corners"))
        guard case .resize(let r) = try load(b).nodes[0].op else { return XCTFail() }
        XCTAssertEqual(r, ResizeParams(mode: .linear, coordinate: .alignCorners, nearest: .roundPreferFloor,
                                       cubicCoefficient: -0.75, excludeOutside: false, extrapolationValue: 0))
    }

    func testConstantVariantsBecomeConstantOps() throws {
        var b = ModelBuilder(opset: 13)
        for o in ["t", "f", "fs", "i", "is"] { b.output(o) }
        b.node("Constant", [], ["t"], .tensor("value", ONNXTensorProto(Tensor(shape: [2], floats: [1, 2]), name: "")))
        b.node("Constant", [], ["f"], .float("value_float", 2.5))
        b.node("Constant", [], ["fs"], .floats("value_floats", [1, -1]))
        b.node("Constant", [], ["i"], .int("value_int", -3))
        b.node("Constant", [], ["is"], .ints("value_ints", [4, 5, 6]))
        let g = try load(b)
        let values: [(shape: [Int], values: [Double])] = g.nodes.map {
            guard case .constant(let t) = $0.op else { return ([-1], []) }
            return (t.shape, t.doubleArray)
        }
        XCTAssertEqual(values.map(\.shape), [[2], [], [2], [], [3]])
        XCTAssertEqual(values.map(\.values), [[1, 2], [2.5], [1, -1], [-3], [4, 5, 6]])
        XCTAssertTrue(g.nodes.allSatisfy { $0.inputs.isEmpty })

        let hoisted = try ONNXImporter(constantsAsInitializers: true).importModel(data: Data(b.bytes))
        XCTAssertEqual(hoisted.initializers["fs"]?.floatArray, [1, -1])
        XCTAssertEqual(hoisted.nodes.count, 2)  // the int constants stay nodes
    }

    func testBatchNormExtraOutputsAllowedOnlyWhenUnused() throws {
        func model(useMean: Bool) -> ModelBuilder {
            var b = ModelBuilder(opset: 9)
            b.input("x", dims(1, 2, 2, 2))
            for n in ["s", "bias", "m", "v"] { b.initializer(n, Tensor(shape: [2], floats: [1, 1])) }
            b.output("y")
            if useMean { b.output("rm") }
            b.node("BatchNormalization", ["x", "s", "bias", "m", "v"], ["y", "rm", "rv"], name: "bn",
                   .float("epsilon", 1e-3))
            return b
        }
        let g = try load(model(useMean: false))
        guard case .batchNorm(let eps) = g.nodes[0].op else { return XCTFail() }
        XCTAssertEqual(eps, 1e-3)
        XCTAssertEqual(g.nodes[0].outputs, ["y"])
        assertMentions(onnxError { try self.load(model(useMean: true)) }, "node 'bn'", "rm", "used")
    }

    func testIsInfWithOneSignIsComposed() throws {
        var b = ModelBuilder(opset: 13)
        b.input("x", dims(3))
        b.output("y", type: .bool)
        b.node("IsInf", ["x"], ["y"], name: "inf", .int("detect_negative", 0))
        let g = try load(b)
        XCTAssertEqual(g.nodes.count, 3)
        guard case .binary(.greater) = g.nodes[1].op, case .binary(.and) = g.nodes[2].op else { return XCTFail() }
        XCTAssertEqual(g.nodes[2].outputs, ["y"])
    }

    func testNodeWithoutNameGetsOne() throws {
        var b = ModelBuilder(opset: 13)
        b.input("x", dims(1))
        b.output("y")
        b.model.graph.nodes.append(ONNXNodeProto(opType: "Relu", inputs: ["x"], outputs: ["y"]))
        XCTAssertEqual(try load(b).nodes[0].name, "Relu_0")
    }
}
