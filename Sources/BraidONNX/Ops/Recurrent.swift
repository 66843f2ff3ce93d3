import BraidGraph
import BraidTensor

// RNN, GRU and LSTM -> the IR's recurrent layer. `layout` 1 (batch first) becomes transposes
// around it; activations and their alpha/beta lists resolve to IR unary ops.

let recurrentOps: OpTable = {
    var t: OpTable = [:]
    t["RNN"] = [v(7) { n in try translateRecurrent(n, .simple, defaults: ["Tanh"]) }]
    t["GRU"] = [v(7) { n in
        try translateRecurrent(n, .gru(linearBeforeReset: try n.int("linear_before_reset", default: 0) != 0),
                               defaults: ["Sigmoid", "Tanh"])
    }]
    t["LSTM"] = [v(7) { n in
        try translateRecurrent(n, .lstm(inputForget: try n.bool("input_forget", default: false)),
                               defaults: ["Sigmoid", "Tanh", "Tanh"])
    }]
    return t
}()

private func translateRecurrent(_ n: NodeTranslation, _ cell: RecurrentParams.Cell, defaults: [String]) throws {
    guard let hidden = try n.int("hidden_size") else { throw n.error("missing required attribute 'hidden_size'") }
    let direction = try n.string("direction", default: "forward")
    let reverse: [Bool]
    switch direction {
    case "forward": reverse = [false]
    case "reverse": reverse = [true]
    case "bidirectional": reverse = [false, true]
    case let s: throw n.error("attribute 'direction' = '\(s)' is not known")
    }
    var names: [String] = []
    if let a = n.proto.attributes.first(where: { $0.name == "activations" }) {
        names = a.strings.map { String(decoding: $0, as: UTF8.self) }
    }
    if names.isEmpty { names = Array(repeating: defaults, count: reverse.count).flatMap { $0 } }
    guard names.count == defaults.count * reverse.count else {
        throw n.error("attribute 'activations' lists \(names.count) functions, expected \(defaults.count * reverse.count)")
    }
    var alphas = try n.floats("activation_alpha") ?? [], betas = try n.floats("activation_beta") ?? []
    func take(_ list: inout [Float], _ d: Float) -> Float { list.isEmpty ? d : list.removeFirst() }
    var ops: [UnaryFunction] = []
    for name in names {
        switch name.lowercased() {
        case "sigmoid": ops.append(.sigmoid)
        case "tanh": ops.append(.tanh)
        case "relu": ops.append(.relu)
        case "softsign": ops.append(.softsign)
        case "softplus": ops.append(.softplus)
        case "hardsigmoid": ops.append(.hardSigmoid(alpha: take(&alphas, 0.2), beta: take(&betas, 0.5)))
        case "leakyrelu": ops.append(.leakyRelu(alpha: take(&alphas, 0.01)))
        case "thresholdedrelu": ops.append(.thresholdedRelu(alpha: take(&alphas, 1)))
        case "elu": ops.append(.elu(alpha: take(&alphas, 1)))
        default: throw n.error("activation '\(name)' is not supported")
        }
    }
    let per = defaults.count
    let activations = (0..<reverse.count).map { Array(ops[($0 * per)..<(($0 + 1) * per)]) }
    let params = RecurrentParams(cell: cell, reverse: reverse, activations: activations, hiddenSize: hidden,
                                 clip: try n.float("clip"))
    let layout = try n.int("layout", default: 0)
    let batchFirst = n.opset >= 14 && layout == 1
    var inputs = (0..<8).map { n.input($0) }
    if case .lstm = cell {} else { inputs = Array(inputs.prefix(6)) }
    let stateCount: Int
    if case .lstm = cell { stateCount = 2 } else { stateCount = 1 }
    var outs = (0..<(1 + stateCount)).map { i in n.outputUsed(i) ? n.outputs[i] : n.temporary("out\(i)") }
    if batchFirst {
        inputs[0] = n.step(.transpose(perm: [1, 0, 2]), [inputs[0]], "x_seq_first")
        for i in 5..<min(inputs.count, 7) where !inputs[i].isEmpty {
            inputs[i] = n.step(.transpose(perm: [1, 0, 2]), [inputs[i]], "state\(i)_dir_first")
        }
        let final = outs
        outs = outs.indices.map { n.temporary("layer_out\($0)") }
        n.emit(.recurrent(params), inputs: inputs, outputs: outs)
        n.emit(.transpose(perm: [2, 0, 1, 3]), inputs: [outs[0]], outputs: [final[0]])
        for i in 1..<outs.count { n.emit(.transpose(perm: [1, 0, 2]), inputs: [outs[i]], outputs: [final[i]]) }
        return
    }
    n.emit(.recurrent(params), inputs: inputs, outputs: outs)
}
