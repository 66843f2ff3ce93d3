import XCTest
import BraidGraph
import BraidTensor
@testable import BraidTraining

/// The new head must be the only producer of `logits`, whatever the source called its values.
final class HeadReplacementTests: XCTestCase {
    /// x [N, 4] -> Conv-free backbone: Gemm(4 -> 6) -> Relu -> classifier Gemm(6 -> 5) named `output`.
    func source(outputName: String) -> Graph {
        var rng = SplitMix64(seed: 3)
        func t(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-1, 1) }) }
        return Graph(name: "s", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4)])],
                     outputs: [ValueDecl(name: outputName, dtype: .float32, shape: nil)],
                     initializers: ["w1": t([6, 4]), "b1": t([6]), "w2": t([5, 6]), "b2": t([5])],
                     nodes: [Node(name: "fc1", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1),
                                  inputs: ["x", "w1", "b1"], outputs: ["h"], sourceOp: "Gemm"),
                             Node(name: "relu", op: .unary(.relu), inputs: ["h"], outputs: ["r"], sourceOp: "Relu"),
                             Node(name: "fc2", op: .gemm(transA: false, transB: true, alpha: 1, beta: 1),
                                  inputs: ["r", "w2", "b2"], outputs: [outputName], sourceOp: "Gemm")])
    }

    func gradients(_ g: Graph) throws -> (Float, [String: [Float]]) {
        let cut = try g.findFeatureCut()
        let head = g.replacingHead(cut: cut, classes: 3, featureSize: 6, seed: 9)
        XCTAssertEqual(head.nodes.filter { $0.outputs.contains("logits") }.count, 1, "one producer of logits")
        let plan = try TrainingPlan.make(graph: head, output: "logits", trainable: ["w1", "b1", "head.weight"],
                                         feeds: ["x": [2, 4]])
        for i in 0..<8 { plan.inputs[0].tensor.floats[i] = Float(i % 5) * 0.3 - 0.5 }
        plan.forward()
        let loss = softmaxCrossEntropy(logits: plan.output, labels: [0, 2], grad: plan.outputGrad)
        plan.backward()
        return (loss, plan.grads.mapValues(\.floatArray))
    }

    func testSourceOutputNamedLogitsTrainsLikeAnyOtherName() throws {
        let (lossA, a) = try gradients(source(outputName: "output"))
        let (lossB, b) = try gradients(source(outputName: "logits"))
        XCTAssertEqual(lossA, lossB)
        XCTAssertEqual(Set(a.keys), ["w1", "b1", "head.weight"])
        for (name, ga) in a {
            let gb = try XCTUnwrap(b[name], name)
            XCTAssertTrue(ga.contains { $0 != 0 }, "\(name): gradient is all zero")
            XCTAssertEqual(ga, gb, name)
        }
    }

    func testRenamingKeepsOtherNamesAndAvoidsTakenOnes() {
        var g = source(outputName: "logits")
        g.initializers["logits.source"] = Tensor(shape: [1], floats: [0])
        let (r, map) = g.renamingValues(["logits"])
        XCTAssertEqual(map, ["logits": "logits.source2"])
        XCTAssertEqual(r.outputs.map(\.name), ["logits.source2"])
        XCTAssertEqual(r.nodes.last?.outputs, ["logits.source2"])
        XCTAssertEqual(r.nodes.first?.inputs, ["x", "w1", "b1"])
    }

    /// Keras's MobileNetV3 classifier: GlobalAveragePooling(keepdims) -> 1x1 Conv -> HardSwish
    /// -> Dropout -> 1x1 Conv `logits` -> Flatten -> Softmax. The last 1x1 convolution is the
    /// classifier; the new head trains on its input, pooled to [N, C].
    func testOneByOneConvolutionOnPooledFeaturesIsTheClassifier() throws {
        var rng = SplitMix64(seed: 5)
        func t(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-1, 1) }) }
        func conv(_ k: Int) -> Op { .conv(ConvParams(kernel: [k, k], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1)) }
        let g = Graph(name: "m", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(5), .fixed(5)])],
                      outputs: [ValueDecl(name: "probs", dtype: .float32, shape: nil)],
                      initializers: ["w0": t([4, 3, 3, 3]), "w1": t([6, 4, 1, 1]), "w2": t([7, 6, 1, 1]), "b2": t([7])],
                      nodes: [Node(name: "stem", op: conv(3), inputs: ["x", "w0"], outputs: ["s"], sourceOp: "Conv"),
                              Node(name: "gap", op: .globalPool(.average), inputs: ["s"], outputs: ["p"], sourceOp: "GlobalAveragePool"),
                              Node(name: "conv2", op: conv(1), inputs: ["p", "w1"], outputs: ["c"], sourceOp: "Conv"),
                              Node(name: "hs", op: .unary(.hardSwish), inputs: ["c"], outputs: ["h"], sourceOp: "HardSwish"),
                              Node(name: "logits_conv", op: conv(1), inputs: ["h", "w2", "b2"], outputs: ["l"], sourceOp: "Conv"),
                              Node(name: "flat", op: .flatten(axis: 1), inputs: ["l"], outputs: ["f"], sourceOp: "Flatten"),
                              Node(name: "sm", op: .softmax(.softmax, axis: 1, coerce2D: false), inputs: ["f"], outputs: ["probs"], sourceOp: "Softmax")])
        let cut = try g.findFeatureCut()
        XCTAssertEqual(cut.classifier, "logits_conv")
        XCTAssertEqual(cut.feature, "h")
        XCTAssertTrue(cut.needsPooling)
        let head = g.replacingHead(cut: cut, classes: 2, featureSize: 6, seed: 1)
        let plan = try TrainingPlan.make(graph: head, output: "logits", trainable: ["w1", "head.weight"], feeds: ["x": [2, 3, 5, 5]])
        plan.forward()
        XCTAssertEqual(plan.output.shape, [2, 2])
        // A 1x1 convolution that is not on pooled features is not taken for a classifier.
        var spatial = g
        spatial.nodes.remove(at: 1)
        spatial.nodes[1].inputs[0] = "s"
        XCTAssertThrowsError(try spatial.findFeatureCut())
    }

    /// torchvision's SqueezeNet as the dynamo exporter writes it: Conv (classifier) -> ReLU ->
    /// ReduceMean over axes [-1, -2] (a constant input) -> Flatten. The mean is a global
    /// average pooling, so the convolution is the classifier; a mean over the channels is not.
    func testSpatialReduceMeanIsAGlobalPool() throws {
        var rng = SplitMix64(seed: 6)
        func t(_ shape: [Int]) -> Tensor { Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in rng.uniform(-1, 1) }) }
        func conv(_ k: Int) -> Op { .conv(ConvParams(kernel: [k, k], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1)) }
        func graph(axes: [Int64]) -> Graph {
            Graph(name: "m", inputs: [ValueDecl(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(5), .fixed(5)])],
                  outputs: [ValueDecl(name: "f", dtype: .float32, shape: nil)],
                  initializers: ["w0": t([4, 3, 3, 3]), "w1": t([7, 4, 1, 1]), "b1": t([7]),
                                 "axes": Tensor(shape: [axes.count], ints: axes)],
                  nodes: [Node(name: "stem", op: conv(3), inputs: ["x", "w0"], outputs: ["s"], sourceOp: "Conv"),
                          Node(name: "cls", op: conv(1), inputs: ["s", "w1", "b1"], outputs: ["c"], sourceOp: "Conv"),
                          Node(name: "relu", op: .unary(.relu), inputs: ["c"], outputs: ["r"], sourceOp: "Relu"),
                          Node(name: "node_mean", op: .reduce(.mean, axes: nil, keepDims: true, noopWithEmptyAxes: false),
                               inputs: ["r", "axes"], outputs: ["m"], sourceOp: "ReduceMean"),
                          Node(name: "flat", op: .flatten(axis: 1), inputs: ["m"], outputs: ["f"], sourceOp: "Flatten")])
        }
        let g = graph(axes: [-1, -2])
        let cut = try g.findFeatureCut()
        XCTAssertEqual(cut.classifier, "cls")
        XCTAssertEqual(cut.feature, "s")
        XCTAssertTrue(cut.needsPooling)
        let head = g.replacingHead(cut: cut, classes: 2, featureSize: 4, seed: 1)
        let plan = try TrainingPlan.make(graph: head, output: "logits", trainable: ["w0", "head.weight"], feeds: ["x": [2, 3, 5, 5]])
        plan.forward()
        XCTAssertEqual(plan.output.shape, [2, 2])
        XCTAssertThrowsError(try graph(axes: [1]).findFeatureCut())
    }
}
