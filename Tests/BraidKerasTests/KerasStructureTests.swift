import BraidGraph
@testable import BraidKeras
import BraidTensor
import XCTest

/// What the importer builds, checked without running the graph.
final class KerasStructureTests: XCTestCase {
    func testSequentialBoundaryIsKerasLayout() throws {
        let g = try importKeras(path: KerasFixtures.path("seq_mlp.h5"))
        XCTAssertEqual(g.feedInputs.map(\.name), ["features"])
        XCTAssertEqual(g.feedInputs[0].shape, [.symbol("N"), .fixed(10)])
        XCTAssertEqual(g.outputs.count, 1)
        XCTAssertEqual(g.outputs[0].shape, [.symbol("N"), .fixed(5)])
        XCTAssertEqual(g.metadata["keras_version"], "3.15.1")
        XCTAssertEqual(g.parameterCount, 10 * 16 + 16 + 16 * 5 + 5)
    }

    func testImagesEnterNHWCAndComputeNCHW() throws {
        let g = try importKeras(path: KerasFixtures.path("func_xception.keras"))
        XCTAssertEqual(g.feedInputs[0].shape, [.symbol("N"), .fixed(17), .fixed(17), .fixed(3)])
        let first = try XCTUnwrap(g.nodes.first)
        guard case .transpose(let perm) = first.op else { return XCTFail("first node is \(first.op), not a transpose") }
        XCTAssertEqual(perm, [0, 3, 1, 2])
        XCTAssertEqual(g.nodes.filter { if case .transpose = $0.op { return true }; return false }.count, 1,
                       "one transpose at the input; global pooling ends in rank 2")
        XCTAssertEqual(g.outputs[0].shape, [.symbol("N"), .fixed(4)])
    }

    func testSeparableConvBecomesDepthwiseThenPointwise() throws {
        let g = try importKeras(path: KerasFixtures.path("func_xception.h5"))
        let convs = g.nodes.compactMap { n -> ConvParams? in if case .conv(let p) = n.op { return p }; return nil }
        // 2 Conv2D + 2 SeparableConv2D (two convs each) + 1 Conv2D.
        XCTAssertEqual(convs.count, 7)
        XCTAssertEqual(convs.filter { $0.group == 8 && $0.kernel == [3, 3] }.count, 1)
        XCTAssertEqual(convs.filter { $0.group == 16 && $0.kernel == [3, 3] }.count, 1)
        XCTAssertTrue(convs.filter { $0.kernel == [3, 3] && $0.group == 1 }.allSatisfy { $0.autoPad == .sameUpper })
    }

    func testFlattenAfterConvGoesBackToNHWC() throws {
        let g = try importKeras(path: KerasFixtures.path("seq_convs.h5"))
        let flat = try XCTUnwrap(g.nodes.firstIndex { $0.sourceOp == "Flatten" })
        guard case .transpose(let perm) = g.nodes[flat - 1].op else {
            return XCTFail("Flatten is not preceded by a transpose to NHWC")
        }
        XCTAssertEqual(perm, [0, 2, 3, 1])
    }

    func testSharedLayerHasOneSetOfWeights() throws {
        let g = try importKeras(path: KerasFixtures.path("func_nested.keras"))
        let shared = g.nodes.filter { $0.name.hasPrefix("shared_dense") && $0.sourceOp == "Dense" }
        XCTAssertEqual(shared.count, 2)
        XCTAssertEqual(shared[0].inputs[1], shared[1].inputs[1], "both calls use one kernel")
        XCTAssertEqual(g.initializers.keys.filter { $0.hasPrefix("shared_dense/kernel") }.count, 1)
    }

    func testMultipleInputsKeepKerasNames() throws {
        let g = try importKeras(path: KerasFixtures.path("func_merges.h5"))
        XCTAssertEqual(g.feedInputs.map(\.name), ["a", "b", "v"])
        XCTAssertEqual(g.outputs.count, 3)
    }

    func testKeras3ContainerKeys() {
        XCTAssertEqual(Keras3Keys.snakeCase("Conv2DTranspose"), "conv2d_transpose")
        XCTAssertEqual(Keras3Keys.snakeCase("PReLU"), "p_re_lu")
        XCTAssertEqual(Keras3Keys.snakeCase("BatchNormalization"), "batch_normalization")
        XCTAssertEqual(Keras3Keys.snakeCase("SeparableConv2D"), "separable_conv2d")
        var keys = Keras3Keys()
        XCTAssertEqual(["Dense", "Conv2D", "Dense", "Dense"].map { keys.next(className: $0) },
                       ["dense", "conv2d", "dense_1", "dense_2"])
    }

    func testWeightsOnlyFileNeedsAConfig() {
        let message = errorText { try importKeras(path: KerasFixtures.path("seq_mlp.weights.h5")) }
        XCTAssertTrue(message?.contains("weights only") == true, message ?? "no error")
    }
}
