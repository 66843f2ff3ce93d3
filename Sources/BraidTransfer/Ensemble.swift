import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation

/// One member of an exported ensemble: a graph ending in `[N, K]` logits and the input it
/// expects.
public struct EnsembleMember: Sendable {
    /// The member's output name in the ensemble (usually the source file's stem).
    public var name: String
    public var graph: Graph
    public var inputName: String
    public var spec: InputSpec

    public init(name: String, graph: Graph, inputName: String, spec: InputSpec) {
        self.name = name; self.graph = graph; self.inputName = inputName; self.spec = spec
    }

    public init(_ model: SourceModel) {
        self.init(name: model.name, graph: model.graph, inputName: model.inputName, spec: model.spec)
    }
}

/// Builds one graph that runs every member on one image input and sums their logits.
///
/// Input `image` is `[N, C, H, W]` float32 in 0...255 (`N` symbolic, C/H/W from `image`).
/// Each member's input adaptation (see `InputSpec`) is written as graph ops:
/// - bilinear `Resize` (half-pixel, no antialias) to the member's size, its sizes built from
///   `Shape(image)[0:2]` and the fixed `H, W` so the batch stays symbolic;
/// - channel conversion, RGB-to-BGR order and `(p * scale - mean) / std` as one 1x1
///   convolution with fixed weights `[C_member, C, 1, 1]` and bias: every one of them is a
///   per-pixel affine map of the channels, so their product is one matrix (skipped when it is
///   the identity). It comes after the resize, or before it when the member has fewer
///   channels (the order `InputSpec.write` uses; both orders agree up to rounding because
///   bilinear weights sum to 1);
/// - a `[0, 2, 3, 1]` transpose for NHWC members.
/// Member values, nodes and initializers are renamed `m<j>/<name>`. Outputs: `logits`
/// `[N, K]` and `probabilities` `[N, K]` as `vote` says (one member: its logits and their
/// softmax), then each member's logits `[N, K]` under its name (made unique, never `image`,
/// `logits` or `probabilities`).
public func ensembleGraph(members: [EnsembleMember], classes: [String], image: EnsembleImage,
                          vote: EnsembleVote = .sumOfLogits) throws -> Graph {
    guard !members.isEmpty else { throw TrainingError("an ensemble needs at least one member") }
    guard image.channels == 1 || image.channels == 3, image.height > 0, image.width > 0 else {
        throw TrainingError("ensemble image must have 1 or 3 channels and a positive size, got \(image.channels)x\(image.height)x\(image.width)")
    }
    var nodes: [Node] = []
    var initializers: [String: Tensor] = [:]
    var memberOutputs: [(name: String, value: String)] = []
    var taken: Set<String> = [EnsembleNames.image, EnsembleNames.logits, EnsembleNames.probabilities]

    for (j, m) in members.enumerated() {
        try m.spec.validate()
        let p = "m\(j)/"
        var x = EnsembleNames.image
        let mix = channelMap(m.spec, from: image.channels)
        func applyMix() {
            guard let mix else { return }
            initializers[p + "adapt.weight"] = Tensor(shape: [m.spec.channels, image.channels, 1, 1], floats: mix.weight)
            initializers[p + "adapt.bias"] = Tensor(shape: [m.spec.channels], floats: mix.bias)
            let conv = ConvParams(kernel: [1, 1], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1)
            nodes.append(Node(name: p + "adapt.channels", op: .conv(conv), inputs: [x, p + "adapt.weight", p + "adapt.bias"],
                              outputs: [p + "adapt.mixed"], sourceOp: "Conv"))
            x = p + "adapt.mixed"
        }
        func applyResize() {
            guard (m.spec.height, m.spec.width) != (image.height, image.width) else { return }
            initializers[p + "adapt.hw"] = Tensor(shape: [2], ints: [Int64(m.spec.height), Int64(m.spec.width)])
            nodes.append(Node(name: p + "adapt.shape", op: .shape(start: 0, end: 2), inputs: [x],
                              outputs: [p + "adapt.nc"], sourceOp: "Shape"))
            nodes.append(Node(name: p + "adapt.sizes", op: .concat(axis: 0), inputs: [p + "adapt.nc", p + "adapt.hw"],
                              outputs: [p + "adapt.size"], sourceOp: "Concat"))
            let params = ResizeParams(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor)
            nodes.append(Node(name: p + "adapt.resize", op: .resize(params), inputs: [x, "", "", p + "adapt.size"],
                              outputs: [p + "adapt.resized"], sourceOp: "Resize"))
            x = p + "adapt.resized"
        }
        if m.spec.channels < image.channels {
            applyMix(); applyResize()
        } else {
            applyResize(); applyMix()
        }
        if m.spec.layout == .nhwc {
            nodes.append(Node(name: p + "adapt.nhwc", op: .transpose(perm: [0, 2, 3, 1]), inputs: [x],
                              outputs: [p + "adapt.nhwc"], sourceOp: "Transpose"))
            x = p + "adapt.nhwc"
        }

        let g = m.graph
        guard let out = g.outputs.first(where: { $0.name == "logits" }) ?? g.outputs.first else {
            throw TrainingError("member \(m.name) has no outputs")
        }
        guard g.feedInputs.map(\.name) == [m.inputName] else {
            throw TrainingError("member \(m.name) must have exactly one fed input, '\(m.inputName)' (has \(g.feedInputs.map(\.name)))")
        }
        let input = x
        func rename(_ v: String) -> String { v.isEmpty ? v : v == m.inputName ? input : p + v }
        for (name, t) in g.initializers where name != m.inputName { initializers[p + name] = t }
        for n in g.nodes {
            nodes.append(Node(name: p + n.name, op: n.op, inputs: n.inputs.map(rename), outputs: n.outputs.map(rename),
                              sourceOp: n.sourceOp))
        }
        var name = m.name.isEmpty ? "member\(j)" : m.name
        if taken.contains(name) {
            var k = 1
            while taken.contains("\(name)_\(k)") { k += 1 }
            name = "\(name)_\(k)"
        }
        taken.insert(name)
        memberOutputs.append((name, rename(out.name)))
    }

    let softmax = Op.softmax(.softmax, axis: 1, coerce2D: false)
    if memberOutputs.count == 1 {
        nodes.append(Node(name: "vote", op: .identity, inputs: [memberOutputs[0].value], outputs: [EnsembleNames.logits],
                          sourceOp: "Identity"))
    } else if vote == .meanOfProbabilities {
        for (j, o) in memberOutputs.enumerated() {
            nodes.append(Node(name: "vote.softmax\(j)", op: softmax, inputs: [o.value], outputs: ["vote/p\(j)"], sourceOp: "Softmax"))
        }
        nodes.append(Node(name: "vote", op: .variadic(.mean), inputs: memberOutputs.indices.map { "vote/p\($0)" },
                          outputs: [EnsembleNames.probabilities], sourceOp: "Mean"))
        nodes.append(Node(name: "vote.log", op: .unary(.log), inputs: [EnsembleNames.probabilities],
                          outputs: [EnsembleNames.logits], sourceOp: "Log"))
    } else {
        nodes.append(Node(name: "vote", op: .variadic(.sum), inputs: memberOutputs.map(\.value), outputs: [EnsembleNames.logits],
                          sourceOp: "Sum"))
    }
    if memberOutputs.count == 1 || vote == .sumOfLogits {
        nodes.append(Node(name: "softmax", op: softmax, inputs: [EnsembleNames.logits],
                          outputs: [EnsembleNames.probabilities], sourceOp: "Softmax"))
    }
    for o in memberOutputs {
        nodes.append(Node(name: o.name, op: .identity, inputs: [o.value], outputs: [o.name], sourceOp: "Identity"))
    }
    let k = Dim.fixed(classes.count)
    let logitsShape: [Dim] = [.symbol("N"), k]
    let outputs = ([EnsembleNames.logits, EnsembleNames.probabilities] + memberOutputs.map(\.name)).map {
        ValueDecl(name: $0, dtype: .float32, shape: logitsShape)
    }
    let input = ValueDecl(name: EnsembleNames.image, dtype: .float32,
                          shape: [.symbol("N"), .fixed(image.channels), .fixed(image.height), .fixed(image.width)])
    return Graph(name: "braid_ensemble", inputs: [input], outputs: outputs, initializers: initializers, nodes: nodes)
}

/// Convenience over `ensembleGraph(members:classes:image:)` for fine-tuned source models.
public func ensembleGraph(members: [SourceModel], classes: [String],
                          imageShape: (channels: Int, height: Int, width: Int)) throws -> Graph {
    try ensembleGraph(members: members.map(EnsembleMember.init), classes: classes,
                      image: EnsembleImage(channels: imageShape.channels, height: imageShape.height, width: imageShape.width))
}

/// The per-pixel affine map from `from` image channels (0...255) to the member's normalised
/// channels: `out[k] = sum_c weight[k * from + c] * in[c] + bias[k]`; nil when it is the
/// identity.
func channelMap(_ spec: InputSpec, from: Int) -> (weight: [Float], bias: [Float])? {
    let to = spec.channels
    // convert[r][c]: converted channel r (RGB or gray) from image channel c.
    func convert(_ r: Int, _ c: Int) -> Float {
        if from == to { return r == c ? 1 : 0 }
        if from == 1 { return 1 }
        return [0.299, 0.587, 0.114][c]
    }
    var weight = [Float](repeating: 0, count: to * from), bias = [Float](repeating: 0, count: to)
    for k in 0..<to {
        let source = spec.bgr && to == 3 ? 2 - k : k
        let m = spec.mean.count == 1 ? spec.mean[0] : spec.mean[k]
        let s = spec.std.count == 1 ? spec.std[0] : spec.std[k]
        let a = spec.scale / s
        bias[k] = -(m + spec.offset) / s
        for c in 0..<from { weight[k * from + c] = a * convert(source, c) }
    }
    let identity = from == to && bias.allSatisfy { $0 == 0 }
        && (0..<to).allSatisfy { k in (0..<from).allSatisfy { c in weight[k * from + c] == (k == c ? 1 : 0) } }
    return identity ? nil : (weight, bias)
}
