import BraidGraph
import BraidKeras
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

/// keras.applications models saved by Keras 3.15.1 with `weights=None` (and one model of
/// keras.ops calls) (tools/make-import-zoo
/// keras, files in $BRAID_CACHE/import-zoo), each imported from .keras and .h5 and compared
/// with Keras's predict: the largest difference must be within 1e-4 of the output's scale.
final class KerasApplicationsZooTests: XCTestCase {
    func check(_ name: String) throws {
        try TestCache.require("import-zoo/\(name).keras", madeBy: "tools/make-import-zoo keras")
        let input = try TestCache.reference("import-zoo/\(name).in0.npy", madeBy: "tools/make-import-zoo keras")
        let expected = try TestCache.reference("import-zoo/\(name).out0.npy", madeBy: "tools/make-import-zoo keras")
        for ext in ["keras", "h5"] {
            let graph = try importKeras(path: try TestCache.require("import-zoo/\(name).\(ext)", madeBy: "tools/make-import-zoo keras"))
            let executor = Executor(graph: graph)
            executor.poisonBuffers = true
            let outputs = try executor.run([graph.feedInputs[0].name: input])
            let got = try XCTUnwrap(outputs[graph.outputs[0].name])
            let d = assertClose(got, expected, tolerance: 1e-4, floor: 0, "\(name).\(ext)")
            print("\(name).\(ext): worst difference / output scale = \(d.worst)")
        }
    }

    func testConvNeXtTiny() throws { try check("convnext_tiny") }
    func testMobileNetV3Small() throws { try check("mobilenet_v3_small") }
    /// A functional model of keras.ops calls: arithmetic with numbers on either side, mean,
    /// max and sum over axes, reshape, transpose, concatenate, clip, expand_dims, activations.
    func testKerasOperationNodes() throws { try check("keras_ops_mix") }
}
