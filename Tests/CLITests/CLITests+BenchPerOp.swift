import Foundation
import XCTest

/// `braid bench --per-op`: every convolution shape that is not depthwise is set beside a bare
/// sgemm of its GEMM shape.
extension CLITests {
    func testBenchPerOpComparesConvolutionsWithSGEMM() throws {
        let r = try braid(["bench", ppocr, "--shape", "2x3x48x192", "--runs", "2", "--warmup", "1", "--per-op"])
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n").map(String.init)
        // ppocr_cls opens with a 3x3 stride-2 convolution of 3 channels into 8 over 48x192:
        // M = 8, N = 2 images x 24 x 96 output pixels, K = 3 x 3 x 3.
        let first = lines.first { $0.contains("3x3/s2 3->8 48x192->24x96") }
        XCTAssertNotNil(first, r.out)
        XCTAssertTrue(first?.contains("8x4608x27") ?? false, first ?? "")
        let sgemmRows = lines.filter { $0.contains(" GFLOP/s  best ") && $0.contains("% of sgemm)") }
        XCTAssertGreaterThan(sgemmRows.count, 3, r.out)
        // Depthwise rows are rated against memory, never against sgemm.
        for line in lines where line.contains(" dw3x3/") || line.contains(" dw5x5/") {
            XCTAssertFalse(line.contains("sgemm"), line)
            XCTAssertTrue(line.contains("of copy)"), line)
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("convolutions vs sgemm: ") && $0.contains("shapes below 80%") }, r.out)
    }
}
