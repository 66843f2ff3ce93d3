import BraidGraph
import BraidTensor
import XCTest

/// The memory a plan will hold is known before it is allocated, and a cap below it stops
/// planning with the figure.
final class MemoryLimitTests: XCTestCase {
    /// x [N, 64] -> 6 transposes and a shape chain folded at plan time.
    func chain() -> (Graph, String) {
        var nodes: [Node] = []
        var prev = "x"
        for i in 0..<6 {
            nodes.append(Node(name: "t\(i)", op: .transpose(perm: [1, 0]), inputs: [prev], outputs: ["v\(i)"], sourceOp: "Transpose"))
            prev = "v\(i)"
        }
        nodes.append(Node(name: "add", op: .binary(.add), inputs: [prev, "w"], outputs: ["y"], sourceOp: "Add"))
        let g = Graph(name: "chain", inputs: [ValueDecl(name: "x", dtype: .float32, shape: nil)],
                      outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)],
                      initializers: ["w": Tensor(zeros: [64])], nodes: nodes)
        return (g, "y")
    }

    func testEstimateMatchesThePlanWithoutAllocating() throws {
        let (g, _) = chain()
        for n in [1, 7, 64] {
            let need = try Executor(graph: g).memoryNeeded(["x": ([n, 64], .float32)])
            let plan = try Executor(graph: g).plan(for: ["x": ([n, 64], .float32)])
            XCTAssertEqual(need.plannedBytes, plan.plannedBytes, "batch \(n)")
            XCTAssertEqual(need.weightBytes, 256)
            XCTAssertEqual(need.outputShapes["y"], [n, 64])
        }
    }

    func testCapBelowTheNeedFailsBeforePlanning() throws {
        let (g, _) = chain()
        let need = try Executor(graph: g).memoryNeeded(["x": ([64, 64], .float32)])
        let capped = Executor(graph: g)
        capped.memoryLimit = need.total - 1
        XCTAssertThrowsError(try capped.run(["x": Tensor(zeros: [64, 64])])) { error in
            let e = error as? MemoryLimitError
            XCTAssertEqual(e?.needed, need.total)
            XCTAssertTrue(String(describing: error).contains(formatBytes(need.total)), "\(error)")
        }
        capped.memoryLimit = need.total
        XCTAssertNoThrow(try capped.run(["x": Tensor(zeros: [64, 64])]))
    }

    func testByteSizes() {
        XCTAssertEqual(parseByteSize("512M"), 512 << 20)
        XCTAssertEqual(parseByteSize("2G"), 2 << 30)
        XCTAssertEqual(parseByteSize("1.5GiB"), 3 << 29)
        XCTAssertEqual(parseByteSize("300k"), 300 << 10)
        XCTAssertEqual(parseByteSize("4096"), 4096)
        XCTAssertNil(parseByteSize("lots"))
        XCTAssertNil(parseByteSize("-1G"))
        XCTAssertEqual(formatBytes(17), "17 B")
        XCTAssertEqual(formatBytes(3 << 29), "1.5 GiB")
    }
}
