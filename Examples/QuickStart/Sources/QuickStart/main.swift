// Loads a pretrained model, runs it, fine-tunes it for one epoch on a small dataset,
// exports the result as ONNX and checks that the exported file predicts as the trained run.
//
//   BRAID_CACHE=/path/to/.cache swift run -c release QuickStart
//
// The cache holds the models and datasets that Braid's tools/fetch-models and
// tools/fetch-data put there. Exits non-zero on any failure.
import BraidRuntime
import BraidTransfer
import Foundation

/// The repository this example lives in (for Models/manifest).
let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let environment = ProcessInfo.processInfo.environment["BRAID_CACHE"] ?? ""
let cache = environment.isEmpty ? repository + "/.cache" : environment

struct CheckFailed: Error, CustomStringConvertible {
    var description: String
}

func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
    if !ok { throw CheckFailed(description: message()) }
}

func main() throws {
    // 1. Load and run: any supported file in (.onnx, .keras, .h5), tensors out.
    let modelPath = cache + "/models/ppocr_cls.onnx"
    let model = try Model(contentsOf: modelPath)
    let input = model.inputs[0]
    print("loaded \(modelPath): input \(input.name) \(input.shape.map { $0.map(\.description) } ?? []), "
          + "outputs \(model.outputs.map(\.name))")
    // Two text-line crops [2, 3, 48, 192] of a smooth pattern, already normalised to about -1...1.
    var pixels = [Float](repeating: 0, count: 2 * 3 * 48 * 192)
    for i in pixels.indices {
        let column = Float(i % 192), plane = Float(i / (48 * 192))
        pixels[i] = sinf(column / 9 + plane)
    }
    let y = try model.run(Tensor(shape: [2, 3, 48, 192], floats: pixels))
    let scores: [Float] = y.floatArray
    try check(y.shape == [2, 2], "expected output [2, 2], got \(y.shape)")
    try check(scores.allSatisfy { $0.isFinite }, "the output holds NaN or infinity: \(scores)")
    print("ran it: output \(y.shape) = \(scores.map { String(format: "%.4f", $0) })")

    // 2. Fine-tune it for one epoch on scikit-learn's 8x8 digits (fed at the model's 48x192).
    let runDir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-quickstart-\(getpid())").path
    defer { try? FileManager.default.removeItem(atPath: runDir) }
    let manifest = try loadManifest(path: repository + "/Models/manifest")
    var setup = FinetuneSetup(sources: [modelPath], data: "digits")
    setup.options.method = .standard
    setup.options.epochs = 1
    setup.options.batch = 32
    setup.options.lr = 0.01
    let run = try FinetuneRun(setup, runDir: runDir, manifest: manifest)
    run.events = { event in
        switch event {
        case .summary(let line), .note(let line): print(line)
        case .warning(let line): print("warning: \(line)")
        case .progress(let p) where p.final:
            print(String(format: "%@: %d batches, loss %.4f, train accuracy %.1f%%", p.phase, p.done, p.loss, p.accuracy * 100))
        case .progress: break
        }
    }
    let result = try run.run()
    let loss = result.history.last?.trainLoss ?? .nan
    try check(loss.isFinite, "the training loss is \(loss)")
    print(String(format: "test accuracy after one epoch: %.2f%% (%d/%d)", result.test.accuracy * 100,
                 result.test.correct, result.test.total))

    // 3. Export the fine-tuned model as one ONNX file that takes 0...255 images.
    let trained = try TrainedRun.load(runDir: runDir, manifest: manifest)
    let exported = runDir + "/digits.onnx"
    try trained.export(to: exported)
    print("exported \(exported)")

    // 4. The exported file, run on the test split, must predict as the trained run does.
    let classifier = try EnsembleClassifier(path: exported)
    let test = try trained.images(of: try DataCatalog.open("digits"), split: .test)
    let (c, h, w) = (classifier.info.image.channels, classifier.info.image.height, classifier.info.image.width)
    var correct = 0
    for start in stride(from: 0, to: test.count, by: 64) {
        let n = min(64, test.count - start)
        let batch = Tensor(zeros: [n, c, h, w])
        for i in 0..<n {
            let image = try test.image(start + i)
            (batch.floats + i * c * h * w).update(from: image.floats, count: c * h * w)
        }
        let top = try classifier.classify(batch, top: 1)
        for i in 0..<n where top[i][0].label == classifier.info.classes[test.label(start + i)] { correct += 1 }
    }
    let accuracy = Double(correct) / Double(test.count)
    print(String(format: "exported model on the test split: %.2f%% (%d/%d)", accuracy * 100, correct, test.count))
    try check(test.count == result.test.total, "the test split has \(test.count) images, the run tested \(result.test.total)")
    try check(abs(accuracy - result.test.accuracy) <= 0.02,
              "the exported model's accuracy \(accuracy) differs from the run's \(result.test.accuracy) by more than 2 points")
}

do {
    try main()
    print("QuickStart: OK")
} catch {
    FileHandle.standardError.write(Data("QuickStart: error: \(error)\n".utf8))
    exit(1)
}
