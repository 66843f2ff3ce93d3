import ArgumentParser
import BraidRuntime
import Foundation

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on .npy inputs (writing .npy outputs), or an exported ensemble on images.",
        discussion: """
        Examples:
          braid run model.onnx --input x.npy --output y.npy
          braid run ensemble.onnx --image a.png --image b.jpg --top 3
          braid run ensemble.onnx --image photos/ --batch 64 --json
          braid run resnet18.onnx --image cat.jpg --preprocess imagenet
        """)

    @Argument(help: "Model file (.onnx, .h5, .hdf5, .keras).") var model: String
    @Option(name: .long, help: "[NAME=]FILE.npy; unnamed inputs bind in the model's input order.")
    var input: [String] = []
    @Option(name: .long, help: "Write the first output to this .npy file.") var output: String?
    @Option(name: .long, help: "Write every output as output_0.npy, output_1.npy, ... in this folder.")
    var outputDir: String?
    @Option(name: .long, help: "A PNG, JPEG or .npy ([C,H,W] in 0..255) image, or a folder of them (repeatable): a model from `braid export RUN_DIR`, or any classifier with --preprocess (or its metadata or manifest entry).")
    var image: [String] = []
    @Option(name: .long, help: "How many classes to show per image.") var top = 3
    @Option(name: .long, help: "Images per run of the model.") var batch = 32
    @Flag(name: .long, help: "Print the image results as JSON.") var json = false
    @Option(name: .long, help: "Fail before running if the plan needs more memory than this (512M, 2G).") var maxMemory: String?
    @Option(name: .long, help: "--image on a plain classifier: Models/manifest to read its preprocessing from.") var manifest: String?
    @Option(name: .long, help: "--image on a plain classifier: HEIGHTxWIDTH to feed (for symbolic spatial dims).") var inputSize: String?
    @OptionGroup(title: "Preprocessing for --image on a plain classifier (overrides its metadata and Models/manifest)")
    var pre: PreprocessOptions

    func validate() throws {
        if !image.isEmpty {
            if !input.isEmpty { throw ValidationError("give --image or --input, not both") }
            if top < 1 { throw ValidationError("--top must be at least 1") }
            if batch < 1 { throw ValidationError("--batch must be at least 1") }
            return
        }
        if input.isEmpty { throw ValidationError("give at least one --input (or --image)") }
        if output == nil && outputDir == nil { throw ValidationError("give --output FILE.npy or --output-dir DIR") }
    }

    func run() {
        if !image.isEmpty {
            // A Braid ensemble carries its preprocessing; any other classifier takes it from
            // the preprocessing flags (over its metadata and Models/manifest).
            if pre.isEmpty && inputSize == nil { return classifyImages() }
            return reportingErrors { try classifyWithPreprocessing(graph: try ModelFile.load(path: model)) }
        }
        let loaded = reportingErrors { try Model(contentsOf: model) }
        let args: [(name: String?, value: String)] = input.map { s in
            if let eq = s.firstIndex(of: "="), !s[s.index(after: eq)...].isEmpty, !s[..<eq].contains("/") {
                return (String(s[..<eq]), String(s[s.index(after: eq)...]))
            }
            return (nil, s)
        }
        let bound = reportingErrors { try bindArguments(args, graph: loaded.graph) }
        let feeds = reportingErrors { try bound.mapValues { try Npy.read(path: $0) } }
        loaded.memoryLimit = reportingErrors { try memoryLimit(maxMemory) }
        let outputs = reportingErrors { try loaded.run(feeds) }
        let names = loaded.outputs.map(\.name)
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

    /// Top classes of every image; results print batch by batch, with a progress line on
    /// standard error when there is more than one batch.
    func classifyImages() {
        reportingErrors {
            let classifier: EnsembleClassifier
            do {
                classifier = try EnsembleClassifier(path: model)
            } catch let e as MissingEnsembleMetadata {
                throw ValidationError("\(e.path): no preprocessing metadata for --image (missing \(e.missing.joined(separator: ", "))); export the model from a run directory (`braid export RUN_DIR --format onnx|h5`), give its preprocessing with --preprocess (or --range, --mean, --std), or feed prepared tensors with `--input x.npy --output y.npy`")
            }
            let files = try imageFiles(image)
            if let limit = try memoryLimit(maxMemory) {
                try classifier.checkMemory(images: files.count, batch: batch, limit: limit)
            }
            var results: [[String: Any]] = []
            var progress = files.count > batch ? ImageProgress(total: files.count) : nil
            for from in stride(from: 0, to: files.count, by: batch) {
                let chunk = Array(files[from..<min(from + batch, files.count)])
                let tops = try classifier.classify(try classifier.load(chunk), top: top)
                for (path, best) in zip(chunk, tops) {
                    if json {
                        results.append(["image": path, "top": best.map { ["class": $0.label, "probability": Double($0.probability)] }])
                    } else {
                        print(path + ": " + best.map { String(format: "%@ %.4f", $0.label as NSString, $0.probability) }
                            .joined(separator: ", "))
                    }
                }
                progress?.update(done: from + chunk.count)
            }
            if json {
                let obj: [String: Any] = ["model": model, "classes": classifier.info.classes, "results": results]
                print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
            }
        }
    }
}

/// A progress bar on standard error for classifying many images: redrawn in place on a
/// terminal, otherwise one line every few seconds and a last one at the end.
struct ImageProgress {
    let total: Int
    let start = Date()
    var lastDraw = Date.distantPast
    let isTTY = isatty(2) != 0

    init(total: Int) { self.total = max(total, 1) }

    mutating func update(done: Int) {
        let now = Date()
        let final = done >= total
        guard final || now.timeIntervalSince(lastDraw) >= (isTTY ? 0.2 : 5) else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let width = 24, filled = min(width, width * done / total)
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "")
            + String(repeating: " ", count: max(0, width - filled - 1))
        let seconds = Int((final ? elapsed : eta).rounded())
        let text = String(format: "[%@] %d/%d images %.0f img/s %@ %d:%02d", bar as NSString, done, total, rate,
                          (final ? "took" : "ETA") as NSString, seconds / 60, seconds % 60)
        FileHandle.standardError.write(Data((isTTY ? "\r" + text + (final ? "\n" : "") : text + "\n").utf8))
    }
}
