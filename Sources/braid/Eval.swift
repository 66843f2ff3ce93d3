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
    var split: String?
    @Option(name: .long) var manifest: String?
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .long, help: "Skip images that fail to decode (each is reported with its path) instead of stopping.")
    var skipCorrupt = false

    func run() {
        reportingErrors {
            let record = try RunRecord.load(runDir: runDir)
            let models = try record.buildModels(manifest: try loadManifest(path: manifest))
            let ck = try Checkpoint.load(from: runDir + "/checkpoint.bin")
            for (j, m) in models.enumerated() {
                for (name, t) in m.graph.initializers where t.dtype.isFloat {
                    guard let saved = ck.tensors["m\(j)/\(name)"], saved.shape == t.shape else {
                        throw TrainingError("\(runDir)/checkpoint.bin: parameter '\(name)' of member \(j) missing or of another shape")
                    }
                    t.buffer.raw.copyMemory(from: saved.buffer.raw, byteCount: t.count * 4)
                }
            }
            let name = data ?? record.data
            let opened = try DataCatalog.open(name, onCorrupt: skipCorrupt ? .skip : .fail)
            guard opened.classes.count == record.classes.count else {
                throw TrainingError("\(name) has \(opened.classes.count) classes, the run was trained on \(record.classes.count)")
            }
            let which = split ?? (data == nil ? "test" : "all")
            let o = record.options
            let set: any ImageDataset
            if which == "all", let whole = opened.whole {
                set = whole
            } else {
                let s = try opened.splits(validationFraction: o.valFraction, testFraction: o.testFraction, seed: o.seed)
                switch which {
                case "test", "all": set = s.test
                case "validation": set = s.validation
                case "train": set = s.train
                default: throw ValidationError("--split is test, validation, train or all")
                }
            }
            let members = models.map { (graph: $0.graph, inputName: $0.inputName, spec: $0.spec) }
            let e = try evaluate(members: members, on: set, batchSize: o.batch, classes: record.classes.count,
                                 softmaxVote: o.vote == .softmax)
            if json {
                let obj: [String: Any] = ["accuracy": e.accuracy, "correct": e.correct, "total": e.total,
                                          "confusion": e.confusion, "classes": record.classes, "split": which]
                print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print(String(format: "%@ (%@): accuracy %.2f%% (%d/%d)", name, which, e.accuracy * 100, e.correct, e.total))
                print(e.table(classes: record.classes), terminator: "")
            }
        }
    }
}
