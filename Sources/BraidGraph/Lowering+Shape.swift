import BraidTensor

// Placeholder until the Shape family lands.
func lowerShape(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    throw GraphError(node: node.name, "op \(node.sourceOp) not yet supported")
}
