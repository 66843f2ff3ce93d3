import BraidGraph
import BraidTensor

// Einsum -> IR primitives. Operands are contracted pairwise from the left. A pair whose
// kept and summed labels are at most one each becomes a (batched) MatMul between two
// transposes, which covers attention's "bhid,bhjd->bhij" and "bhij,bhjd->bhid"; any other pair
// is broadcast, multiplied and summed. Labels found in one operand only are summed first.
// Ellipses need the operand's rank at import (an initializer or a declared input shape).
// Repeated labels within one operand (diagonals) are refused.

/// One operand or intermediate: its IR value and the label of each axis.
private struct Term {
    var value: String
    var labels: [Character]
}

@Sendable func translateEinsum(_ n: NodeTranslation) throws {
    guard let eq = try n.string("equation")?.filter({ !$0.isWhitespace }) else {
        throw n.error("missing required attribute 'equation'")
    }
    let sides = eq.components(separatedBy: "->")
    guard sides.count <= 2 else { throw n.error("equation '\(eq)' has more than one '->'") }
    let lhs = sides[0].components(separatedBy: ",")
    guard lhs.count == n.inputs.count else {
        throw n.error("equation '\(eq)' names \(lhs.count) operands, the node has \(n.inputs.count)")
    }
    // Ellipsis axes get labels of their own, aligned from the right as NumPy broadcasts.
    let ellipsisLabels: [Character] = (0..<16).map { Character(Unicode.Scalar(0x2460 + $0)!) }
    var ellipsisRank = 0
    var terms: [Term] = []
    for (i, spec) in lhs.enumerated() {
        var labels: [Character] = []
        if let r = spec.range(of: "...") {
            let before = Array(spec[..<r.lowerBound]), after = Array(spec[r.upperBound...])
            guard let rank = n.knownShape(i)?.count else {
                throw n.error("equation '\(eq)': an ellipsis needs operand \(i)'s rank at import")
            }
            let k = rank - before.count - after.count
            guard k >= 0, k <= ellipsisLabels.count else { throw n.error("equation '\(eq)' does not fit operand \(i) of rank \(rank)") }
            ellipsisRank = max(ellipsisRank, k)
            labels = before + Array(ellipsisLabels[(ellipsisLabels.count - k)...]) + after
        } else {
            labels = Array(spec)
        }
        guard labels.allSatisfy({ $0.isLetter || ellipsisLabels.contains($0) }) else {
            throw n.error("equation '\(eq)': operand \(i)'s subscripts are not letters")
        }
        guard Set(labels).count == labels.count else {
            throw n.error("equation '\(eq)': repeated subscripts within an operand (diagonals) are not supported")
        }
        terms.append(Term(value: n.input(i), labels: labels))
    }
    let ellipsis = Array(ellipsisLabels[(ellipsisLabels.count - ellipsisRank)...])
    var output: [Character]
    if sides.count == 2 {
        let rhs = sides[1]
        if let r = rhs.range(of: "...") {
            output = Array(rhs[..<r.lowerBound]) + ellipsis + Array(rhs[r.upperBound...])
        } else {
            output = Array(rhs)
        }
    } else {
        // Implicit output: the labels used once, alphabetically, after the ellipsis axes.
        var count: [Character: Int] = [:]
        for t in terms { for l in t.labels where !ellipsis.contains(l) { count[l, default: 0] += 1 } }
        output = ellipsis + count.filter { $0.value == 1 }.keys.sorted()
    }
    let all = Set(terms.flatMap(\.labels))
    guard Set(output).count == output.count, output.allSatisfy(all.contains) else {
        throw n.error("equation '\(eq)': output subscripts must be distinct and appear in an operand")
    }
    let e = EinsumEmitter(n: n)
    var acc = try e.sumAway(terms[0], keep: Set(output).union(terms.dropFirst().flatMap(\.labels)))
    for i in 1..<max(terms.count, 1) {
        let later = Set(output).union(terms.dropFirst(i + 1).flatMap(\.labels))
        let b = try e.sumAway(terms[i], keep: later.union(acc.labels))
        acc = try e.contract(e.sumAway(acc, keep: later.union(b.labels)), b, keep: later)
    }
    e.transpose(acc, to: output, final: n.outputs[0])
}

private struct EinsumEmitter {
    let n: NodeTranslation

    /// Sums the axes whose labels are not in `keep`.
    func sumAway(_ t: Term, keep: Set<Character>) throws -> Term {
        let axes = t.labels.indices.filter { !keep.contains(t.labels[$0]) }
        guard !axes.isEmpty else { return t }
        let out = n.temporary("sum")
        n.emit(.reduce(.sum, axes: axes, keepDims: false, noopWithEmptyAxes: false), inputs: [t.value], outputs: [out])
        return Term(value: out, labels: t.labels.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
    }

    /// Reorders `t`'s axes to `order` (a permutation of its labels); writes to `final` when
    /// given, even when no reordering is needed.
    @discardableResult
    func transpose(_ t: Term, to order: [Character], final: String? = nil) -> Term {
        let perm = order.map { l in t.labels.firstIndex(of: l)! }
        if perm == Array(perm.indices) {
            guard let final else { return Term(value: t.value, labels: order) }
            n.emit(.identity, inputs: [t.value], outputs: [final])
            return Term(value: final, labels: order)
        }
        let out = final ?? n.temporary("transpose")
        n.emit(.transpose(perm: perm), inputs: [t.value], outputs: [out])
        return Term(value: out, labels: order)
    }

    func unsqueeze(_ value: String, axes: [Int]) -> String {
        guard !axes.isEmpty else { return value }
        let out = n.temporary("unsqueeze")
        n.emit(.unsqueeze, inputs: [value, n.constant(ints: axes, "axes")], outputs: [out])
        return out
    }

    /// `a * b` summed over their shared labels not in `keep`. Labels of each are in `keep`
    /// or shared (sumAway ran before).
    func contract(_ a: Term, _ b: Term, keep: Set<Character>) throws -> Term {
        let batch = a.labels.filter { b.labels.contains($0) && keep.contains($0) }
        let summed = a.labels.filter { b.labels.contains($0) && !keep.contains($0) }
        let aOnly = a.labels.filter { !b.labels.contains($0) }
        let bOnly = b.labels.filter { !a.labels.contains($0) }
        if summed.count <= 1 && aOnly.count <= 1 && bOnly.count <= 1 && !(summed.isEmpty && aOnly.isEmpty && bOnly.isEmpty) {
            // [batch, M, K] x [batch, K, N] with absent M, K or N as size-1 axes.
            let at = transpose(a, to: batch + aOnly + summed), bt = transpose(b, to: batch + summed + bOnly)
            let r = batch.count
            var aAxes: [Int] = [], bAxes: [Int] = []
            if aOnly.isEmpty { aAxes.append(r) }
            if summed.isEmpty { aAxes.append(r + 1); bAxes.append(r) }
            if bOnly.isEmpty { bAxes.append(r + 1) }
            let product = n.temporary("matmul")
            n.emit(.matMul, inputs: [unsqueeze(at.value, axes: aAxes), unsqueeze(bt.value, axes: bAxes)], outputs: [product])
            var drop: [Int] = []
            if aOnly.isEmpty { drop.append(r) }
            if bOnly.isEmpty { drop.append(r + 1) }
            guard !drop.isEmpty else { return Term(value: product, labels: batch + aOnly + bOnly) }
            let out = n.temporary("squeeze")
            n.emit(.squeeze, inputs: [product, n.constant(ints: drop, "squeeze_axes")], outputs: [out])
            return Term(value: out, labels: batch + aOnly + bOnly)
        }
        // General: both brought to the axes [kept..., summed...], multiplied with broadcast.
        let kept = batch + aOnly + bOnly
        let order = kept + summed
        func align(_ t: Term) -> String {
            let mine = order.filter(t.labels.contains)
            let moved = transpose(t, to: mine)
            return unsqueeze(moved.value, axes: order.indices.filter { !t.labels.contains(order[$0]) })
        }
        let product = n.temporary("product")
        n.emit(.binary(.mul), inputs: [align(a), align(b)], outputs: [product])
        return try sumAway(Term(value: product, labels: order), keep: Set(kept))
    }
}
