import BraidTensor

/// What the planner knows of a value before the run: its shape and type, and its elements
/// when they do not depend on the data fed at run time (initializers, constants, values
/// computed from input shapes).
public struct PlanValue: Sendable {
    public var shape: [Int]
    public var dtype: DType
    public var constant: Tensor?

    public init(shape: [Int], dtype: DType, constant: Tensor? = nil) {
        self.shape = shape; self.dtype = dtype; self.constant = constant
    }
}

/// A node compiled for fixed input shapes.
///
/// `outputs` states each output's shape and type. `make` is called once per plan with the
/// planned tensors (absent optional inputs are nil) and returns the closure the executor calls
/// on every run; that closure must not allocate. Work that depends only on shapes (index
/// tables, packed weights, scratch buffers) belongs in `make`, outside the closure.
public struct LoweredOp {
    public var outputs: [(shape: [Int], dtype: DType)]
    public var make: (_ inputs: [Tensor?], _ outputs: [Tensor]) -> () -> Void

    public init(outputs: [(shape: [Int], dtype: DType)],
                make: @escaping (_ inputs: [Tensor?], _ outputs: [Tensor]) -> () -> Void) {
        self.outputs = outputs; self.make = make
    }
}

/// Compiles one node for the given input facts. Inputs absent from the node are nil.
/// Throws `GraphError` naming the node when shapes, types or plan-time operands are wrong.
public func lower(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    switch node.op {
    case .unary, .binary, .variadic, .select, .clip, .prelu, .cast, .castLike, .reinterpretBits:
        return try lowerMath(node, inputs)
    case .conv, .convTranspose, .gemm, .matMul, .batchNorm, .channelChain, .instanceNorm, .layerNorm,
         .pool, .globalPool, .lrn, .softmax, .dropout, .batchNormTraining, .dropoutTraining:
        return try lowerNN(node, inputs)
    case .reshape, .flatten, .transpose, .concat, .split, .slice, .gather, .gatherElements,
         .shape, .size, .constantOfShape, .unsqueeze, .squeeze, .expand, .tile, .pad,
         .resize, .range, .depthToSpace, .spaceToDepth, .identity, .constant:
        return try lowerShape(node, inputs)
    case .gatherND, .scatterND, .scatterElements, .cumSum, .cumProd, .topK, .oneHot, .triangle, .gridSample, .compress, .unique, .recurrent, .dft, .col2im, .nonMaxSuppression, .linearAttention, .determinant, .maxUnpool:
        return try lowerIndexing(node, inputs)
    case .reduce, .argExtreme:
        return try lowerReduce(node, inputs)
    }
}

extension Array where Element == PlanValue? {
    /// The input at `i`, or an error naming the node when it is absent.
    public func required(_ i: Int, _ node: Node) throws -> PlanValue {
        guard i < count, let v = self[i] else {
            throw GraphError(node: node.name, "\(node.sourceOp) needs input \(i)")
        }
        return v
    }

    /// The plan-time elements of input `i` as Int64s, or an error when they are only known
    /// at run time.
    public func constantInts(_ i: Int, _ node: Node) throws -> [Int64]? {
        guard i < count, let v = self[i] else { return nil }
        guard let t = v.constant else {
            throw GraphError(node: node.name,
                             "\(node.sourceOp) input \(i) ('\(node.inputs[i])') must be known before the run (a constant or computed from shapes)")
        }
        return (0..<t.count).map { t.int(at: $0) }
    }
}
