import ArgumentParser
import BraidGraph
import BraidKernels
import BraidTensor
import BraidTraining
import BraidTransfer
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time a model on random inputs: median, min and max latency and throughput.")

    @Argument(help: "Model file (.onnx).") var model: String
    @Option(name: .long, help: "[NAME=]D1xD2x...; inputs without a shape use the model's fixed dims.")
    var shape: [String] = []
    @Option(name: .long, help: "Timed runs.") var runs = 20
    @Option(name: .long, help: "Untimed runs first.") var warmup = 3
    @Flag(name: .long, help: "Print time per op type and per convolution shape (GFLOP/s, GB/s), slowest first.")
    var perOp = false
    @Flag(name: .long, help: "Run the graph without fusing convolution epilogues (to compare).")
    var noFusion = false
    @Flag(help: "Print JSON (one object; with --per-op the report is its \"per_op\" member).") var json = false
    @Flag(name: .long, help: "Time a training step (forward, backward, SGD update) with a new head instead.")
    var train = false
    @Option(name: .long, help: "With --train: classes of the new head.") var classes = 10
    @Option(name: .long, help: "With --train: fraction of layer units (the last ones) that train.")
    var trainFraction = 1.0
    @Option(name: .long, help: "Fail before running if the plan needs more memory than this (512M, 2G).") var maxMemory: String?

    func run() {
        if train { return runTrain() }
        let loaded = reportingErrors { try ModelFile.load(path: model) }
        let graph = reportingErrors {
            noFusion ? try Passes.optimizeForInference(loaded) : try Passes.optimizeForExecution(loaded)
        }
        let parsed = reportingErrors { try shape.map(parseShapeArg) }
        let bound = reportingErrors { try bindArguments(parsed.map { (name: $0.name, value: $0.shape) }, graph: graph) }
        var feeds: [String: Tensor] = [:]
        // A fixed-seed generator: the system one costs a system call per number, which made
        // setting up a batch-32 image input take longer than the timed runs.
        var rng = SplitMix64(seed: 0x5EED)
        for d in graph.feedInputs {
            let dims: [Int]
            if let s = bound[d.name] { dims = s } else if let decl = d.shape, decl.allSatisfy({ $0.value != nil }) {
                dims = decl.map { $0.value! }
            } else {
                fail("input '\(d.name)' has symbolic dims [\(d.shape?.map(\.description).joined(separator: ", ") ?? "?")]: give --shape \(d.name)=...")
            }
            let t = Tensor(zeros: dims, dtype: d.dtype)
            if d.dtype.isFloat { for i in 0..<t.count { t.floats[i] = Float.random(in: -1...1, using: &rng) } }
            feeds[d.name] = t
        }
        let executor = Executor(graph: graph)
        executor.memoryLimit = reportingErrors { try memoryLimit(maxMemory) }
        let plan = reportingErrors { try executor.plan(for: feeds.mapValues { ($0.shape, $0.dtype) }) }
        for (name, slot) in plan.inputs {
            slot.buffer.raw.copyMemory(from: feeds[name]!.buffer.raw, byteCount: slot.count * slot.dtype.storageStride)
        }
        for _ in 0..<warmup { plan.execute() }
        var times: [Double] = []
        var perOpTime = [Double](repeating: 0, count: plan.steps.count)
        var perOpBest = [Double](repeating: .infinity, count: plan.steps.count)
        for _ in 0..<max(runs, 1) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            if perOp {
                for (i, s) in plan.steps.enumerated() {
                    let a = DispatchTime.now().uptimeNanoseconds
                    s.run()
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - a) / 1e6
                    perOpTime[i] += ms
                    perOpBest[i] = min(perOpBest[i], ms)
                }
            } else {
                plan.execute()
            }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        times.sort()
        let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        // The first input in the model's order: a dictionary's first entry could be any of them.
        let batch = graph.feedInputs.first.flatMap { feeds[$0.name]?.shape.first } ?? 1
        let throughput = Double(batch) / (median / 1000)
        if json {
            var obj: [String: Any] = ["model": model, "median_ms": median, "min_ms": times.first!,
                                      "max_ms": times.last!, "runs": times.count, "batch": batch,
                                      "items_per_s": throughput, "planned_bytes": plan.plannedBytes,
                                      "kernels": KernelISA.active.description, "threads": KernelThreads.count]
            if perOp {
                obj["per_op"] = PerOpReport(graph: graph, plan: plan, times: perOpTime, best: perOpBest,
                                            runs: times.count).jsonObject()
            }
            let data = try! JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(model + String(format: ": median %.3f ms, min %.3f ms, max %.3f ms over %d runs; %.1f items/s (batch %d)",
                                 median, times.first!, times.last!, times.count, throughput, batch)
                  + "; kernels \(KernelISA.active), \(KernelThreads.count) threads")
        }
        if perOp && !json { PerOpReport(graph: graph, plan: plan, times: perOpTime, best: perOpBest, runs: times.count).print() }
    }

    func runTrain() {
        let graph = reportingErrors { try ModelFile.load(path: model) }
        let parsed = reportingErrors { try shape.map(parseShapeArg) }
        guard let dims = parsed.first?.shape else { fail("--train needs --shape, e.g. --shape 32x3x48x192") }
        let bench = reportingErrors {
            try TrainStep(graph: graph, inputShape: dims, classes: classes, trainFraction: trainFraction,
                          maxMemory: memoryLimit(maxMemory))
        }
        let firstLoss = bench.step()
        for _ in 1..<max(warmup, 1) { bench.step() }
        var times: [Double] = []
        var lastLoss = firstLoss
        for _ in 0..<max(runs, 1) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            lastLoss = bench.step()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        times.sort()
        let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let peakMB = Double(usage.ru_maxrss) / 1024
        if json {
            let obj: [String: Any] = ["model": model, "median_ms": median, "min_ms": times.first!, "max_ms": times.last!,
                                      "runs": times.count, "units": bench.units, "frozen_units": bench.frozenDepth,
                                      "trainable_parameters": bench.trainableParameters, "peak_rss_mb": peakMB,
                                      "first_loss": Double(firstLoss), "last_loss": Double(lastLoss),
                                      "kernels": KernelISA.active.description, "threads": KernelThreads.count]
            print(String(decoding: try! JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(model + String(format: ": training step median %.2f ms (min %.2f, max %.2f) over %d runs; %d of %d layer units train (%d parameters); peak RSS %.0f MB",
                                 median, times.first!, times.last!, times.count, bench.units - bench.frozenDepth,
                                 bench.units, bench.trainableParameters, peakMB) + "; kernels \(KernelISA.active), \(KernelThreads.count) threads")
        }
    }
}

