import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

final class GradientShapeTests: XCTestCase {
    typealias Check = ElementwiseGradientCheck

    private func ints(_ v: [Int64]) -> Tensor { Tensor(shape: [v.count], ints: v) }

    /// Checks `op` on a trainable `x` of `shape`, with extra constant operands named
    /// `c1`, `c2`, ... in input order ("" for an absent optional input).
    private func check(_ op: Op, _ shape: [Int], _ operands: [Tensor?] = [], seed: UInt64 = 1,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        var names = ["x"], constants: [String: Tensor] = [:]
        for (i, t) in operands.enumerated() {
            if let t { names.append("c\(i + 1)"); constants["c\(i + 1)"] = t } else { names.append("") }
        }
        try Check.run([Check.node(op, names)], trainable: ["x": Check.uniform(shape, -1, 1, seed: seed)],
                      constants: constants, file: file, line: line)
    }

    func testContiguousReshapes() throws {
        try check(.reshape(allowZero: false), [2, 3, 4], [ints([4, -1])])
        try check(.flatten(axis: 2), [2, 3, 2, 2])
        try check(.squeeze, [2, 1, 3], [ints([1])])
        try check(.unsqueeze, [2, 3], [ints([0, 3])])
        try check(.identity, [5])
    }

    func testTransposeAndBlockPermutations() throws {
        try check(.transpose(perm: [2, 0, 1]), [2, 3, 4])
        try check(.transpose(perm: nil), [3, 5])
        try check(.depthToSpace(blockSize: 2, columnRowDepth: false), [1, 8, 2, 3])
        try check(.depthToSpace(blockSize: 2, columnRowDepth: true), [2, 4, 2, 2])
        try check(.spaceToDepth(blockSize: 2), [1, 2, 4, 6])
    }

    func testConcatSplitsTheGradient() throws {
        let nodes = [Check.node(.concat(axis: 1), ["a", "k", "b"])]
        let plan = try Check.run(nodes, trainable: ["a": Check.uniform([2, 2, 3], -1, 1, seed: 1),
                                                    "b": Check.uniform([2, 3, 3], -1, 1, seed: 2)],
                                 constants: ["k": Check.uniform([2, 1, 3], -1, 1, seed: 3)])
        XCTAssertNil(plan.grads["k"])
        try Check.run([Check.node(.concat(axis: -1), ["a", "b"])],
                      trainable: ["a": Check.uniform([3, 1], -1, 1, seed: 4), "b": Check.uniform([3, 2], -1, 1, seed: 5)])
    }

    func testSplitConcatenatesTheGradients() throws {
        // Split into uneven parts, then join them in another order so one output holds all.
        let nodes = [
            Node(name: "s", op: .split(axis: 1, count: 3), inputs: ["x", "sizes"], outputs: ["p0", "p1", "p2"], sourceOp: "Split"),
            Node(name: "c", op: .concat(axis: 0), inputs: ["p2", "p0"], outputs: ["y"], sourceOp: "Concat"),
        ]
        // p1 is unused: its slice of x must get a zero gradient.
        let plan = try Check.run(nodes, trainable: ["x": Check.uniform([2, 6], -1, 1, seed: 6)],
                                 constants: ["sizes": ints([2, 2, 2])])
        let g = plan.grads["x"]!
        XCTAssertEqual([g.floats[2], g.floats[3], g.floats[8], g.floats[9]], [0, 0, 0, 0])
        let even = [
            Node(name: "s", op: .split(axis: 0, count: 2), inputs: ["x"], outputs: ["p0", "p1"], sourceOp: "Split"),
            Node(name: "m", op: .binary(.mul), inputs: ["p0", "p1"], outputs: ["y"], sourceOp: "Mul"),
        ]
        try Check.run(even, trainable: ["x": Check.uniform([4, 3], -1, 1, seed: 7)])
    }

    func testSliceScatterAddsWithSteps() throws {
        try check(.slice, [4, 6], [ints([1, 0]), ints([4, 6]), ints([0, 1]), ints([1, 2])])
        try check(.slice, [5, 3], [ints([-1]), ints([-6]), ints([0]), ints([-2])])
        try check(.slice, [2, 3, 4], [ints([1]), ints([100]), ints([-1])])
    }

    func testGatherWithRepeatedIndices() throws {
        try check(.gather(axis: 1), [2, 4, 3], [Tensor(shape: [2, 2], ints: [0, 2, -4, 3])])
        try check(.gather(axis: 0), [3, 2], [Tensor(shape: [4], ints: [2, 2, 1, 2])])
        try check(.gather(axis: 0), [5], [Tensor(shape: [], ints: [3])])
        try check(.gatherElements(axis: 1), [2, 3], [Tensor(shape: [2, 2], ints: [0, 0, 2, -3])])
    }

    func testExpandAndTileSumBack() throws {
        try check(.expand, [3, 1], [ints([2, 3, 4])])
        try check(.expand, [1, 4], [ints([3, 1])])
        try check(.tile, [2, 3], [ints([2, 3])])
        try check(.tile, [2, 1, 3], [ints([1, 4, 1])])
    }

    func testPadModes() throws {
        let pads = ints([0, 2, 1, 0, 1, 3])
        try check(.pad(mode: .constant), [2, 3, 4], [pads, Tensor(shape: [], floats: [0.5])])
        try check(.pad(mode: .reflect), [2, 3, 4], [pads])
        try check(.pad(mode: .edge), [2, 3, 4], [pads])
        try check(.pad(mode: .wrap), [2, 3, 4], [pads])
        // Negative pads crop; axes select the padded dims.
        try check(.pad(mode: .constant), [3, 5], [ints([-1, 2, 0, -2])])
        try check(.pad(mode: .reflect), [2, 3, 4], [ints([2, 2]), nil, ints([-1])])
    }

    private func resize(_ mode: ResizeParams.Mode, _ coordinate: ResizeCoordinates,
                        nearest: ResizeRounding = .roundPreferFloor, antialias: Bool = false) -> Op {
        .resize(ResizeParams(mode: mode, coordinate: coordinate, nearest: nearest, antialias: antialias))
    }

    func testResizeNearest() throws {
        let up = Tensor(shape: [4], floats: [1, 1, 2, 1.5])
        try check(resize(.nearest, .asymmetric, nearest: .floor), [1, 2, 3, 2], [nil, up])
        try check(resize(.nearest, .halfPixel), [1, 1, 4, 4], [nil, nil, ints([1, 1, 3, 6])])
    }

    func testResizeLinearAndCubic() throws {
        let coordinates: [ResizeCoordinates] = [.halfPixel, .alignCorners, .asymmetric, .pytorchHalfPixel]
        for (k, c) in coordinates.enumerated() {
            try check(resize(.linear, c), [1, 2, 3, 4], [nil, Tensor(shape: [4], floats: [1, 1, 2, 1.5])], seed: UInt64(k))
            try check(resize(.linear, c), [1, 1, 6, 5], [nil, nil, ints([1, 1, 3, 2])], seed: UInt64(10 + k))
        }
        try check(resize(.cubic, .halfPixel), [1, 1, 4, 4], [nil, Tensor(shape: [4], floats: [1, 1, 2, 2])])
        try check(resize(.linear, .halfPixel, antialias: true), [1, 1, 8, 8], [nil, Tensor(shape: [4], floats: [1, 1, 0.5, 0.5])])
    }

    func testChainOfShapeOps() throws {
        // pad -> transpose -> slice -> reshape -> mul by a broadcast weight -> reduce sum.
        let nodes = [
            Node(name: "p", op: .pad(mode: .reflect), inputs: ["x", "pads"], outputs: ["xp"], sourceOp: "Pad"),
            Node(name: "t", op: .transpose(perm: [1, 0, 2]), inputs: ["xp"], outputs: ["xt"], sourceOp: "Transpose"),
            Node(name: "s", op: .slice, inputs: ["xt", "st", "en", "ax", "sp"], outputs: ["xs"], sourceOp: "Slice"),
            Node(name: "r", op: .reshape(allowZero: false), inputs: ["xs", "shape"], outputs: ["xr"], sourceOp: "Reshape"),
            Node(name: "m", op: .binary(.mul), inputs: ["xr", "w"], outputs: ["xm"], sourceOp: "Mul"),
            Node(name: "q", op: .reduce(.sum, axes: [0], keepDims: false, noopWithEmptyAxes: false),
                 inputs: ["xm"], outputs: ["y"], sourceOp: "ReduceSum"),
        ]
        let plan = try Check.run(nodes, trainable: [
            "x": Check.uniform([2, 3, 4], -1, 1, seed: 401),
            "w": Check.uniform([1, 6], -1, 1, seed: 402),
        ], constants: [
            "pads": ints([0, 0, 1, 0, 0, 1]), "st": ints([0]), "en": ints([6]), "ax": ints([2]), "sp": ints([2]),
            "shape": ints([-1, 6]),
        ])
        XCTAssertEqual(plan.output.shape, [6])
    }

    func testLargeTensorsTakeTheParallelPaths() throws {
        let shape = [2, 16, 64, 64]
        let x = { (seed: UInt64) in Check.uniform(shape, -1, 1, seed: seed) }
        try Check.run([Check.node(.transpose(perm: [0, 2, 3, 1]), ["x"])], trainable: ["x": x(601)],
                      tolerance: 1e-2, samples: 16)
        try Check.run([Check.node(.concat(axis: 1), ["a", "b"])], trainable: ["a": x(602), "b": x(603)],
                      tolerance: 1e-2, samples: 16)
        try Check.run([Check.node(.gather(axis: 1), ["x", "i"])], trainable: ["x": x(604)],
                      constants: ["i": Tensor(shape: [3], ints: [5, 5, 0])], tolerance: 1e-2, samples: 16)
        let op = Op.resize(ResizeParams(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor))
        try Check.run([Check.node(op, ["x", "", "s"])], trainable: ["x": x(605)],
                      constants: ["s": Tensor(shape: [4], floats: [1, 1, 2, 2])], tolerance: 1e-2, samples: 16)
    }
}
