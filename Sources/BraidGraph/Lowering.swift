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
    switch node.op.family {
    case .math: return try lowerMath(node, inputs)
    case .nn: return try lowerNN(node, inputs)
    case .shape: return try lowerShape(node, inputs)
    case .indexing: return try lowerIndexing(node, inputs)
    case .reduce: return try lowerReduce(node, inputs)
    }
}

/// One node as both planners (the `Executor` and training's `TrainingPlan`) see it while
/// walking the graph in order: its inputs' facts looked up among the values planned so far,
/// its lowering, and whether it folds at plan time.
public struct PlannedNode {
    public let inputs: [PlanValue?]
    public let lowered: LoweredOp
    /// Every input is known before the run (Shape and Size read only their input's shape,
    /// which the plan knows): the node runs once while planning and its outputs are constants.
    public let foldable: Bool

    /// Looks up `node`'s inputs in `values` and lowers it. Throws naming the node when an
    /// input was not produced earlier or the lowering yields fewer outputs than the node names.
    public init(_ node: Node, values: [String: PlanValue]) throws {
        inputs = try node.inputs.map { name in
            if name.isEmpty { return nil }
            guard let v = values[name] else {
                throw GraphError(node: node.name, "input '\(name)' is not produced by any earlier node, input or initializer")
            }
            return v
        }
        lowered = try lower(node, inputs)
        guard lowered.outputs.count >= node.outputs.filter({ !$0.isEmpty }).count else {
            throw GraphError(node: node.name, "\(node.sourceOp) yields \(lowered.outputs.count) outputs, the node names \(node.outputs.count)")
        }
        switch node.op {
        case .shape, .size: foldable = true
        default: foldable = inputs.allSatisfy { $0 == nil || $0!.constant != nil }
        }
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
