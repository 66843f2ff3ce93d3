import BraidGraph
import BraidTensor

/// The backward pass of one node, compiled for fixed shapes.
///
/// `make` receives the node's forward inputs and outputs (as the forward pass left them),
/// the gradients of its outputs (nil for an output nothing downstream needs), and the
/// gradient buffers of its inputs (nil where no gradient is wanted). The closure it returns
/// *adds* each input's gradient into its buffer (`+=`): the trainer zeroes gradient buffers
/// once before the backward pass, so a value read by several nodes sums their contributions.
/// Like forward closures, it must not allocate; scratch goes in `make`.
public struct LoweredBackward {
    public var make: (_ inputs: [Tensor?], _ outputs: [Tensor], _ gradOutputs: [Tensor?],
                      _ gradInputs: [Tensor?]) -> () -> Void

    public init(make: @escaping (_ inputs: [Tensor?], _ outputs: [Tensor], _ gradOutputs: [Tensor?],
                                 _ gradInputs: [Tensor?]) -> () -> Void) {
        self.make = make
    }
}

/// Compiles the backward of `node`. `inputs` and `outputs` are the forward facts;
/// `needs[i]` says whether input i wants a gradient. Throws a `GraphError` naming the node
/// when the op has no backward rule (or not for these operands).
public func lowerBackward(_ node: Node, _ inputs: [PlanValue?], _ outputs: [PlanValue],
                          needs: [Bool]) throws -> LoweredBackward {
    switch node.op {
    case .shape, .size, .constantOfShape, .range, .argExtreme, .constant:
        throw GraphError(node: node.name, "\(node.sourceOp) has no gradient (its output does not depend smoothly on its inputs)")
    case .channelChain:
        throw GraphError(node: node.name, "\(node.sourceOp): a fused channel chain has no backward; train the graph from before Passes.optimizeForExecution")
    default: break
    }
    switch node.op.family {
    case .math: return try backwardMath(node, inputs, outputs, needs: needs)
    case .nn: return try backwardNN(node, inputs, outputs, needs: needs)
    case .shape: return try backwardShape(node, inputs, outputs, needs: needs)
    case .indexing: return try backwardIndexing(node, inputs, outputs, needs: needs)
    case .reduce: return try backwardReduce(node, inputs, outputs, needs: needs)
    }
}
