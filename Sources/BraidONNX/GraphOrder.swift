import BraidTensor

/// Node indices of `g` in an order where every value is produced before it is used. Nodes
/// already in order keep their file order.
///
/// Throws `ONNXError` naming the node and value for a value produced twice, a value used
/// but never defined, a cycle, or a graph output nobody produces.
func topologicalOrder(_ g: ONNXGraphProto, initializers: [String: Tensor]) throws -> [Int] {
    var external = Set(initializers.keys)
    for i in g.inputs { external.insert(i.name) }
    var producer: [String: Int] = [:]
    func nodeName(_ i: Int) -> String { g.nodes[i].name.isEmpty ? "\(g.nodes[i].opType)_\(i)" : g.nodes[i].name }

    for (i, n) in g.nodes.enumerated() {
        for o in n.outputs where !o.isEmpty {
            if let p = producer[o] {
                throw ONNXError(subject: "node '\(nodeName(i))'", "output '\(o)' is also produced by node '\(nodeName(p))'")
            }
            if external.contains(o) {
                throw ONNXError(subject: "node '\(nodeName(i))'", "output '\(o)' redefines a graph input or initializer")
            }
            producer[o] = i
        }
    }
    for (i, n) in g.nodes.enumerated() {
        for v in n.inputs where !v.isEmpty && !external.contains(v) && producer[v] == nil {
            throw ONNXError(subject: "node '\(nodeName(i))'",
                            "input '\(v)' is not a graph input, an initializer, or any node's output")
        }
    }
    for o in g.outputs where !external.contains(o.name) && producer[o.name] == nil {
        throw ONNXError(subject: "graph output '\(o.name)'", "no node produces it")
    }

    // Iterative depth-first search over producers; state 1 = on the stack, 2 = placed.
    var state = [UInt8](repeating: 0, count: g.nodes.count)
    var order: [Int] = []
    order.reserveCapacity(g.nodes.count)
    var stack: [(node: Int, next: Int)] = []
    for root in g.nodes.indices where state[root] == 0 {
        state[root] = 1
        stack.append((root, 0))
        while let top = stack.last {
            let inputs = g.nodes[top.node].inputs
            if top.next == inputs.count {
                stack.removeLast()
                state[top.node] = 2
                order.append(top.node)
                continue
            }
            stack[stack.count - 1].next += 1
            let v = inputs[top.next]
            guard !v.isEmpty, !external.contains(v), let p = producer[v] else { continue }
            if state[p] == 1 {
                throw ONNXError(subject: "node '\(nodeName(top.node))'",
                                "input '\(v)' depends on the node's own output (cycle through node '\(nodeName(p))')")
            }
            if state[p] == 0 {
                state[p] = 1
                stack.append((p, 0))
            }
        }
    }
    return order
}
