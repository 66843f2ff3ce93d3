import BraidTensor

// Placeholder until the Math family lands.
func lowerMath(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    throw GraphError(node: node.name, "op \(node.sourceOp) not yet supported")
}
