import BraidTensor

/// The rules of `Passes.generalizeBatch` that check operands against the batch axis and
/// rewrite the constant ones that pin it to 1.
extension BatchWalker {
    /// Int64 elements of a plan-time constant.
    func ints(_ t: Tensor) -> [Int] { (0..<t.count).map { Int(t.int(at: $0)) } }

    /// Adds an int64 initializer made for `node` and returns its name.
    mutating func addConstant(_ node: Node, _ label: String, _ values: [Int]) -> String {
        var name = "\(node.name)::batch_\(label)"
        while graph.initializers[name] != nil { name += "_" }
        graph.initializers[name] = Tensor(shape: [values.count], ints: values.map(Int64.init))
        return name
    }

    /// Elementwise ops: batched operands must agree on the (right-aligned) batch axis, and a
    /// constant operand must broadcast along it.
    func broadcast(_ node: Node, _ ins: [PlanValue?], _ facts: [BatchFact], rank: Int) throws -> BatchFact {
        var found: BatchAxis?
        for (i, f) in facts.enumerated() {
            guard case .batched(let ax) = f, let s = ins[i]?.shape else { continue }
            let aligned = ax.moved(to: rank - s.count + ax.axis)
            if let prev = found, prev != aligned { throw pinned(node, "combines values batched along different axes") }
            found = aligned
        }
        let a = found!.axis
        for (i, f) in facts.enumerated() where f == .constant {
            guard let s = ins[i]?.shape else { continue }
            let k = a - (rank - s.count)
            if k >= 0 && s[k] != 1 { throw pinned(node, "combines the batch with a constant of size \(s[k]) along it (\(s))") }
        }
        return .batched(found!)
    }

    /// MatMul: the batch may be in a broadcast batch dim, in the rows of the first operand or
    /// in the columns of the second, never in the contracted dim.
    func matMulFact(_ node: Node, _ ins: [PlanValue?], _ facts: [BatchFact], rank: Int) throws -> BatchFact {
        var found: BatchAxis?
        for i in 0..<2 {
            guard case .batched(let ax) = facts[i], let s = ins[i]?.shape else { continue }
            let r = s.count, b = ax.axis
            guard r >= 2, b != (i == 0 ? r - 1 : r - 2) else { throw pinned(node, "multiplies along the batch axis") }
            let aligned = ax.moved(to: b == r - 2 ? rank - 2 : b == r - 1 ? rank - 1 : rank - r + b)
            if let prev = found, prev != aligned { throw pinned(node, "multiplies values batched along different axes") }
            found = aligned
        }
        let a = found!.axis
        if a < rank - 2 {
            for i in 0..<2 where facts[i] == .constant {
                guard let s = ins[i]?.shape else { continue }
                let k = a - (rank - s.count)
                if k >= 0 && k < s.count - 2 && s[k] != 1 { throw pinned(node, "broadcasts a constant of \(s) against the batch") }
            }
        }
        return .batched(found!)
    }

    /// Reshape: the batch goes to an output dim `j` after dims whose product divides the
    /// rows before the batch in the input, the rest of those rows becoming `j`'s outer part.
    /// At batch 1 several dims can qualify; the walk prefers a dim of its own, then the batch
    /// as the major part, then the others in order (see `Passes.generalizeBatch`). A constant
    /// target gets -1 there and its other dims spelt out.
    mutating func reshape(_ node: inout Node, _ ins: [PlanValue?], _ facts: [BatchFact], _ ax: BatchAxis,
                          out o: [Int], allowZero: Bool) throws -> BatchFact {
        let s = ins[0]!.shape
        let before = s[..<ax.axis].reduce(ax.outer, *)
        guard !o.contains(0) else { throw pinned(node, "has an empty dim") }
        var candidates: [BatchAxis] = []
        var prefix = 1
        for j in o.indices where prefix <= before {
            if before % prefix == 0, o[j] % (before / prefix) == 0 {
                candidates.append(BatchAxis(axis: j, outer: before / prefix, per: o[j] / (before / prefix)))
            }
            prefix *= o[j]
        }
        candidates = candidates.filter(\.alone) + candidates.filter { !$0.alone && $0.outer == 1 }
            + candidates.filter { $0.outer > 1 }
        guard !candidates.isEmpty else { throw pinned(node, "mixes the batch with the dims before it (\(s) to \(o))") }
        var pick = 0
        if candidates.count > 1 {
            pick = options.count < choices.count ? choices[options.count] : 0
            options.append(candidates.count)
        }
        let to = candidates[pick]
        guard node.inputs.count > 1, facts[1] == .constant, let t = ins[1]?.constant else { return .batched(to) }
        let raw = ints(t)
        let copiesBatch = !allowZero && ax.axis < raw.count && raw[ax.axis] == 0
        let keepsCopy = copiesBatch && to == ax
        if !(raw[to.axis] == -1 || keepsCopy) || (copiesBatch && !keepsCopy) {
            var target = o
            target[to.axis] = -1
            node.inputs[1] = addConstant(node, "shape", target)
        }
        return .batched(to)
    }

    /// Gather along the batch axis of a flat value whose indices lead with the batch (PyTorch's
    /// `as_strided` exports this way): the value is viewed as `[N, per]` and gathered along
    /// axis 1 with the indices' batch dim dropped.
    mutating func gatherFlat(_ node: inout Node, _ ins: [PlanValue?], _ facts: [BatchFact], _ ax: BatchAxis) throws -> BatchFact {
        guard ins[0]!.shape.count == 1, ax.outer == 1, facts[1] == .constant, let idx = ins[1]?.constant,
              idx.shape.count >= 1, idx.shape[0] == 1,
              (0..<idx.count).allSatisfy({ idx.int(at: $0) >= 0 && idx.int(at: $0) < Int64(ax.per) }) else {
            throw pinned(node, "gathers along the batch axis")
        }
        let rows = "\(node.name)::batch_rows"
        try append(Node(name: rows, op: .reshape(allowZero: false),
                        inputs: [node.inputs[0], addConstant(node, "rows_shape", [-1, ax.per])], outputs: [rows], sourceOp: "Reshape"))
        var name = "\(node.name)::batch_indices"
        while graph.initializers[name] != nil { name += "_" }
        graph.initializers[name] = Tensor(shape: Array(idx.shape.dropFirst()), ints: idx.intArray)
        node.op = .gather(axis: 1)
        node.inputs = [rows, name]
        return .batched(BatchAxis(axis: 0))
    }

    /// Concat along another axis: a constant operand with 1 at the batch axis is expanded to
    /// the batch (read at run time from a batched operand's shape).
    mutating func concat(_ node: inout Node, _ ins: [PlanValue?], _ facts: [BatchFact], _ ax: BatchAxis,
                         batchedInput: Int) throws {
        let b = ax.axis
        for (i, f) in facts.enumerated() {
            switch f {
            case .opaque: continue
            case .batched(let other):
                guard other == ax else { throw pinned(node, "concatenates values batched differently") }
            case .constant:
                let s = ins[i]!.shape
                guard s[b] == 1, ax.alone else { throw pinned(node, "concatenates a constant of \(s) with batched values") }
                node.inputs[i] = try expandToBatch(node.inputs[i], rank: s.count, b: b, like: node.inputs[batchedInput], for: node)
            }
        }
    }

    /// Appends `Shape(like)[b]` -> `Concat(1.., n, ..1)` -> `Expand(value, ...)` and returns
    /// the expanded value's name.
    mutating func expandToBatch(_ value: String, rank: Int, b: Int, like: String, for node: Node) throws -> String {
        let base = "\(node.name)::batch_\(value)"
        let n = base + "_n", shape = base + "_shape", out = base + "_expanded"
        try append(Node(name: n, op: .shape(start: b, end: b + 1), inputs: [like], outputs: [n], sourceOp: "Shape"))
        var parts: [String] = []
        if b > 0 { parts.append(addConstant(node, "ones_before", Array(repeating: 1, count: b))) }
        parts.append(n)
        if b < rank - 1 { parts.append(addConstant(node, "ones_after", Array(repeating: 1, count: rank - b - 1))) }
        try append(Node(name: shape, op: .concat(axis: 0), inputs: parts, outputs: [shape], sourceOp: "Concat"))
        try append(Node(name: out, op: .expand, inputs: [value, shape], outputs: [out], sourceOp: "Expand"))
        return out
    }

    /// Slice: bounds over the batch axis must take the whole batch (start 0, step 1); their
    /// end becomes the largest Int64.
    mutating func slice(_ node: inout Node, _ ins: [PlanValue?], _ facts: [BatchFact], _ ax: BatchAxis) throws {
        let b = ax.axis, per = ax.size
        guard facts.count > 2, facts[1...].allSatisfy({ $0 == .constant }),
              let st = ins[1]?.constant, let en = ins[2]?.constant else { return }
        let r = ins[0]!.shape.count
        let starts = ints(st)
        var ends = ints(en)
        let axes = (ins.count > 3 ? ins[3]?.constant : nil).map { ints($0).map { $0 < 0 ? $0 + r : $0 } } ?? Array(0..<starts.count)
        let steps = (ins.count > 4 ? ins[4]?.constant : nil).map(ints) ?? Array(repeating: 1, count: starts.count)
        var changed = false
        for k in axes.indices where axes[k] == b {
            guard steps[k] == 1, starts[k] == 0 || starts[k] <= -per, ends[k] >= per else {
                throw pinned(node, "takes part of the batch (start \(starts[k]), end \(ends[k]), step \(steps[k]))")
            }
            if ends[k] < Int(Int64.max) { ends[k] = Int(Int64.max); changed = true }
        }
        if changed { node.inputs[2] = addConstant(node, "ends", ends) }
    }

    /// Resize to constant sizes: the batch's entry (which must keep its size) is dropped and
    /// the resize names the axes it sizes instead.
    mutating func resizeSizes(_ node: inout Node, _ ins: [PlanValue?], _ params: ResizeParams, _ ax: BatchAxis) throws {
        guard let t = ins[3]?.constant else { return }
        let r = ins[0]!.shape.count
        let sizes = ints(t)
        let axes = (params.axes ?? Array(0..<r)).map { $0 < 0 ? $0 + r : $0 }
        guard axes.count == sizes.count, let k = axes.firstIndex(of: ax.axis) else { return }
        guard sizes[k] == ax.size else { throw pinned(node, "resizes the batch axis to \(sizes[k])") }
        var p = params
        p.axes = axes.enumerated().filter { $0.offset != k }.map(\.element)
        node.op = .resize(p)
        node.inputs[3] = addConstant(node, "sizes", sizes.enumerated().filter { $0.offset != k }.map(\.element))
    }

    /// Squeeze: never of the batch axis; without axes, every other size-1 axis is named.
    mutating func squeeze(_ node: inout Node, _ ins: [PlanValue?], _ ax: BatchAxis) throws -> BatchFact {
        let x = ins[0]!.shape, b = ax.axis
        var axes: [Int]
        if node.inputs.count > 1, !node.inputs[1].isEmpty {
            guard let t = ins[1]?.constant else { throw pinned(node, "squeezes axes known only at run time") }
            axes = ints(t).map { $0 < 0 ? $0 + x.count : $0 }
            guard !axes.contains(b) else { throw pinned(node, "squeezes the batch axis") }
        } else {
            axes = x.indices.filter { x[$0] == 1 && $0 != b }
            node.inputs = [node.inputs[0], addConstant(node, "axes", axes)]
        }
        return .batched(ax.moved(to: b - axes.filter { $0 < b }.count))
    }

    /// Expand of a batched value: a constant target that repeats the batched dim's size
    /// there gets 1 (keep the value's own size).
    mutating func expand(_ node: inout Node, _ ins: [PlanValue?], _ facts: [BatchFact], _ ax: BatchAxis,
                         rank: Int) throws -> BatchFact {
        let x = ins[0]!.shape, b = ax.axis
        let a = rank - x.count + b
        guard facts.count > 1, facts[1] == .constant, let t = ins[1]?.constant else { return .batched(ax.moved(to: a)) }
        var target = ints(t)
        let k = a - (rank - target.count)
        if k >= 0 && target[k] != 1 {
            guard target[k] == x[b] else { throw pinned(node, "expands the batch axis to \(target[k])") }
            target[k] = 1
            node.inputs[1] = addConstant(node, "shape", target)
        }
        return .batched(ax.moved(to: a))
    }
}
