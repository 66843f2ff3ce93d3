import BraidTensor
import Foundation
import XCTest

/// `braid steps`: SGD steps on given batches, the model's own classifier kept as the head.
extension RobustnessTests {
    func stepsFiles(labels: [Int64], count: Int) throws -> (dir: String, model: String, x: String, y: String) {
        let dir = try tempDir()
        let model = dir + "/tiny.onnx"
        try writeTinyMLP(to: model)
        let x = Tensor(shape: [count, 1, 8, 8], floats: (0..<(count * 64)).map { Float($0 % 17) / 17 - 0.5 })
        try Npy.write(x, path: dir + "/x.npy")
        try Npy.write(Tensor(shape: [labels.count], ints: labels), path: dir + "/y.npy")
        return (dir, model, dir + "/x.npy", dir + "/y.npy")
    }

    func testStepsTrainAndWriteLossesAndParameters() throws {
        let f = try stepsFiles(labels: [0, 3, 9, 1, 4, 4, 2, 7], count: 8)
        let r = try braid(["steps", f.model, "--images", f.x, "--labels", f.y, "--batch", "4",
                                             "--lr", "0.1", "--out", f.dir + "/out", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let losses = try XCTUnwrap(obj["losses"] as? [Double])
        XCTAssertEqual(losses.count, 2)
        XCTAssertTrue(losses.allSatisfy { $0.isFinite && $0 > 0 }, "\(losses)")
        let record = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: f.dir + "/out/losses.json"))) as? [String: Any])
        let params = try XCTUnwrap(record["params"] as? [String: String])
        // The classifier (fc2) became the head; the hidden layer trains under its own names.
        XCTAssertEqual(Set(params.keys), ["w1", "b1", "head.weight", "head.bias"])
        let head = try Npy.read(path: f.dir + "/out/" + params["head.weight"]!)
        XCTAssertEqual(head.shape, [10, 24])
    }

    func testBadLabelsAndPartialBatchesAreRefusedWithOneLine() throws {
        let f = try stepsFiles(labels: [0, 12, 1, 2], count: 4)
        let g = try stepsFiles(labels: [0, 1, 2, 3], count: 4)
        for (args, parts) in [(["steps", f.model, "--images", f.x, "--labels", f.y, "--batch", "4"], ["tiny.onnx", "label 12", "0..<10"]),
                              (["steps", g.model, "--images", g.x, "--labels", g.y, "--batch", "3"], ["tiny.onnx", "whole batches of 3"])] {
            let r = try braid(args)
            XCTAssertNotEqual(r.status, 0, "expected failure: \(args)")
            XCTAssertLessThan(r.status, 128, "crashed: \(r.err)")
            let lines = r.err.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.err)
            for part in parts { XCTAssertTrue(r.err.contains(part), "'\(part)' missing from: \(r.err)") }
        }
    }
}
