import ArgumentParser
import BraidTensor
import BraidTransfer
import Foundation

struct Steps: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model for a few SGD steps on given batches and report each step's loss.",
        discussion: """
        Nothing is random: the images are taken in order, BATCH at a time, already preprocessed as
        the model's input. The model keeps its own classifier as the head, so it must end in a dense
        layer with as many outputs as the labels have classes. Use it to check that Braid trains a
        model as another framework does (tools/train-parity), or that a model trains at all.

        Example:
          braid steps model.onnx --images x.npy --labels y.npy --batch 8 --lr 0.01 --out steps/
        """)

    @Argument(help: "A model (.onnx, .h5, .keras) ending in a dense classifier.") var model: String
    @Option(name: .long, help: "Images [S*B, ...] as the model's input (.npy, float32).") var images: String
    @Option(name: .long, help: "Labels [S*B] (.npy, integers).") var labels: String
    @Option(name: .long, help: "Number of classes (default: the classifier's outputs).")
    var classes: Int?
    @Option(name: .long) var batch: Int
    @Option(name: .long) var lr: Float = 0.01
    @Option(name: .long) var momentum: Float = 0.9
    @Option(name: .long) var weightDecay: Float = 5e-4
    @Option(name: .long, help: "Layer units frozen from the input side.") var freeze = 0
    @Option(name: .long, help: "Directory for losses.json and the trained parameters (params/*.npy, index in losses.json).")
    var out: String?
    @Flag(help: "Print JSON.") var json = false

    func run() {
        reportingErrors {
            let x = try Npy.read(path: images)
            let y = try Npy.read(path: labels)
            let ys = (0..<y.count).map { Int(y.int(at: $0)) }
            var settings = StepRun.Settings()
            settings.lr = lr; settings.momentum = momentum; settings.weightDecay = weightDecay
            settings.freezeDepth = freeze
            let result = try StepRun.run(path: model, classes: classes, images: x, labels: ys, batch: batch, settings: settings) { s, loss in
                if !json { print(String(format: "step %3d  loss %.6f", s, loss)) }
            }
            if let out { try result.write(to: out) }
            if json {
                let obj: [String: Any] = ["losses": result.losses.map { Double($0) }]
                print(String(decoding: try JSONSerialization.data(withJSONObject: obj), as: UTF8.self))
            }
        }
    }
}
