import BraidData
import BraidGraph
import BraidTensor
import Foundation

/// Accuracy and confusion matrix of a classifier on a dataset.
public struct Evaluation: Sendable {
    public var correct: Int
    public var total: Int
    /// `confusion[true][predicted]`.
    public var confusion: [[Int]]

    public var accuracy: Double { total == 0 ? 0 : Double(correct) / Double(total) }

    public init(classes: Int) {
        correct = 0; total = 0
        confusion = Array(repeating: Array(repeating: 0, count: classes), count: classes)
    }

    mutating func add(predicted: Int, label: Int) {
        total += 1
        if predicted == label { correct += 1 }
        confusion[label][predicted] += 1
    }

    /// The matrix as aligned text, rows true classes, columns predictions.
    public func table(classes: [String]) -> String {
        let w = max(5, classes.map(\.count).max() ?? 1, String(confusion.flatMap { $0 }.max() ?? 0).count + 1)
        func pad(_ s: String) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        var out = pad("true\\pred") + classes.map(pad).joined() + "\n"
        for (i, row) in confusion.enumerated() {
            out += pad(classes[i]) + row.map { pad(String($0)) }.joined() + "\n"
        }
        return out
    }
}

/// Runs inference-mode graphs over a dataset in batches; the ensemble predicts the argmax of
/// the members' summed logits, or with `softmaxVote` of their summed probabilities.
///
/// A fresh plan is made for each call, so parameter values updated in place by training are
/// read as they are now.
public func evaluate(members: [(graph: Graph, inputName: String, spec: InputSpec)], on data: any ImageDataset,
                     batchSize: Int, classes: Int, seed: UInt64 = 0, softmaxVote: Bool = false) throws -> Evaluation {
    var result = Evaluation(classes: classes)
    let loader = try BatchLoader(dataset: data, specs: members.map(\.spec), batchSize: batchSize,
                                 shuffle: false, dropLast: false, seed: seed)
    let executors = members.map { Executor(graph: $0.graph) }
    let it = loader.epoch(0)
    let sum = UnsafeMutablePointer<Float>.allocate(capacity: batchSize * classes)
    defer { sum.deallocate() }
    while let batch = try it.next() {
        let n = batch.labels.count
        sum.update(repeating: 0, count: n * classes)
        for (j, m) in members.enumerated() {
            let out = try executors[j].run([m.inputName: batch.inputs[j]])
            guard let logits = out["logits"] else { throw GraphError(node: nil, "member has no 'logits' output") }
            for r in 0..<n {
                addVote(logits.floats + r * classes, classes, into: sum + r * classes,
                        softmax: softmaxVote && members.count > 1)
            }
        }
        for r in 0..<n {
            var best = 0
            for c in 1..<classes where sum[r * classes + c] > sum[r * classes + best] { best = c }
            result.add(predicted: best, label: batch.labels[r])
        }
    }
    return result
}

/// Adds one member's vote for one image to `sum` (`classes` entries): its logits `z`, or with
/// `softmax` their softmax (computed from the largest logit, so no exponential overflows).
@inline(__always)
func addVote(_ z: UnsafePointer<Float>, _ classes: Int, into sum: UnsafeMutablePointer<Float>, softmax: Bool) {
    guard softmax else {
        for c in 0..<classes { sum[c] += z[c] }
        return
    }
    var top = z[0]
    for c in 1..<classes { top = max(top, z[c]) }
    var total: Float = 0
    for c in 0..<classes { total += expf(z[c] - top) }
    for c in 0..<classes { sum[c] += expf(z[c] - top) / total }
}
