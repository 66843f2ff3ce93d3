import BraidGraph
import BraidTensor

/// One argument of a Keras 3 operation node: a tensor, or a Python number.
enum OperationArgument {
    case tensor(KTensor)
    case number(Float)
}

/// Translates one call of a Keras 3 operation node.
typealias OperationTranslator = @Sendable (LayerContext, [OperationArgument]) throws -> [KTensor]

/// Pairs a call's recorded operands with its tensors, in positional order.
func operationArguments(_ ctx: LayerContext, _ operands: [CallOperand], _ tensors: [KTensor]) throws -> [OperationArgument] {
    var next = 0
    var out: [OperationArgument] = []
    for o in operands {
        switch o {
        case .number(let v): out.append(.number(Float(v)))
        case .tensor:
            guard next < tensors.count else { throw ctx.err("the call names more tensors than it was given") }
            out.append(.tensor(tensors[next])); next += 1
        }
    }
    guard next == tensors.count else { throw ctx.err("the call's arguments do not account for its \(tensors.count) input tensors") }
    return out
}

/// Keras 3 operation nodes: `keras.ops` calls on symbolic tensors that a functional config
/// records as entries of module `keras.src.ops.*` (`x + 3.0` is `Add` with args `[x, 3.0]`,
/// `keras.ops.sigmoid(x)` is `Sigmoid`). Numbers become scalar constants.
let operationTable: [String: OperationTranslator] = {
    var t: [String: OperationTranslator] = [:]
    for (name, op) in [("Add", BinaryOp.add), ("Subtract", .sub), ("Multiply", .mul), ("Divide", .div),
                       ("TrueDivide", .div), ("Maximum", .max), ("Minimum", .min), ("Power", .pow)] {
        t[name] = { ctx, args in [try binaryOperation(ctx, args, op)] }
    }
    for (name, op) in [("Negative", UnaryOp.neg), ("Absolute", .abs), ("Abs", .abs), ("Sqrt", .sqrt),
                       ("Exp", .exp), ("Log", .log), ("Tanh", .tanh), ("Sigmoid", .sigmoid), ("Relu", .relu),
                       ("Softplus", .softplus), ("Softsign", .softsign), ("Floor", .floor), ("Ceil", .ceil),
                       ("Sin", .sin), ("Cos", .cos), ("Erf", .erf), ("Reciprocal", .reciprocal),
                       ("HardSilu", .hardSwish), ("HardSwish", .hardSwish), ("Mish", .mish)] {
        t[name] = { ctx, args in [unary(op, try soleTensor(ctx, args), ctx)] }
    }
    t["HardSigmoid"] = { ctx, args in [unary(.hardSigmoid(alpha: 1.0 / 6, beta: 0.5), try soleTensor(ctx, args), ctx)] }
    t["Relu6"] = { ctx, args in
        let x = try soleTensor(ctx, args)
        let y = ctx.add(.clip, [x.name, ctx.b.scalar(0, name: "\(ctx.name)/min"), ctx.b.scalar(6, name: "\(ctx.name)/max")])
        return [KTensor(name: y, shape: x.shape, channelsFirst: x.channelsFirst)]
    }
    for name in ["Silu", "Swish"] {
        t[name] = { ctx, args in [try applyActivation("silu", try soleTensor(ctx, args), ctx)] }
    }
    t["Square"] = { ctx, args in
        let x = try soleTensor(ctx, args)
        return [KTensor(name: ctx.add(.binary(.mul), [x.name, x.name]), shape: x.shape, channelsFirst: x.channelsFirst)]
    }
    return t
}()

private func soleTensor(_ ctx: LayerContext, _ args: [OperationArgument]) throws -> KTensor {
    guard args.count == 1, case .tensor(let x) = args[0] else {
        throw ctx.err("\(ctx.cls) takes one tensor argument, got \(args.count) arguments")
    }
    return x
}

/// `a op b` where either side may be a number; tensors are brought to one layout first.
private func binaryOperation(_ ctx: LayerContext, _ args: [OperationArgument], _ op: BinaryOp) throws -> KTensor {
    guard args.count == 2 else { throw ctx.err("\(ctx.cls) takes 2 arguments, got \(args.count)") }
    var tensors: [KTensor] = []
    for a in args { if case .tensor(let x) = a { tensors.append(x) } }
    guard !tensors.isEmpty else { throw ctx.err("\(ctx.cls) of two numbers has no tensor to compute on") }
    var same = ctx.b.sameLayout(tensors)[...]
    let names: [String] = args.enumerated().map { i, a in
        switch a {
        case .tensor: return same.popFirst()!.name
        case .number(let v): return ctx.b.scalar(v, name: "\(ctx.name)/operand\(i)")
        }
    }
    let layout = ctx.b.sameLayout(tensors)
    let r = layout.map(\.rank).max() ?? 0
    let shape: [Int?] = (0..<r).map { i in
        if i == 0 { return nil }
        var d: Int? = 1
        for x in layout {
            let j = i - (r - x.rank)
            guard j >= 0 else { continue }
            if x.shape[j] != 1 { d = x.shape[j] }
        }
        return d
    }
    return KTensor(name: ctx.add(.binary(op), names), shape: shape, channelsFirst: layout[0].channelsFirst)
}
