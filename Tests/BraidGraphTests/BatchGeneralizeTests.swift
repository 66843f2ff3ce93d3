import BraidGraph
import BraidTensor
import XCTest

/// `Passes.generalizeBatch` on small graphs shaped like what PyTorch's dynamo exporter writes
/// when it traces at batch 1: each must fail at batch 3 as exported, and after the pass give
/// every sample what the exported graph gives it alone.
final class BatchGeneralizeTests: XCTestCase {
    private func node(_ name: String, _ op: Op, _ inputs: [String], _ output: String? = nil) -> Node {
        Node(name: name, op: op, inputs: inputs, outputs: [output ?? name], sourceOp: "\(op)".prefix { $0 != "(" }.capitalized)
    }

    private func values(_ shape: [Int], seed: Int) -> Tensor {
        Tensor(shape: shape, floats: (0..<shape.product).map { Float(($0 * 7 + seed * 13) % 23) / 11 - 1 })
    }

    /// Runs `g` at batch 3 as exported and with only its input declared `[N, ...]` (both must
    /// fail or give no batch of 3), generalises it, runs it at batch 3 and checks each sample's
    /// output against the exported graph run on that sample alone.
    private func assertGeneralizes(_ g: Graph, sample: [Int], file: StaticString = #filePath, line: UInt = #line) throws {
        let batch = values([3] + sample, seed: 1)
        XCTAssertThrowsError(try Executor(graph: g).run(["x": batch]), "the exported graph should fail at batch 3",
                             file: file, line: line)
        // Declaring the batch symbolic is not enough: the constants still pin it.
        var relaxed = g
        relaxed.inputs[0].shape![0] = .symbol("N")
        if let y = try? Executor(graph: relaxed).run(["x": batch])["y"] {
            XCTAssertNotEqual(y.shape.first, 3, "the graph ran at batch 3 with only its input relaxed", file: file, line: line)
        }
        let general = try Passes.generalizeBatch(g)
        XCTAssertEqual(general.inputs[0].shape?.first, .symbol("N"), file: file, line: line)
        let out = try XCTUnwrap(try Executor(graph: general).run(["x": batch])["y"], file: file, line: line)
        XCTAssertEqual(out.shape.first, 3, "\(out.shape)", file: file, line: line)
        let per = sample.product, perOut = out.count / 3
        for i in 0..<3 {
            let one = Tensor(shape: [1] + sample, floats: Array(batch.floatArray[(i * per)..<((i + 1) * per)]))
            let want = try XCTUnwrap(try Executor(graph: g).run(["x": one])["y"], file: file, line: line)
            XCTAssertEqual(want.count, perOut, file: file, line: line)
            for k in 0..<perOut where !(abs(out.floats[i * perOut + k] - want.floats[k]) <= 1e-5) {
                XCTFail("sample \(i) element \(k): \(out.floats[i * perOut + k]) vs \(want.floats[k])", file: file, line: line)
                return
            }
        }
    }

    private func graph(_ sample: [Int], _ nodes: [Node], _ initializers: [String: Tensor]) -> Graph {
        Graph(name: "g", inputs: [ValueDecl(name: "x", dtype: .float32, shape: ([1] + sample).map { .fixed($0) })],
              outputs: [ValueDecl(name: "y", dtype: .float32, shape: nil)], initializers: initializers, nodes: nodes)
    }

    /// Global pool -> Reshape to a baked [1, 4] -> MatMul: the classifier tail of a CNN.
    func testReshapeWithBakedBatch() throws {
        let g = graph([4, 3, 3], [
            node("pool", .globalPool(.average), ["x"]),
            node("view", .reshape(allowZero: false), ["pool", "target"]),
            node("fc", .matMul, ["view", "w"], "y"),
        ], ["target": ints([1, 4]), "w": values([4, 5], seed: 2)])
        try assertGeneralizes(g, sample: [4, 3, 3])
    }

    /// A ViT-like head: patches [1, 2, 4] with a class token [1, 1, 4] expanded (to a baked
    /// [1, 1, 4]) and concatenated before them, position embeddings added, the batch sliced
    /// with a baked end, token 0 taken and squeezed without axes.
    func testClassTokenExpandConcat() throws {
        let g = graph([2, 4], [
            node("cls", .expand, ["token", "cls_shape"]),
            node("cat", .concat(axis: 1), ["cls", "x"]),
            node("pos", .binary(.add), ["cat", "embedding"]),
            node("rows", .slice, ["pos", "zero", "one", "zero"]),
            node("first", .slice, ["rows", "zero", "one", "one"]),
            node("squeeze", .squeeze, ["first"]),
            node("fc", .matMul, ["squeeze", "w"], "y"),
        ], ["token": values([1, 1, 4], seed: 3), "cls_shape": ints([1, 1, 4]), "embedding": values([1, 3, 4], seed: 4),
            "zero": ints([0]), "one": ints([1]), "w": values([4, 2], seed: 5)])
        try assertGeneralizes(g, sample: [2, 4])
    }

    /// Reshape targets built by Concat: of constants alone (folded, then rewritten), and of a
    /// Shape of the input (already following the batch, left alone); plus multi-head style
    /// reshapes that fold the batch into the heads and back.
    func testConcatOfShapes() throws {
        let g = graph([2, 6], [
            node("t1", .concat(axis: 0), ["one", "twelve"]),
            node("flat", .reshape(allowZero: false), ["x", "t1"]),
            node("n", .shape(start: 0, end: 1), ["x"]),
            node("t2", .concat(axis: 0), ["n", "two", "minus"]),
            node("back", .reshape(allowZero: false), ["flat", "t2"]),
            node("heads", .reshape(allowZero: false), ["back", "by_heads"]),
            node("act", .unary(.tanh), ["heads"]),
            node("merge", .reshape(allowZero: false), ["act", "merged"], "y"),
        ], ["one": ints([1]), "twelve": ints([12]), "two": ints([2]), "minus": ints([-1]),
            "by_heads": ints([4, 3]), "merged": ints([1, 12])])
        try assertGeneralizes(g, sample: [2, 6])
    }

    /// PyTorch's multi-head attention output: tokens first, `[L, 1, E]` viewed as `[L, E]` is
    /// `[L * N, E]`, not `[L, N * E]`; the Gemm after it refuses the first guess, and the walk
    /// takes the other, then splits the batch back out.
    func testAmbiguousReshapeIsChosenAgain() throws {
        let g = graph([3, 4], [
            node("seq_first", .transpose(perm: [1, 0, 2]), ["x"]),
            node("rows", .reshape(allowZero: true), ["seq_first", "by_rows"]),
            node("proj", .gemm(transA: false, transB: true, alpha: 1, beta: 1), ["rows", "w", "bias"]),
            node("back", .reshape(allowZero: true), ["proj", "by_tokens"]),
            node("batch_first", .transpose(perm: [1, 0, 2]), ["back"], "y"),
        ], ["by_rows": ints([3, 4]), "by_tokens": ints([3, 1, 2]), "w": values([2, 4], seed: 6), "bias": values([2], seed: 7)])
        try assertGeneralizes(g, sample: [3, 4])
    }

    /// `as_strided` as the dynamo exporter writes it: the pooled `[1, 4, 1, 1]` flattened to
    /// `[4]` and gathered with indices `[1, 4, 1, 1]`; it becomes a Gather of rows.
    func testFlatGatherAlongTheBatch() throws {
        let g = graph([4, 1, 1], [
            node("flat", .reshape(allowZero: false), ["x", "minus_one"]),
            node("as_strided", .gather(axis: 0), ["flat", "indices"], "y"),
        ], ["minus_one": ints([-1]), "indices": Tensor(shape: [1, 4, 1, 1], ints: [3, 1, 2, 0])])
        try assertGeneralizes(g, sample: [4, 1, 1])
    }

    /// Upsampling to constant sizes `[1, C, 2H, 2W]` (the batch's 1 among them) resizes the
    /// spatial axes only.
    func testResizeToBakedSizes() throws {
        let params = ResizeParams(mode: .nearest, coordinate: .asymmetric, nearest: .floor)
        let g = graph([2, 3, 3], [
            node("up", .resize(params), ["x", "", "", "sizes"], "y"),
        ], ["sizes": ints([1, 2, 6, 6])])
        try assertGeneralizes(g, sample: [2, 3, 3])
    }

    /// A mean over the batch axis cannot be generalised: one error naming the node and saying
    /// how to re-export.
    func testReductionOverBatchIsNamed() throws {
        let g = graph([3], [node("batch_mean", .reduce(.mean, axes: [0], keepDims: true, noopWithEmptyAxes: false), ["x"], "y")], [:])
        XCTAssertThrowsError(try Passes.generalizeBatch(g)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("batch_mean"), text)
            XCTAssertTrue(text.contains("dynamic_shapes") && text.contains("dynamic_axes"), text)
        }
    }

    /// A Reshape that puts the batch behind another dim is refused, naming the node.
    func testReshapeMixingBatchIsNamed() throws {
        let g = graph([2, 3], [
            node("swap", .transpose(perm: [1, 0, 2]), ["x"]),
            node("mix", .reshape(allowZero: false), ["swap", "flat"], "y"),
        ], ["flat": ints([3, 2])])
        XCTAssertThrowsError(try Passes.generalizeBatch(g)) { XCTAssertTrue("\($0)".contains("node 'mix'"), "\($0)") }
    }

    /// Graphs whose batch is already symbolic come back as they were.
    func testSymbolicBatchUnchanged() throws {
        var g = graph([3], [node("id", .identity, ["x"], "y")], [:])
        g.inputs[0].shape = [.symbol("N"), .fixed(3)]
        XCTAssertTrue(g.unitBatchInputs.isEmpty)
        XCTAssertEqual(try Passes.generalizeBatch(g).nodes.count, 1)
    }
}
