import BraidGraph
import BraidTensor

// ONNX ops that Braid translates into several IR primitives (the IR keeps no foreign
// composite): CastLike, Swish, Einsum.

let compositeOps: OpTable = {
    var t: OpTable = [:]
    t["Einsum"] = [v(12, translateEinsum)]
    return t
}()
