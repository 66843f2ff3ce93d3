import ArgumentParser
import BraidGraph
import BraidTensor
import Foundation

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on .npy inputs and write its outputs as .npy.")

    @Argument(help: "Model file (.onnx).") var model: String
    @Option(name: .long, help: "[NAME=]FILE.npy; unnamed inputs bind in the model's input order.")
    var input: [String] = []
    @Option(name: .long, help: "Write the first output to this .npy file.") var output: String?
    @Option(name: .long, help: "Write every output as output_0.npy, output_1.npy, ... in this folder.")
    var outputDir: String?

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input") }
        if output == nil && outputDir == nil { throw ValidationError("give --output FILE.npy or --output-dir DIR") }
    }

    func run() {
        let graph = reportingErrors { try loadModel(model) }
        let args: [(name: String?, value: String)] = input.map { s in
            if let eq = s.firstIndex(of: "="), !s[s.index(after: eq)...].isEmpty, !s[..<eq].contains("/") {
                return (String(s[..<eq]), String(s[s.index(after: eq)...]))
            }
            return (nil, s)
        }
        let bound = reportingErrors { try bindArguments(args, graph: graph) }
        let feeds = reportingErrors { try bound.mapValues { try Npy.read(path: $0) } }
        let executor = Executor(graph: graph)
        let outputs = reportingErrors { try executor.run(feeds) }
        let names = graph.outputs.map(\.name)
        if let output {
            reportingErrors { try Npy.write(outputs[names[0]]!, path: output) }
            print("\(names[0]) -> \(output)  \(outputs[names[0]]!.shape)")
        }
        if let outputDir {
            reportingErrors { try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true) }
            for (i, name) in names.enumerated() {
                let path = (outputDir as NSString).appendingPathComponent("output_\(i).npy")
                reportingErrors { try Npy.write(outputs[name]!, path: path) }
                print("\(name) -> \(path)  \(outputs[name]!.shape)")
            }
        }
    }
}
