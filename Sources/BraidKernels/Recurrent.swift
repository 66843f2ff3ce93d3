import Foundation
import BraidTensor

/// Simple RNN, GRU and LSTM layers over a sequence, as ONNX defines them: one or two
/// directions, per-row sequence lengths (rows stop early, their outputs past the end are
/// zero), gate pre-activations optionally clipped. Shapes in the ONNX default layout:
/// x `[S, B, I]`, w `[D, G*H, I]`, r `[D, G*H, H]`, bias `[D, 2*G*H]` (input then recurrent),
/// y `[S, D, B, H]`, last hidden/cell `[D, B, H]`; G is 1, 3 (z, r, h) or 4 (i, o, f, c).
/// Forward only: Braid has no gradient rule for recurrent layers.
public struct RecurrentLayer: Sendable {
    public typealias Cell = RecurrentCell

    public let cell: Cell
    /// Per direction, the activation functions in ONNX's order (f[, g[, h]]).
    public let activations: [[UnaryFunction]]
    public let reverse: [Bool]
    public let seq: Int, batch: Int, input: Int, hidden: Int
    public let clip: Float?

    public init(cell: Cell, activations: [[UnaryFunction]], reverse: [Bool], seq: Int, batch: Int, input: Int,
                hidden: Int, clip: Float?) {
        self.cell = cell; self.activations = activations; self.reverse = reverse
        self.seq = seq; self.batch = batch; self.input = input; self.hidden = hidden; self.clip = clip
    }

    public var gates: Int {
        switch cell {
        case .simple: return 1
        case .gru: return 3
        case .lstm: return 4
        }
    }

    /// Scratch floats `run` needs.
    public var scratchCount: Int { seq * gates * hidden + 4 * gates * hidden + 4 * hidden }

    /// Runs every direction. Optional operands may be nil (bias zero, full lengths, zero
    /// initial state, no peepholes); `yc` only for LSTM.
    public func run(x: UnsafePointer<Float>, w: UnsafePointer<Float>, r: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                    lengths: UnsafePointer<Int64>?, h0: UnsafePointer<Float>?, c0: UnsafePointer<Float>?,
                    peephole: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>?, yh: UnsafeMutablePointer<Float>?,
                    yc: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>) {
        let g = gates, h = hidden, gh = g * h, dirs = reverse.count
        let xw = scratch                       // [S, G*H] input projections of one row
        let rec = xw + seq * gh                // [G*H] recurrent projection
        let pre = rec + gh                     // [G*H] pre-activations
        let act = pre + gh                     // [G*H] activated gates
        let tmp = act + gh                     // [G*H]
        let state = tmp + gh                   // [H]
        let cellState = state + h              // [H]
        let candidate = cellState + h          // [H]
        let reset = candidate + h              // [H]
        y?.update(repeating: 0, count: seq * dirs * batch * h)
        for d in 0..<dirs {
            let wd = w + d * gh * input, rd = r + d * gh * h
            let wb = bias.map { $0 + d * 2 * gh }, rb = bias.map { $0 + d * 2 * gh + gh }
            let f = activations[d]
            for b in 0..<batch {
                let len = lengths.map { min(seq, max(0, Int($0[b]))) } ?? seq
                for i in 0..<h {
                    state[i] = h0?[(d * batch + b) * h + i] ?? 0
                    cellState[i] = c0?[(d * batch + b) * h + i] ?? 0
                }
                // x_t . W^T for every step of this row: rows of x are `batch * input` apart.
                if len > 0 {
                    gemm(transA: false, transB: true, m: len, n: gh, k: input, alpha: 1, a: x + b * input,
                         lda: batch * input, b: wd, ldb: input, beta: 0, c: xw, ldc: gh)
                }
                for s in 0..<len {
                    let t = reverse[d] ? len - 1 - s : s
                    gemm(transA: false, transB: true, m: 1, n: gh, k: h, alpha: 1, a: UnsafePointer(state), lda: h,
                         b: rd, ldb: h, beta: 0, c: rec, ldc: gh)
                    for j in 0..<gh {
                        pre[j] = xw[t * gh + j] + (wb?[j] ?? 0)
                        rec[j] += rb?[j] ?? 0
                    }
                    switch cell {
                    case .simple:
                        for j in 0..<h { tmp[j] = clipped(pre[j] + rec[j]) }
                        Elementwise.unary(f[0], UnsafePointer(tmp), state, count: h)
                    case .gru(let linearBeforeReset):
                        // z and r from both projections; h from x plus r applied to the
                        // recurrent part (before or after its product with R).
                        for j in 0..<(2 * h) { tmp[j] = clipped(pre[j] + rec[j]) }
                        Elementwise.unary(f[0], UnsafePointer(tmp), act, count: 2 * h)
                        let z = act, rg = act + h
                        if linearBeforeReset {
                            for j in 0..<h { tmp[j] = clipped(pre[2 * h + j] + rg[j] * rec[2 * h + j]) }
                        } else {
                            for j in 0..<h { reset[j] = rg[j] * state[j] }
                            gemm(transA: false, transB: true, m: 1, n: h, k: h, alpha: 1, a: UnsafePointer(reset), lda: h,
                                 b: rd + 2 * h * h, ldb: h, beta: 0, c: candidate, ldc: h)
                            for j in 0..<h { tmp[j] = clipped(pre[2 * h + j] + candidate[j] + (rb?[2 * h + j] ?? 0)) }
                        }
                        Elementwise.unary(f[1], UnsafePointer(tmp), candidate, count: h)
                        for j in 0..<h { state[j] = (1 - z[j]) * candidate[j] + z[j] * state[j] }
                    case .lstm(let inputForget):
                        // Gate order i, o, f, c; peepholes i, o, f.
                        for j in 0..<gh { tmp[j] = pre[j] + rec[j] }
                        for j in 0..<h {
                            tmp[j] = clipped(tmp[j] + (peephole?[d * 3 * h + j] ?? 0) * cellState[j])
                            tmp[2 * h + j] = clipped(tmp[2 * h + j] + (peephole?[d * 3 * h + 2 * h + j] ?? 0) * cellState[j])
                            tmp[3 * h + j] = clipped(tmp[3 * h + j])
                        }
                        Elementwise.unary(f[0], UnsafePointer(tmp), act, count: h)
                        Elementwise.unary(f[0], UnsafePointer(tmp + 2 * h), act + 2 * h, count: h)
                        Elementwise.unary(f[1], UnsafePointer(tmp + 3 * h), act + 3 * h, count: h)
                        for j in 0..<h {
                            let forget = inputForget ? 1 - act[j] : act[2 * h + j]
                            cellState[j] = forget * cellState[j] + act[j] * act[3 * h + j]
                            tmp[h + j] = clipped(tmp[h + j] + (peephole?[d * 3 * h + h + j] ?? 0) * cellState[j])
                        }
                        Elementwise.unary(f[0], UnsafePointer(tmp + h), act + h, count: h)
                        Elementwise.unary(f[2], UnsafePointer(cellState), candidate, count: h)
                        for j in 0..<h { state[j] = act[h + j] * candidate[j] }
                    }
                    if let y { (y + ((t * dirs + d) * batch + b) * h).update(from: state, count: h) }
                }
                if let yh { (yh + (d * batch + b) * h).update(from: state, count: h) }
                if let yc { (yc + (d * batch + b) * h).update(from: cellState, count: h) }
            }
        }
    }

    @inline(__always)
    private func clipped(_ v: Float) -> Float {
        guard let c = clip else { return v }
        return min(max(v, -c), c)
    }
}

/// Linear attention as a recurrence over time with a per-head state `S [dk, dv]`:
/// optionally decayed (`S *= exp(decay)`), optionally delta-corrected
/// (`v <- beta * (v - S^T k)`), then `S += k v^T`; each query head reads
/// `scale * q . S` from its key/value head. q `[B, T, Hq*dk]`, k `[B, T, Hkv*dk]`,
/// v `[B, T, Hkv*dv]`, state `[B, Hkv, dk, dv]`, decay `[B, T, Hkv or Hkv*dk]`,
/// beta `[B, T, Hkv or 1]`; output `[B, T, Hq*dv]`. Forward only.
public struct LinearAttentionKernel: Sendable {
    public let batch: Int, steps: Int, qHeads: Int, kvHeads: Int, dk: Int, dv: Int
    public let scale: Float
    /// Decay entries per step and head (1 or dk); 0 without gating.
    public let decayWidth: Int
    /// Beta entries per step (kvHeads or 1); 0 without delta correction.
    public let betaWidth: Int

    public init(batch: Int, steps: Int, qHeads: Int, kvHeads: Int, dk: Int, dv: Int, scale: Float,
                decayWidth: Int, betaWidth: Int) {
        self.batch = batch; self.steps = steps; self.qHeads = qHeads; self.kvHeads = kvHeads
        self.dk = dk; self.dv = dv; self.scale = scale; self.decayWidth = decayWidth; self.betaWidth = betaWidth
    }

    public func run(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                    past: UnsafePointer<Float>?, decay: UnsafePointer<Float>?, beta: UnsafePointer<Float>?,
                    out: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let group = qHeads / kvHeads, stateSize = dk * dv
        if let past { state.update(from: past, count: batch * kvHeads * stateSize) } else {
            state.update(repeating: 0, count: batch * kvHeads * stateSize)
        }
        for b in 0..<batch {
            for h in 0..<kvHeads {
                let s = state + (b * kvHeads + h) * stateSize
                for t in 0..<steps {
                    let kt = k + (b * steps + t) * kvHeads * dk + h * dk
                    let vt = v + (b * steps + t) * kvHeads * dv + h * dv
                    if let decay {
                        let g = decay + (b * steps + t) * kvHeads * decayWidth + h * decayWidth
                        for i in 0..<dk {
                            let f = expf(g[decayWidth == 1 ? 0 : i])
                            for m in 0..<dv { s[i * dv + m] *= f }
                        }
                    }
                    // The value written: v, or beta * (v - S^T k).
                    for m in 0..<dv { scratch[m] = vt[m] }
                    if let beta {
                        let bt = beta[(b * steps + t) * betaWidth + (betaWidth == 1 ? 0 : h)]
                        for m in 0..<dv {
                            var r: Float = 0
                            for i in 0..<dk { r += s[i * dv + m] * kt[i] }
                            scratch[m] = bt * (vt[m] - r)
                        }
                    }
                    for i in 0..<dk { for m in 0..<dv { s[i * dv + m] += kt[i] * scratch[m] } }
                    for j in 0..<group {
                        let qh = h * group + j
                        let qt = q + (b * steps + t) * qHeads * dk + qh * dk
                        let o = out + (b * steps + t) * qHeads * dv + qh * dv
                        for m in 0..<dv {
                            var acc: Float = 0
                            for i in 0..<dk { acc += qt[i] * s[i * dv + m] }
                            o[m] = scale * acc
                        }
                    }
                }
            }
        }
    }
}
