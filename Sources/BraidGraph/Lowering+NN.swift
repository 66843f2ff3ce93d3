import BraidTensor

// Placeholder until the NN family lands.
func lowerNN(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    throw GraphError(node: node.name, "op \(node.sourceOp) not yet supported")
}
