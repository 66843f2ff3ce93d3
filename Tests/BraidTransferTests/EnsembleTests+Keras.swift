import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// An ensemble exported as Keras (`.h5` and `.keras`) carries its preprocessing, so
/// `braid run FILE --image` classifies through it as through the ONNX export.
extension EnsembleTests {
    func testKerasExportRunsOnImages() throws {
        let dir = NSTemporaryDirectory() + "braid-enskeras-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runDir = try writeRunDir(dir, members: try members(in: dir))
        var rng = SplitMix64(seed: 21)
        let rgb = EnsembleTests.random([3, 22, 15], 0, 255, &rng).floatArray.map { $0.rounded() }
        try ImageCodec.writePNG(Tensor(shape: [3, 22, 15], floats: rgb), to: dir + "/a.png")

        var answers: [String: [[String: Any]]] = [:]
        for name in ["ensemble.onnx", "ensemble.h5", "ensemble.keras"] {
            let format = name.hasSuffix("onnx") ? "onnx" : "h5"
            let e = try braid(["export", runDir, "--format", format, "--out", dir + "/" + name, "--image-size", "3x20x14"])
            XCTAssertEqual(e.status, 0, e.err)
            let r = try braid(["run", dir + "/" + name, "--image", dir + "/a.png", "--top", "3", "--json"])
            XCTAssertEqual(r.status, 0, r.err)
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
            XCTAssertEqual(obj["classes"] as? [String], EnsembleTests.classes, name)
            answers[name] = try XCTUnwrap(((obj["results"] as? [[String: Any]])?.first?["top"]) as? [[String: Any]])
        }
        let onnx = try XCTUnwrap(answers["ensemble.onnx"])
        for name in ["ensemble.h5", "ensemble.keras"] {
            let got = try XCTUnwrap(answers[name])
            XCTAssertEqual(got.compactMap { $0["class"] as? String }, onnx.compactMap { $0["class"] as? String }, name)
            for (g, o) in zip(got, onnx) {
                XCTAssertEqual(try XCTUnwrap(g["probability"] as? Double), try XCTUnwrap(o["probability"] as? Double),
                               accuracy: 1e-5, name)
            }
        }
        // Re-exporting the ONNX file as Keras keeps the metadata too.
        let again = try braid(["export", dir + "/ensemble.onnx", "--format", "h5", "--out", dir + "/again.h5"])
        XCTAssertEqual(again.status, 0, again.err)
        XCTAssertEqual(try EnsembleClassifier(path: dir + "/again.h5").info.classes, EnsembleTests.classes)
    }
}
