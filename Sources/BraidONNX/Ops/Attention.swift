import BraidGraph
import BraidTensor

// ONNX Attention (opsets 23-25) -> IR primitives, following the operator's reference:
// 3-D inputs are split into heads, past key/value caches are concatenated, grouped-query
// heads are repeated, then softmax(Q K^T * scale (softcapped) + bias) V. The additive bias
// sums the attention mask (bool masks become 0 / -inf, short masks are padded with -inf), the
// causal frontier (offset by the past length or by nonpad_kv_seqlen - q_len), the sliding
// window and the non-padding mask; a row the bias masks entirely gives zeros. Sequence
// lengths come from shape computations the planner folds, so no size is needed at import;
// grouped-query attention needs both head counts (attributes or declared shapes).

@Sendable func translateAttention(_ n: NodeTranslation) throws {
    let a = AttentionBuilder(n: n)
    try a.build()
}

private struct AttentionBuilder {
    let n: NodeTranslation

    func c(_ v: [Int64], _ role: String) -> String { n.constant(Tensor(shape: [v.count], ints: v), role) }
    func scalarInt(_ v: Int64, _ role: String) -> String { n.constant(Tensor(shape: [], ints: [v]), role) }
    func scalarFloat(_ v: Float, _ role: String) -> String { n.constant(floats: [v], shape: [], role) }

    /// Dim `i` of `v` as an int64 scalar.
    func dim(_ v: String, _ i: Int, _ role: String) -> String {
        let s = n.step(.shape(start: i, end: i + 1), [v], role + "_vec")
        return n.step(.gather(axis: 0), [s, scalarInt(0, role + "_at")], role)
    }

    func transpose(_ v: String, _ perm: [Int], _ role: String) -> String { n.step(.transpose(perm: perm), [v], role) }

    /// `[B, S, heads * D]` -> `[B, heads, S, D]`.
    func split(_ v: String, heads: Int, _ role: String) -> String {
        let r = n.step(.reshape(allowZero: false), [v, c([0, 0, Int64(heads), -1], role + "_shape")], role + "_heads")
        return transpose(r, [0, 2, 1, 3], role)
    }

    /// Additive bias 0 where `allowed`, -inf elsewhere.
    func bias(_ allowed: String, _ role: String) -> String {
        n.step(.select, [allowed, scalarFloat(0, role + "_zero"), scalarFloat(-.infinity, role + "_neginf")], role)
    }

    func build() throws {
        let isCausal = try n.bool("is_causal", default: false)
        let qHeadsAttr = try n.int("q_num_heads"), kvHeadsAttr = try n.int("kv_num_heads")
        let softcap = try n.float("softcap", default: 0)
        let mode = try n.int("qk_matmul_output_mode", default: 0)
        let left = try n.int("left_window_size", default: -1), right = try n.int("right_window_size", default: -1)
        let mask = n.input(3), pastK = n.input(4), pastV = n.input(5)
        let nonpad = n.opset >= 24 ? n.input(6) : ""
        let rank = n.knownShape(0)?.count ?? (qHeadsAttr != nil ? 3 : 4)
        guard rank == 3 || rank == 4 else { throw n.error("Q has rank \(rank), expected 3 or 4") }
        var q = n.input(0), k = n.input(1), v = n.input(2)
        if rank == 3 {
            guard let qh = qHeadsAttr, let kh = kvHeadsAttr else {
                throw n.error("3-D inputs need attributes 'q_num_heads' and 'kv_num_heads'")
            }
            q = split(q, heads: qh, "q4"); k = split(k, heads: kh, "k4"); v = split(v, heads: kh, "v4")
        }
        if !pastK.isEmpty {
            k = n.step(.concat(axis: 2), [pastK, k], "present_key_all")
            v = n.step(.concat(axis: 2), [pastV, v], "present_value_all")
        }
        if n.outputUsed(1) { n.emit(.identity, inputs: [k], outputs: [n.outputs[1]]) }
        if n.outputUsed(2) { n.emit(.identity, inputs: [v], outputs: [n.outputs[2]]) }

        // Grouped-query attention: each KV head serves q_heads / kv_heads query heads in turn.
        let qh = qHeadsAttr ?? n.knownShape(0).map { $0[1] }
        let kh = kvHeadsAttr ?? (pastK.isEmpty ? n.knownShape(1) : n.knownShape(4)).map { $0[1] }
        if let qh, let kh, qh != kh {
            guard kh > 0, qh % kh == 0 else { throw n.error("\(qh) query heads cannot share \(kh) key/value heads") }
            k = repeatHeads(k, times: qh / kh, heads: qh, "k_rep")
            v = repeatHeads(v, times: qh / kh, heads: qh, "v_rep")
        }
        let scale: String
        if let s = try n.float("scale") {
            scale = scalarFloat(s, "scale")
        } else {
            let d = n.step(.cast(to: .float32), [n.step(.shape(start: 3, end: 4), [q], "head_size")], "head_size_f")
            scale = n.step(.unary(.reciprocal), [n.step(.unary(.sqrt), [d], "sqrt_head_size")], "scale")
        }
        let scores = n.step(.binary(.mul), [n.step(.matMul, [q, transpose(k, [0, 1, 3, 2], "k_t")], "qk"), scale], "qk_scaled")
        var capped = scores
        if softcap > 0 {
            let sc = scalarFloat(softcap, "softcap")
            let t = n.step(.unary(.tanh), [n.step(.binary(.div), [scores, sc], "softcap_in")], "softcap_tanh")
            capped = n.step(.binary(.mul), [t, sc], "softcapped")
        }
        let totalBias = try biasTerms(mask: mask, pastK: pastK, nonpad: nonpad, q: q, k: k, causal: isCausal, left: left, right: right)
        let withBias = totalBias.map { n.step(.binary(.add), [capped, $0], "qk_bias") } ?? capped
        var probs = n.step(.softmax(.softmax, axis: -1, coerce2D: false), [withBias], "probs")
        if let b = totalBias {
            let rowMax = n.step(.reduce(.max, axes: [-1], keepDims: true, noopWithEmptyAxes: false), [b], "bias_row_max")
            let masked = n.step(.binary(.equal), [rowMax, scalarFloat(-.infinity, "row_neginf")], "row_masked")
            probs = n.step(.select, [masked, scalarFloat(0, "row_zero"), probs], "probs_guarded")
        }
        if n.outputUsed(3) {
            let chosen = [scores, capped, withBias, probs]
            guard (0...3).contains(mode) else { throw n.error("attribute 'qk_matmul_output_mode' = \(mode), expected 0...3") }
            n.emit(.identity, inputs: [chosen[mode]], outputs: [n.outputs[3]])
        }
        if rank == 4 {
            n.emit(.matMul, inputs: [probs, v], outputs: [n.outputs[0]])
        } else {
            let y = transpose(n.step(.matMul, [probs, v], "y4"), [0, 2, 1, 3], "y_t")
            n.emit(.reshape(allowZero: false), inputs: [y, c([0, 0, -1], "y_shape")], outputs: [n.outputs[0]])
        }
    }

    /// `[B, kh, S, D]` -> `[B, kh * times, S, D]`, each head repeated `times` times in place.
    func repeatHeads(_ x: String, times: Int, heads: Int, _ role: String) -> String {
        let u = n.step(.unsqueeze, [x, c([2], role + "_axis")], role + "_u")
        let lead = n.step(.shape(start: 0, end: 2), [x], role + "_lead")
        let tail = n.step(.shape(start: 2, end: 4), [x], role + "_tail")
        let target = n.step(.concat(axis: 0), [lead, c([Int64(times)], role + "_times"), tail], role + "_target")
        let e = n.step(.expand, [u, target], role + "_expanded")
        let batch = n.step(.shape(start: 0, end: 1), [x], role + "_batch")
        let shape = n.step(.concat(axis: 0), [batch, c([Int64(heads)], role + "_heads"), tail], role + "_shape")
        return n.step(.reshape(allowZero: false), [e, shape], role)
    }

    /// The sum of the additive bias terms, or nil when nothing is masked.
    func biasTerms(mask: String, pastK: String, nonpad: String, q: String, k: String,
                   causal: Bool, left: Int, right: Int) throws -> String? {
        var terms: [String] = []
        let kvLenVec = n.step(.shape(start: 2, end: 3), [k], "kv_len_vec")
        if !mask.isEmpty {
            var m = mask
            if (n.knownType(3) ?? .float32) == .bool { m = bias(mask, "mask_bias") }
            // A mask shorter than the keys is padded with -inf.
            let short = n.step(.binary(.sub), [kvLenVec, n.step(.shape(start: -1, end: nil), [m], "mask_len")], "mask_short")
            let pads = n.step(.concat(axis: 0), [c([0], "mask_pad_begin"), short], "mask_pads")
            terms.append(n.step(.pad(mode: .constant), [m, pads, scalarFloat(-.infinity, "mask_pad_value"), c([-1], "mask_pad_axis")], "mask_padded"))
        }
        let needsPositions = causal || left >= 0 || right >= 0 || !nonpad.isEmpty
        guard needsPositions else { return terms.isEmpty ? nil : sum(terms) }
        let qLen = dim(q, 2, "q_len"), kvLen = dim(k, 2, "kv_len")
        let zero = scalarInt(0, "pos_start"), one = scalarInt(1, "pos_step")
        let i = n.step(.unsqueeze, [n.step(.range, [zero, qLen, one], "q_pos"), c([1], "q_pos_axis")], "q_pos_col")
        let j = n.step(.range, [zero, kvLen, one], "kv_pos")
        var perBatch = false
        var offset: String
        if !pastK.isEmpty {
            offset = dim(pastK, 2, "past_len")
        } else if !nonpad.isEmpty {
            offset = n.step(.reshape(allowZero: false), [n.step(.binary(.sub), [nonpad, qLen], "nonpad_offset"), c([-1, 1, 1], "offset_shape")], "offset")
            perBatch = true
        } else {
            offset = zero
        }
        // Absolute query positions minus key positions: [q, kv], or [B, q, kv] per batch.
        let diff = n.step(.binary(.sub), [n.step(.binary(.add), [i, offset], "q_abs"), j], "pos_diff")
        func positional(_ allowed: String, _ role: String) -> String {
            let b = bias(allowed, role)
            return perBatch ? n.step(.unsqueeze, [b, c([1], role + "_axis")], role + "_b") : b
        }
        if causal {
            terms.append(positional(n.step(.binary(.greaterOrEqual), [diff, zero], "causal_allowed"), "causal_bias"))
        }
        if left >= 0 {
            terms.append(positional(n.step(.binary(.lessOrEqual), [diff, scalarInt(Int64(left), "left")], "left_allowed"), "left_bias"))
        }
        if right >= 0 {
            let neg = n.step(.unary(.neg), [diff], "neg_diff")
            terms.append(positional(n.step(.binary(.lessOrEqual), [neg, scalarInt(Int64(right), "right")], "right_allowed"), "right_bias"))
        }
        if !nonpad.isEmpty {
            let limit = n.step(.reshape(allowZero: false), [nonpad, c([-1, 1], "nonpad_col")], "nonpad_limit")
            let valid = n.step(.binary(.less), [j, limit], "kv_valid")
            let b = bias(valid, "nonpad_bias")
            terms.append(n.step(.reshape(allowZero: false), [b, n.step(.concat(axis: 0), [c([-1, 1, 1], "nonpad_lead"), kvLenVec], "nonpad_shape")], "nonpad_bias4"))
        }
        return sum(terms)
    }

    func sum(_ terms: [String]) -> String {
        var acc = terms[0]
        for (idx, t) in terms.dropFirst().enumerated() { acc = n.step(.binary(.add), [acc, t], "bias_sum\(idx)") }
        return acc
    }
}
