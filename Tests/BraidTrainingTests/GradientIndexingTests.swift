import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

/// Finite-difference checks of the indexing family's backward rules (Backward+Indexing).
final class GradientIndexingTests: XCTestCase {
    typealias Check = ElementwiseGradientCheck

    private func ints(_ shape: [Int], _ v: [Int64]) -> Tensor { Tensor(shape: shape, ints: v) }

    func testGatherNDAddsEachSliceBack() throws {
        // Tuples of depth 1 and 2, one read twice (its gradient sums), one negative.
        try Check.run([Check.node(.gatherND(batchDims: 0), ["x", "i"])],
                      trainable: ["x": Check.uniform([3, 4, 2], -1, 1, seed: 1)],
                      constants: ["i": ints([3, 2], [0, 1, 2, -1, 0, 1])])
        try Check.run([Check.node(.gatherND(batchDims: 1), ["x", "i"])],
                      trainable: ["x": Check.uniform([2, 3, 4], -1, 1, seed: 2)],
                      constants: ["i": ints([2, 2, 1], [2, 0, 1, 1])])
    }

    func testScatterNDSplitsTheGradientBetweenDataAndUpdates() throws {
        try Check.run([Check.node(.scatterND(reduction: .replace), ["x", "i", "u"])],
                      trainable: ["x": Check.uniform([4, 3], -1, 1, seed: 3), "u": Check.uniform([2, 3], -1, 1, seed: 4)],
                      constants: ["i": ints([2, 1], [3, 1])])
    }

    func testCumSumRunsTheOppositeSum() throws {
        for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)] {
            try Check.run([Check.node(.cumSum(exclusive: exclusive, reverse: reverse), ["x", "axis"])],
                          trainable: ["x": Check.uniform([2, 5, 3], -1, 1, seed: 5)],
                          constants: ["axis": ints([], [1])])
        }
    }

    func testTriangleMasksTheGradient() throws {
        for (upper, k) in [(true, Int64(0)), (false, 1), (true, -1)] {
            try Check.run([Check.node(.triangle(upper: upper), ["x", "k"])],
                          trainable: ["x": Check.uniform([2, 3, 4], -1, 1, seed: 6)],
                          constants: ["k": ints([], [k])])
        }
    }

    /// Einsum has no rule of its own: the importer's MatMul and transposes carry it.
    func testEinsumAttentionPatternTrainsThroughPrimitives() throws {
        let nodes = [Check.node(.transpose(perm: [0, 2, 1]), ["k"], outputs: ["kt"]),
                     Check.node(.matMul, ["q", "kt"])]
        try Check.run(nodes, trainable: ["q": Check.uniform([2, 3, 4], -1, 1, seed: 7),
                                         "k": Check.uniform([2, 5, 4], -1, 1, seed: 8)])
    }

    /// Spatial-transformer sampling: the data's gradient in every mode, the grid's in linear
    /// mode, for each padding (border and reflection see points outside [-1, 1]). Linear
    /// sampling has kinks where a coordinate crosses a pixel centre; with this seed and step no
    /// difference straddles one (seed 10 put a point 5e-4 from one and failed there only).
    func testGridSampleGradients() throws {
        for padding in [GridSampleParams.Padding.zeros, .border, .reflection] {
            for align in [false, true] {
                let p = GridSampleParams(mode: .linear, padding: padding, alignCorners: align)
                try Check.run([Check.node(.gridSample(p), ["x", "g"])],
                              trainable: ["x": Check.uniform([1, 2, 3, 4], -1, 1, seed: 9),
                                          "g": Check.uniform([1, 2, 3, 2], -1.2, 1.2, seed: 14)],
                              h: 2e-4, tolerance: 2e-2)
            }
        }
        let nearest = GridSampleParams(mode: .nearest, padding: .zeros, alignCorners: false)
        try Check.run([Check.node(.gridSample(nearest), ["x", "g"])],
                      trainable: ["x": Check.uniform([1, 2, 3, 4], -1, 1, seed: 11)],
                      constants: ["g": Check.uniform([1, 2, 3, 2], -1, 1, seed: 12)])
    }
}
