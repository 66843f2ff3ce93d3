import BraidGraph
import BraidKernels
import BraidTensor
import Dispatch
import Foundation

/// The `--per-op` report: time per op type, then per convolution shape with GFLOP/s, and for
/// memory-bound steps (depthwise convolutions, pooling, element-wise) GB/s beside the rate of
/// a plain two-thread memory copy measured in the same run. Each convolution that is not
/// depthwise is set beside a bare sgemm of its GEMM shape (`GEMMShape`) timed in the same run;
/// that comparison takes the best run of each, which other work on the machine disturbs least.
struct PerOpReport {
    let graph: Graph
    let plan: Plan
    /// Milliseconds per step summed over `runs` runs, and each step's fastest run.
    let times: [Double]
    let best: [Double]
    let runs: Int

    /// One row of the per-shape table: a convolution shape, or a memory-bound op on one shape.
    struct ShapeRow {
        let label: String
        var ms = 0.0, bestMS = 0.0, flops = 0.0, bytes = 0.0
        var count = 0
        let memoryBound: Bool
        let gemm: GEMMShape?
        /// The bare sgemm's GFLOP/s for `gemm`, nil when not timed.
        var sgemmRate: Double?
    }

    /// What the report states, measured once: op types by total time, the copy rate, the
    /// shape rows slowest first (with their sgemm rates), and the convolutions below 80%.
    struct Measured {
        let totalMS: Double
        let byOp: [(op: String, ms: Double)]
        let copyRate: Double
        let rows: [ShapeRow]
        let below: [String]
    }

    func measure() -> Measured {
        let total = times.reduce(0, +)
        var byOp: [String: Double] = [:]
        for (i, s) in plan.steps.enumerated() { byOp[s.op, default: 0] += times[i] }
        let copyRate = PerOpReport.copyRate()
        var rows: [String: ShapeRow] = [:]
        let nodes = Dictionary(graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (i, s) in plan.steps.enumerated() {
            guard let node = nodes[s.node], let key = describe(node) else { continue }
            var r = rows[key.label] ?? ShapeRow(label: key.label, memoryBound: key.memoryBound, gemm: key.gemm)
            r.ms += times[i] / Double(runs); r.bestMS += best[i]; r.flops += key.flops; r.bytes += key.bytes; r.count += 1
            rows[key.label] = r
        }
        var sgemm: [GEMMShape: Double] = [:]
        var below: [String] = []
        var sorted = rows.values.sorted { $0.ms > $1.ms }
        for i in sorted.indices where !sorted[i].memoryBound && sorted[i].flops > 0 {
            guard let g = sorted[i].gemm, g.floats * 4 <= PerOpReport.maxSGEMMBytes else { continue }
            let peak = sgemm[g] ?? g.sgemmRate(threads: blasThreads())
            sgemm[g] = peak
            sorted[i].sgemmRate = peak
            if 100 * sorted[i].flops / (sorted[i].bestMS / 1000) / 1e9 / peak < 80 { below.append(sorted[i].label) }
        }
        return Measured(totalMS: total, byOp: byOp.sorted { $0.value > $1.value }.map { ($0.key, $0.value) },
                        copyRate: copyRate, rows: sorted, below: below)
    }

    func print() {
        let m = measure()
        Swift.print("time per op type (share of \(String(format: "%.1f", m.totalMS / Double(runs))) ms/run):")
        for (op, t) in m.byOp {
            Swift.print("  " + op.padding(toLength: max(op.count, 24), withPad: " ", startingAt: 0)
                        + String(format: " %9.3f ms  %5.1f%%", t / Double(runs), 100 * t / m.totalMS))
        }
        Swift.print(String(format: "per shape (memory copy: %.1f GB/s read+write, 2 threads; sgemm: a bare gemm of the convolution's [M, K] x [K, N] per group, OpenBLAS on %d threads, best run of each):",
                           m.copyRate, blasThreads()))
        for r in m.rows {
            let seconds = r.ms / 1000
            var rate = r.flops > 0 ? String(format: "%6.1f GFLOP/s  ", r.flops / seconds / 1e9) : ""
            if r.memoryBound {
                rate += String(format: "%6.1f GB/s (%3.0f%% of copy)", r.bytes / seconds / 1e9, 100 * r.bytes / seconds / 1e9 / m.copyRate)
            } else if let g = r.gemm, r.flops > 0 {
                if let peak = r.sgemmRate {
                    let conv = r.flops / (r.bestMS / 1000) / 1e9, percent = 100 * conv / peak
                    rate += String(format: "best %6.1f vs sgemm %6.1f GFLOP/s (%3.0f%% of sgemm) %@", conv, peak, percent, g.label)
                } else {
                    rate += "sgemm \(g.label): operands over 2 GB, not timed"
                }
            }
            Swift.print("  " + r.label.padding(toLength: max(r.label.count, 58), withPad: " ", startingAt: 0)
                        + String(format: " x%-3d %8.3f ms  ", r.count, r.ms) + rate)
        }
        if let s = summary(m) {
            Swift.print(String(format: "convolutions vs sgemm: %d of %d shapes below 80%%; together %.3f ms in their best runs where sgemm takes %.3f ms (%.0f%% of its rate)",
                               s.below, s.rated, s.convMS, s.sgemmMS, 100 * s.sgemmMS / s.convMS))
        }
    }

    /// The closing comparison over every convolution rated against sgemm; nil when none was.
    private func summary(_ m: Measured) -> (below: Int, rated: Int, convMS: Double, sgemmMS: Double)? {
        let rated = m.rows.filter { $0.sgemmRate != nil }
        guard !rated.isEmpty else { return nil }
        let convMS = rated.reduce(0) { $0 + $1.bestMS }
        let sgemmMS = rated.reduce(0) { $0 + $1.flops / $1.sgemmRate! / 1e6 }
        return (m.below.count, rated.count, convMS, sgemmMS)
    }

    /// The report as a JSON object (what `print` shows, unrounded): `ops` (op type, ms per
    /// run, share), `copy_gb_per_s`, `shapes` (slowest first; convolutions with
    /// `best_gflop_per_s`, `sgemm_gflop_per_s`, `percent_of_sgemm`; memory-bound rows with
    /// `gb_per_s`, `percent_of_copy`) and `sgemm_summary` (nil when no convolution was rated).
    func jsonObject() -> [String: Any] {
        let m = measure()
        let ops: [[String: Any]] = m.byOp.map {
            ["op": $0.op, "ms_per_run": $0.ms / Double(runs), "share": m.totalMS > 0 ? $0.ms / m.totalMS : 0]
        }
        let shapes: [[String: Any]] = m.rows.map { r in
            var o: [String: Any] = ["label": r.label, "count": r.count, "ms": r.ms, "best_ms": r.bestMS,
                                    "flops": r.flops, "bytes": r.bytes, "memory_bound": r.memoryBound]
            if r.flops > 0 { o["gflop_per_s"] = r.flops / (r.ms / 1000) / 1e9 }
            if r.memoryBound {
                let rate = r.bytes / (r.ms / 1000) / 1e9
                o["gb_per_s"] = rate
                o["percent_of_copy"] = 100 * rate / m.copyRate
            }
            if let g = r.gemm { o["gemm"] = g.label }
            if let peak = r.sgemmRate {
                let conv = r.flops / (r.bestMS / 1000) / 1e9
                o["best_gflop_per_s"] = conv
                o["sgemm_gflop_per_s"] = peak
                o["percent_of_sgemm"] = 100 * conv / peak
            }
            return o
        }
        var out: [String: Any] = ["ops": ops, "copy_gb_per_s": m.copyRate, "blas_threads": blasThreads(),
                                  "ms_per_run": m.totalMS / Double(runs), "shapes": shapes]
        if let s = summary(m) {
            out["sgemm_summary"] = ["below_80_percent": s.below, "rated": s.rated, "conv_best_ms": s.convMS,
                                    "sgemm_ms": s.sgemmMS, "percent_of_sgemm": 100 * s.sgemmMS / s.convMS,
                                    "shapes_below": m.below] as [String: Any]
        }
        return out
    }

    /// Operands larger than this are not allocated for the sgemm comparison.
    static let maxSGEMMBytes = 2 << 30

    /// A label, work and traffic for the steps worth rating (nil for the rest).
    private func describe(_ node: Node) -> (label: String, flops: Double, bytes: Double, memoryBound: Bool, gemm: GEMMShape?)? {
        func shape(_ i: Int) -> [Int]? {
            i < node.inputs.count && !node.inputs[i].isEmpty ? plan.values[node.inputs[i]]?.shape : nil
        }
        guard let x = shape(0), let out = node.outputs.first.flatMap({ plan.values[$0]?.shape }) else { return nil }
        let inBytes = Double(x.reduce(1, *) * 4), outBytes = Double(out.reduce(1, *) * 4)
        let dims = { (s: [Int]) in s.map(String.init).joined(separator: "x") }
        switch node.op {
        case .conv(let p):
            guard let w = shape(1), w.count == x.count, out.count >= 3 else { return nil }
            let kernel = w[2...].map(String.init).joined(separator: "x")
            let stride = p.strides.first ?? 1
            let depthwise = w[1] == 1 && p.group > 1
            let flops = 2 * Double(out.reduce(1, *)) * Double(w[1...].reduce(1, *))
            let kind = depthwise ? "dw" : (p.group > 1 ? "g\(p.group)" : "")
            let label = "\(node.sourceOp) \(kind)\(kernel)/s\(stride) \(x[1])->\(out[1]) \(dims(Array(x[2...])))->\(dims(Array(out[2...])))"
            let residual = node.inputs.count > 3 ? outBytes : 0
            let gemm = GEMMShape(m: w[0] / p.group, n: out[0] * out[2...].reduce(1, *), k: w[1...].reduce(1, *), groups: p.group)
            return (label, flops, inBytes + outBytes + residual, depthwise, depthwise ? nil : gemm)
        case .pool, .globalPool:
            return ("\(node.sourceOp) \(dims(x))", 0, inBytes + outBytes, true, nil)
        case .unary, .binary, .clip, .variadic:
            let extra = (1..<node.inputs.count).compactMap(shape).map { Double($0.reduce(1, *) * 4) }.reduce(0, +)
            return ("\(node.sourceOp) \(dims(out))", 0, inBytes + extra + outBytes, true, nil)
        default:
            return nil
        }
    }

    /// Read plus write bytes per second of a 2 x 16 MB copy on two threads, best of five.
    static func copyRate() -> Double {
        let count = 1 << 22
        let a = UnsafeMutablePointer<Float>.allocate(capacity: 2 * count)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: 2 * count)
        defer { a.deallocate(); b.deallocate() }
        // Addresses cross into the concurrent closure as integers (pointers are not Sendable).
        let src = Int(bitPattern: a), dst = Int(bitPattern: b)
        a.initialize(repeating: 1, count: 2 * count)
        b.initialize(repeating: 0, count: 2 * count)
        var best = Double.infinity
        for _ in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let from = UnsafePointer<Float>(bitPattern: src)! + i * count
                (UnsafeMutablePointer<Float>(bitPattern: dst)! + i * count).update(from: from, count: count)
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return Double(2 * count * 4 * 2) / best / 1e9
    }
}
