import BraidGraph
import BraidKeras
import BraidTensor
import Foundation
import XCTest

/// keras.applications models saved by Keras 3.15.1 with `weights=None` (and one model of
/// keras.ops calls) (tools/make-import-zoo
/// keras, files in $BRAID_CACHE/import-zoo), each imported from .keras and .h5 and compared
/// with Keras's predict: the largest difference must be within 1e-4 of the output's scale.
final class KerasApplicationsZooTests: XCTestCase {
    func check(_ name: String) throws {
        let env = ProcessInfo.processInfo.environment["BRAID_CACHE"]
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = (env.map { URL(fileURLWithPath: $0) } ?? repo.appendingPathComponent(".cache")).appendingPathComponent("import-zoo")
        let inPath = dir.appendingPathComponent("\(name).in0.npy").path
        guard FileManager.default.fileExists(atPath: inPath) else {
            XCTFail("\(inPath) missing: run tools/make-import-zoo keras")
            return
        }
        let input = try Npy.read(path: inPath)
        let expected = try Npy.read(path: dir.appendingPathComponent("\(name).out0.npy").path)
        for ext in ["keras", "h5"] {
            let graph = try importKeras(path: dir.appendingPathComponent("\(name).\(ext)").path)
            let executor = Executor(graph: graph)
            executor.poisonBuffers = true
            let outputs = try executor.run([graph.feedInputs[0].name: input])
            let got = try XCTUnwrap(outputs[graph.outputs[0].name])
            XCTAssertEqual(got.shape, expected.shape, "\(name).\(ext)")
            guard got.shape == expected.shape else { continue }
            var scale = 0.0, worst = 0.0, sawNaN = false
            for k in 0..<got.count {
                let a = Double(got.floats[k]), b = Double(expected.floats[k])
                if a.isNaN || b.isNaN { sawNaN = true }
                scale = max(scale, abs(b)); worst = max(worst, abs(a - b))
            }
            let err = sawNaN ? Double.nan : worst / max(scale, 1e-30)
            print("\(name).\(ext): worst difference / output scale = \(err)")
            XCTAssertTrue(err <= 1e-4, "\(name).\(ext): worst difference is \(err) of the output's scale")
        }
    }

    func testConvNeXtTiny() throws { try check("convnext_tiny") }
    func testMobileNetV3Small() throws { try check("mobilenet_v3_small") }
    /// A functional model of keras.ops calls: arithmetic with numbers on either side, mean,
    /// max and sum over axes, reshape, transpose, concatenate, clip, expand_dims, activations.
    func testKerasOperationNodes() throws { try check("keras_ops_mix") }
}
