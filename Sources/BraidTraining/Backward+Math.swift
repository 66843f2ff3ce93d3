import BraidGraph
import BraidTensor

// Placeholder until the Math family's backward rules land.
func backwardMath(_ node: Node, _ inputs: [PlanValue?], _ outputs: [PlanValue], needs: [Bool]) throws -> LoweredBackward {
    throw GraphError(node: node.name, "\(node.sourceOp) has no backward rule yet")
}
