import BraidTensor

// Placeholder until the Reduce family lands.
func lowerReduce(_ node: Node, _ inputs: [PlanValue?]) throws -> LoweredOp {
    throw GraphError(node: node.name, "op \(node.sourceOp) not yet supported")
}
