import BraidGraph
import BraidTensor
import XCTest

/// Lowers `op` over `inputs` (nil = absent optional input), plans and runs it once.
/// Inputs whose index is in `runtime` are not plan-time constants.
func runShapeOp(_ op: Op, _ inputs: [Tensor?], outputs: Int = 1, runtime: Set<Int> = []) throws -> [Tensor] {
    let node = Node(name: "n", op: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "in\($0)" },
                    outputs: (0..<outputs).map { "out\($0)" }, sourceOp: "TestOp")
    let plan = inputs.enumerated().map { i, t in
        t.map { PlanValue(shape: $0.shape, dtype: $0.dtype, constant: runtime.contains(i) ? nil : $0) }
    }
    let lowered = try lower(node, plan)
    let outs = lowered.outputs.map { Tensor(zeros: $0.shape, dtype: $0.dtype) }
    let run = lowered.make(inputs, outs)
    run()
    return outs
}

func ints(_ v: [Int]) -> Tensor { Tensor(shape: [v.count], ints: v.map(Int64.init)) }
func floats(_ shape: [Int], _ v: [Float]) -> Tensor { Tensor(shape: shape, floats: v) }
/// 0, 1, 2, ... as float32 of `shape`.
func iota(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.product).map(Float.init)) }
/// 100, 101, ... as int64 of `shape` (distinct from positions, so misplaced copies show).
func iotaInts(_ shape: [Int]) -> Tensor { Tensor(shape: shape, ints: (0..<shape.product).map { Int64($0 + 100) }) }

/// Multi-index of flat position `i` in a row-major `shape`.
func unravel(_ i: Int, _ shape: [Int]) -> [Int] {
    var rem = i, idx = [Int](repeating: 0, count: shape.count)
    for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = rem % shape[d]; rem /= shape[d] }
    return idx
}

func ravel(_ idx: [Int], _ shape: [Int]) -> Int { zip(idx, shape.strides).map { $0 * $1 }.reduce(0, +) }

