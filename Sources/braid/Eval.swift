import ArgumentParser
import BraidData
import BraidTraining
import BraidTransfer
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy and confusion matrix of a fine-tuned run on a dataset.",
        discussion: "Example: braid eval runs/cls --data mnist-5k")

    @Argument(help: "A run directory written by `braid finetune`.") var runDir: String
    @Option(name: .long, help: "Dataset (default: the run's own).") var data: String?
    @Option(name: .long, help: "test | validation | train | all (default test; `all` when --data is another dataset).")
    var split: EvaluationSplit?
    @Option(name: .long) var manifest: String?
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .long, help: "Skip images that fail to decode (each is reported with its path) instead of stopping.")
    var skipCorrupt = false

    func run() {
        reportingErrors {
            let trained = try TrainedRun.load(runDir: runDir, manifest: try loadManifest(path: manifest))
            let name = data ?? trained.record.data
            let opened = try DataCatalog.open(name, onCorrupt: skipCorrupt ? .skip : .fail)
            for (path, reason) in opened.skipped { FileHandle.standardError.write(Data("braid: warning: skipping \(path): \(reason)\n".utf8)) }
            let which = split ?? (data == nil ? .test : .all)
            let e = try trained.evaluate(on: try trained.images(of: opened, split: which))
            let record = trained.record
            if json {
                let obj: [String: Any] = ["accuracy": e.accuracy, "correct": e.correct, "total": e.total,
                                          "confusion": e.confusion, "classes": record.classes, "split": which.rawValue]
                print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print(String(format: "%@ (%@): accuracy %.2f%% (%d/%d)", name, which.rawValue, e.accuracy * 100, e.correct, e.total))
                print(e.table(classes: record.classes), terminator: "")
            }
        }
    }
}

extension EvaluationSplit: ExpressibleByArgument {}
