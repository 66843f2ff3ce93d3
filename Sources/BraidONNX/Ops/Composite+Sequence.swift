import BraidGraph
import BraidTensor

// Composite translations of the sequence and signal ops (registered in Composite.swift):
// RotaryEmbedding, ReverseSequence, STFT, CausalConvWithState, TensorScatter.

/// ReverseSequence: each batch entry's first `sequence_lens[b]` steps reversed along the time
/// axis, a GatherElements with indices `t < len ? len - 1 - t : t` broadcast over the rest.
@Sendable func translateReverseSequence(_ n: NodeTranslation) throws {
    let timeAxis = try n.int("time_axis", default: 0), batchAxis = try n.int("batch_axis", default: 1)
    guard Set([timeAxis, batchAxis]) == [0, 1] else { throw n.error("time_axis and batch_axis must be 0 and 1") }
    guard let rank = n.knownShape(0)?.count else { throw n.error("ReverseSequence needs the input's rank at import") }
    let zero = n.constant(Tensor(shape: [], ints: [0]), "zero"), one = n.constant(Tensor(shape: [], ints: [1]), "one")
    let steps = n.step(.gather(axis: 0), [n.step(.shape(start: timeAxis, end: timeAxis + 1), [n.input(0)], "t_vec"), zero], "steps")
    let t = n.step(.range, [zero, steps, one], "t")
    let lens = n.step(.cast(to: .int64), [n.input(1)], "lens")
    // Time along axis `timeAxis` of a [*, *] grid, lengths along the batch axis.
    let tGrid = n.step(.unsqueeze, [t, n.constant(ints: [batchAxis], "t_axis")], "t_grid")
    let lGrid = n.step(.unsqueeze, [lens, n.constant(ints: [timeAxis], "l_axis")], "l_grid")
    let flipped = n.step(.binary(.sub), [n.step(.binary(.sub), [lGrid, one], "last"), tGrid], "flipped")
    let inside = n.step(.binary(.less), [tGrid, lGrid], "inside")
    var index = n.step(.select, [inside, flipped, tGrid], "index")
    if rank > 2 { index = n.step(.unsqueeze, [index, n.constant(ints: Array(2..<rank), "rest")], "index_u") }
    index = n.step(.expand, [index, n.step(.shape(start: 0, end: nil), [n.input(0)], "shape")], "index_full")
    n.emit(.gatherElements(axis: timeAxis), inputs: [n.input(0), index])
}

/// STFT: frames of `frame_length` every `frame_step` along the signal `[B, L, 1 or 2]`,
/// windowed, each transformed (one-sided by default) -> `[B, frames, bins, 2]`.
@Sendable func translateSTFT(_ n: NodeTranslation) throws {
    let onesided = try n.bool("onesided", default: true)
    let zero = n.constant(Tensor(shape: [], ints: [0]), "zero"), one = n.constant(Tensor(shape: [], ints: [1]), "one")
    let step = n.step(.cast(to: .int64), [n.step(.reshape(allowZero: false), [n.input(1), n.constant(ints: [], "scalar")], "step_s")], "step")
    let frameLength: String
    if !n.input(3).isEmpty {
        frameLength = n.step(.cast(to: .int64), [n.step(.reshape(allowZero: false), [n.input(3), n.constant(ints: [], "scalar_f")], "fl_s")], "frame_length")
    } else if !n.input(2).isEmpty {
        frameLength = n.step(.gather(axis: 0), [n.step(.shape(start: 0, end: 1), [n.input(2)], "w_len"), zero], "frame_length")
    } else {
        throw n.error("STFT needs a window or a frame_length")
    }
    let length = n.step(.gather(axis: 0), [n.step(.shape(start: 1, end: 2), [n.input(0)], "l_vec"), zero], "length")
    let frames = n.step(.binary(.add), [n.step(.binary(.div), [n.step(.binary(.sub), [length, frameLength], "room"), step], "moves"), one], "frames")
    let starts = n.step(.binary(.mul), [n.step(.range, [zero, frames, one], "f"), step], "starts")
    let offsets = n.step(.range, [zero, frameLength, one], "offsets")
    let index = n.step(.binary(.add), [n.step(.unsqueeze, [starts, n.constant(ints: [1], "col")], "starts_col"), offsets], "index")
    var framed = n.step(.gather(axis: 1), [n.input(0), index], "framed")
    if !n.input(2).isEmpty {
        let window = n.step(.unsqueeze, [n.input(2), n.constant(ints: [1], "w_col")], "window_col")
        framed = n.step(.binary(.mul), [framed, window], "windowed")
    }
    n.emit(.dft(inverse: false, onesided: onesided, axis: 2), inputs: [framed])
}

/// CausalConvWithState: a depthwise 1-D convolution over `[past_state or zeros, input]`
/// (kernel k, no padding), then SiLU when asked; the last k - 1 steps are the new state.
@Sendable func translateCausalConv(_ n: NodeTranslation) throws {
    guard let w = n.knownShape(1), w.count == 3 else { throw n.error("the weight's shape [C, 1, k] is needed at import") }
    let channels = w[0], k = w[2]
    let activation = try n.string("activation", default: "none")
    guard ["none", "silu", "swish"].contains(activation) else { throw n.error("attribute 'activation' = '\(activation)' is not known") }
    let axis = n.constant(ints: [2], "time_axis")
    let padded: String
    if !n.input(3).isEmpty {
        padded = n.step(.concat(axis: 2), [n.input(3), n.input(0)], "padded")
    } else {
        padded = n.step(.pad(mode: .constant), [n.input(0), n.constant(ints: [k - 1, 0], "pads"), "", axis], "padded")
    }
    let params = ConvParams(kernel: [k], strides: [1], pads: [0, 0], dilations: [1], group: channels)
    let conv = n.outputs[0]
    if activation == "none" {
        n.emit(.conv(params), inputs: [padded, n.input(1), n.input(2)], outputs: [conv])
    } else {
        let y = n.step(.conv(params), [padded, n.input(1), n.input(2)], "conv")
        n.emit(.binary(.mul), inputs: [y, n.step(.unary(.sigmoid), [y], "gate")], outputs: [conv])
    }
    if n.outputUsed(1) {
        let big = Int(Int32.max)
        let start = k > 1 ? -(k - 1) : big
        n.emit(.slice, inputs: [padded, n.constant(ints: [start], "state_start"), n.constant(ints: [big], "state_end"), axis],
               outputs: [n.outputs[1]])
    }
}

/// TensorScatter: the update written into the cache along `axis` from each batch entry's
/// write index (wrapping in circular mode): a ScatterElements whose indices are
/// `write_indices[b] + s` broadcast over the update.
@Sendable func translateTensorScatter(_ n: NodeTranslation) throws {
    guard let rank = n.knownShape(0)?.count else { throw n.error("TensorScatter needs the cache's rank at import") }
    var axis = try n.int("axis", default: -2)
    if axis < 0 { axis += rank }
    guard axis > 0 && axis < rank else { throw n.error("attribute 'axis' = \(axis) must be a non-batch axis") }
    let mode = try n.string("mode", default: "linear")
    guard mode == "linear" || mode == "circular" else { throw n.error("attribute 'mode' = '\(mode)' is not known") }
    let zero = n.constant(Tensor(shape: [], ints: [0]), "zero"), one = n.constant(Tensor(shape: [], ints: [1]), "one")
    let steps = n.step(.gather(axis: 0), [n.step(.shape(start: axis, end: axis + 1), [n.input(1)], "s_vec"), zero], "steps")
    let others = (0..<rank).filter { $0 != axis }
    var index = n.step(.unsqueeze, [n.step(.range, [zero, steps, one], "s"), n.constant(ints: others, "s_axes")], "s_placed")
    if !n.input(2).isEmpty {
        let starts = n.step(.unsqueeze, [n.step(.cast(to: .int64), [n.input(2)], "starts"), n.constant(ints: Array(1..<rank), "b_axes")], "starts_placed")
        index = n.step(.binary(.add), [index, starts], "positions")
    }
    if mode == "circular" {
        let length = n.step(.shape(start: axis, end: axis + 1), [n.input(0)], "cache_len")
        index = n.step(.binary(.mod(fmod: false)), [index, length], "wrapped")
    }
    index = n.step(.expand, [index, n.step(.shape(start: 0, end: nil), [n.input(1)], "update_shape")], "index_full")
    n.emit(.scatterElements(axis: axis, reduction: .replace), inputs: [n.input(0), index, n.input(1)])
}

/// RotaryEmbedding: heads `[B, S, H, D]` (from 4-D `[B, H, S, D]` or 3-D `[B, S, H * D]`), the
/// first `rotary_embedding_dim` features rotated pairwise (halves, or interleaved pairs) by
/// the cos/sin caches (gathered at `position_ids` when given), the rest passed through.
@Sendable func translateRotaryEmbedding(_ n: NodeTranslation) throws {
    let interleaved = try n.bool("interleaved", default: false)
    let numHeads = try n.int("num_heads")
    let rank = n.knownShape(0)?.count ?? (numHeads != nil ? 3 : 4)
    var x = n.input(0)
    if rank == 4 {
        x = n.step(.transpose(perm: [0, 2, 1, 3]), [x], "bshd")
    } else {
        guard let heads = numHeads, heads > 0 else { throw n.error("3-D input needs attribute 'num_heads'") }
        x = n.step(.reshape(allowZero: false), [x, n.constant(ints: [0, 0, heads, -1], "heads_shape")], "bshd")
    }
    var rot = try n.int("rotary_embedding_dim", default: 0)
    var headSize: Int?
    if let s = n.knownShape(0) { headSize = rank == 4 ? s[3] : numHeads.map { s[2] / $0 } }
    if rot == 0, let h = headSize { rot = h }
    let big = Int(Int32.max)
    func slice(_ v: String, _ start: Int, _ end: Int, step: Int = 1, _ role: String) -> String {
        n.step(.slice, [v, n.constant(ints: [start], role + "_s"), n.constant(ints: [end], role + "_e"),
                        n.constant(ints: [-1], role + "_a"), n.constant(ints: [step], role + "_st")], role)
    }
    let whole = rot == 0 || rot == headSize
    let rotate = whole ? x : slice(x, 0, rot, "rotated_part")
    var cos = n.input(1), sin = n.input(2)
    if !n.input(3).isEmpty {
        cos = n.step(.gather(axis: 0), [cos, n.input(3)], "cos_at")
        sin = n.step(.gather(axis: 0), [sin, n.input(3)], "sin_at")
    }
    let axis = n.constant(ints: [-2], "head_axis")
    cos = n.step(.unsqueeze, [cos, axis], "cos_b")
    sin = n.step(.unsqueeze, [sin, axis], "sin_b")
    guard rot > 0 || !interleaved else { throw n.error("rotary_embedding_dim is needed at import for an interleaved rotation of unknown head size") }
    let x1: String, x2: String
    if interleaved {
        x1 = slice(rotate, 0, big, step: 2, "x_even")
        x2 = slice(rotate, 1, big, step: 2, "x_odd")
    } else if rot > 0 {
        x1 = slice(rotate, 0, rot / 2, "x_first")
        x2 = slice(rotate, rot / 2, rot, "x_second")
    } else {
        let halves = [n.temporary("x_first"), n.temporary("x_second")]
        n.emit(.split(axis: -1, count: 2), inputs: [rotate], outputs: halves)
        x1 = halves[0]; x2 = halves[1]
    }
    let mul = { (a: String, b: String, r: String) in n.step(.binary(.mul), [a, b], r) }
    let real = n.step(.binary(.sub), [mul(cos, x1, "c1"), mul(sin, x2, "s2")], "real")
    let imag = n.step(.binary(.add), [mul(sin, x1, "s1"), mul(cos, x2, "c2")], "imag")
    var rotated: String
    if interleaved {
        let last = n.constant(ints: [-1], "pair_axis")
        let pairs = n.step(.concat(axis: -1), [n.step(.unsqueeze, [real, last], "real_u"), n.step(.unsqueeze, [imag, last], "imag_u")], "pairs")
        rotated = n.step(.reshape(allowZero: false), [pairs, n.constant(ints: [0, 0, 0, -1], "pairs_flat")], "rotated")
    } else {
        rotated = n.step(.concat(axis: -1), [real, imag], "rotated")
    }
    if !whole { rotated = n.step(.concat(axis: -1), [rotated, slice(x, rot, big, "passed_part")], "joined") }
    if rank == 4 {
        n.emit(.transpose(perm: [0, 2, 1, 3]), inputs: [rotated], outputs: [n.outputs[0]])
    } else {
        n.emit(.reshape(allowZero: false), inputs: [rotated, n.constant(ints: [0, 0, -1], "out_shape")], outputs: [n.outputs[0]])
    }
}
