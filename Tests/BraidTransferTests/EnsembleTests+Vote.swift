import BraidGraph
import BraidONNX
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer
import BraidTestSupport

/// The softmax vote (`--vote softmax`) in the exported graph: probabilities are the mean of
/// the members' softmaxes, logits their log; onnxruntime agrees.
extension EnsembleTests {
    func testSoftmaxVoteAveragesMemberProbabilities() throws {
        let dir = try tempDir()
        let ms = try members(in: dir)
        var rng = SplitMix64(seed: 17)
        let image = EnsembleImage(channels: 3, height: 20, width: 14)
        let images = (0..<3).map { _ in Self.random([3, 20, 14], 0, 255, &rng) }
        let g = try ensembleGraph(members: ms.map(EnsembleMember.init), classes: Self.classes, image: image,
                                  vote: .meanOfProbabilities)
        XCTAssertEqual(g.outputs.map(\.name), ["logits", "probabilities", "gray", "rgb"])
        let out = try Executor(graph: g).run(["image": batch(images)])
        let ref = try reference(ms, images)
        var wantP: [Float] = []
        for perImage in ref.each {
            var mean = [Float](repeating: 0, count: 3)
            for z in perImage {
                let e = z.map { exp($0 - z.max()!) }
                for c in 0..<3 { mean[c] += e[c] / e.reduce(0, +) / Float(perImage.count) }
            }
            wantP += mean
        }
        assertClose(try XCTUnwrap(out["probabilities"]).floatArray, wantP, tolerance: 1e-5, "mean of member probabilities")
        assertClose(try XCTUnwrap(out["logits"]).floatArray, wantP.map { log($0) }, tolerance: 1e-4, "log of the mean")

        let info = EnsembleInfo(classes: Self.classes, sources: [], members: ["gray", "rgb"], depths: [0, 0], method: "amcf",
                                dataset: "d", vote: .meanOfProbabilities, image: image)
        XCTAssertEqual(EnsembleInfo(metadata: info.metadata)?.vote, .meanOfProbabilities)

        let path = dir + "/soft.onnx"
        try exportONNX(try Passes.optimizeForInference(g), to: path, metadata: info.metadata)
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("braid").path
        let check = try run("/usr/bin/env", ["python3", EnsembleTests.repo.path + "/tools/check-ensemble-export", path, "--braid", exe])
        XCTAssertEqual(check.status, 0, check.out + check.err)
    }
}
