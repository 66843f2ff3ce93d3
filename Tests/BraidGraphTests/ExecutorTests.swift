import XCTest
import BraidTensor
@testable import BraidGraph

final class ExecutorTests: XCTestCase {
    /// x [N, 2, 3] -> Shape -> Gather(0) -> Concat with [-1] -> Reshape(x) -> Transpose.
    /// The shape chain depends only on x's shape, so planning folds it for each batch size.
    func shapeChainGraph() -> Graph {
        let nodes = [
            Node(name: "shape", op: .shape(start: 0, end: nil), inputs: ["x"], outputs: ["s"], sourceOp: "Shape"),
            Node(name: "batch", op: .gather(axis: 0), inputs: ["s", "zero"], outputs: ["n"], sourceOp: "Gather"),
            Node(name: "unsq", op: .unsqueeze, inputs: ["n", "axes0"], outputs: ["n1"], sourceOp: "Unsqueeze"),
            Node(name: "cat", op: .concat(axis: 0), inputs: ["n1", "minus1"], outputs: ["target"], sourceOp: "Concat"),
            Node(name: "flat", op: .reshape(allowZero: false), inputs: ["x", "target"], outputs: ["f"], sourceOp: "Reshape"),
            Node(name: "t", op: .transpose(perm: [1, 0]), inputs: ["f"], outputs: ["y"], sourceOp: "Transpose"),
            Node(name: "unused", op: .transpose(perm: nil), inputs: ["f"], outputs: ["dead"], sourceOp: "Transpose"),
        ]
        return Graph(name: "chain",
                     inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(2), .fixed(3)])],
                     outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                     initializers: [
                        "zero": Tensor(shape: [], ints: [0]),
                        "axes0": Tensor(shape: [1], ints: [0]),
                        "minus1": Tensor(shape: [1], ints: [-1]),
                     ],
                     nodes: nodes)
    }

    func testPlansPerShapeAndFoldsShapeChains() throws {
        let g = shapeChainGraph()
        let exec = Executor(graph: g)
        exec.poisonBuffers = true
        for n in [1, 3] {
            let x = Tensor(shape: [n, 2, 3], floats: (0..<(n * 6)).map(Float.init))
            let y = try XCTUnwrap(exec.run(["x": x])["y"])
            XCTAssertEqual(y.shape, [6, n])
            for i in 0..<n { for j in 0..<6 { XCTAssertEqual(y.floats[j * n + i], Float(i * 6 + j)) } }
            let plan = try exec.plan(for: ["x": ([n, 2, 3], .float32)])
            XCTAssertEqual(plan.steps.map(\.node), ["flat", "t", "unused"], "shape work is done at plan time")
        }
        XCTAssertEqual(exec.symbolicOutputShapes()?["y"], [.fixed(6), .symbol("N")])
    }

    func testSecondRunReusesPlan() throws {
        let exec = Executor(graph: shapeChainGraph())
        let a = try exec.plan(for: ["x": ([2, 2, 3], .float32)])
        let b = try exec.plan(for: ["x": ([2, 2, 3], .float32)])
        XCTAssertTrue(a === b)
    }

    func testInputErrorsNameTheInput() {
        let exec = Executor(graph: shapeChainGraph())
        let cases: [([String: Tensor], String)] = [
            (["z": Tensor(zeros: [1, 2, 3])], "unknown input 'z'"),
            (["x": Tensor(zeros: [1, 2, 4])], "input 'x': expected shape float32 [N, 2, 3], got [1, 2, 4]"),
            (["x": Tensor(zeros: [1, 2, 3], dtype: .int64)], "input 'x': expected float32, got int64"),
            ([:], "missing input 'x'"),
        ]
        for (feeds, message) in cases {
            XCTAssertThrowsError(try exec.run(feeds)) { error in
                XCTAssertTrue(String(describing: error).contains(message), "\(error)")
            }
        }
    }

    func testDanglingInputIsReported() {
        var g = shapeChainGraph()
        g.nodes[5].inputs = ["nowhere"]
        XCTAssertThrowsError(try Executor(graph: g).run(["x": Tensor(zeros: [1, 2, 3])])) { error in
            XCTAssertTrue(String(describing: error).contains("node 't': input 'nowhere'"), "\(error)")
        }
    }

    func testBuffersAreReusedAfterLastUse() throws {
        // A chain of 6 transposes needs two live buffers at a time, not six.
        var nodes: [Node] = []
        var prev = "x"
        for i in 0..<6 {
            nodes.append(Node(name: "t\(i)", op: .transpose(perm: [1, 0]), inputs: [prev], outputs: ["v\(i)"], sourceOp: "Transpose"))
            prev = "v\(i)"
        }
        let g = Graph(name: "chain", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
                      outputs: [ValueDecl(name: prev, dtype: .float32, shape: nil)], initializers: [:], nodes: nodes)
        let plan = try Executor(graph: g).plan(for: ["x": ([64, 64], .float32)])
        XCTAssertLessThanOrEqual(plan.plannedBytes, 3 * 64 * 64 * 4)
        let x = Tensor(shape: [64, 64], floats: (0..<4096).map(Float.init))
        let y = try XCTUnwrap(Executor(graph: g).run(["x": x])[prev])
        XCTAssertEqual(y.floatArray, x.floatArray, "an even number of transposes is the identity")
    }

    func testDeadCodeAndConstantFolding() throws {
        let folded = try Passes.foldConstants(shapeChainGraph())
        XCTAssertEqual(folded.nodes.map(\.name), ["shape", "batch", "unsq", "cat", "flat", "t"],
                       "the dead transpose goes; shape work on a fed input stays")
        let g = Graph(name: "c", inputs: [], outputs: [ValueDecl(name: "y", dtype: .int64, shape: nil)],
                      initializers: ["a": Tensor(shape: [2, 1], ints: [1, 2])],
                      nodes: [Node(name: "t", op: .transpose(perm: nil), inputs: ["a"], outputs: ["y"], sourceOp: "Transpose")])
        let f = try Passes.foldConstants(g)
        XCTAssertTrue(f.nodes.isEmpty)
        XCTAssertEqual(f.initializers["y"]?.shape, [1, 2])
        XCTAssertNil(f.initializers["a"])
    }
}

