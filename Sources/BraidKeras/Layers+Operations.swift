import BraidGraph
import BraidTensor
import Foundation

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
    for (name, op) in [("Add", BinaryFunction.add), ("Subtract", .sub), ("Multiply", .mul), ("Divide", .div),
                       ("TrueDivide", .div), ("Maximum", .max), ("Minimum", .min), ("Power", .pow)] {
        t[name] = { ctx, args in [try binaryOperation(ctx, args, op)] }
    }
    for (name, op) in [("Negative", UnaryFunction.neg), ("Absolute", .abs), ("Abs", .abs), ("Sqrt", .sqrt),
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
    for (name, kind) in [("Mean", ReduceFunction.mean), ("Sum", .sum), ("Max", .max), ("Min", .min), ("Prod", .prod)] {
        t[name] = { ctx, args in [try reduction(ctx, args, kind)] }
    }
    t["Reshape"] = { ctx, args in
        let x = ctx.b.channelsLast(try soleTensor(ctx, args))
        guard let target = ctx.config.array("newshape")?.compactMap({ ($0 as? NSNumber)?.intValue }) else {
            throw ctx.err("Reshape without 'newshape'")
        }
        guard target.first == -1 || target.first == nil || x.shape.first == nil else { throw ctx.err("Reshape must keep the batch axis") }
        // The batch axis stays: the rest is reshaped, -1 inferred from the known sizes.
        var rest = Array(target.dropFirst())
        if let k = rest.firstIndex(of: -1) {
            let known = x.shape.dropFirst().reduce(Optional(1)) { a, d in a.flatMap { a in d.map { a * $0 } } }
            let others = rest.enumerated().filter { $0.offset != k }.map(\.element).reduce(1, *)
            guard let known, others > 0 else { throw ctx.err("Reshape of an input with unknown sizes") }
            rest[k] = known / others
        }
        let shape = ctx.b.intsConstant([0] + rest, name: "\(ctx.name)/shape")
        return [KTensor(name: ctx.add(.reshape(allowZero: false), [x.name, shape]), shape: [nil] + rest.map(Optional.some))]
    }
    t["Transpose"] = { ctx, args in
        let x = ctx.b.channelsLast(try soleTensor(ctx, args))
        let axes = ctx.config.array("axes")?.compactMap { ($0 as? NSNumber)?.intValue } ?? Array((0..<x.rank).reversed())
        guard axes.count == x.rank, axes.first == 0 else { throw ctx.err("Transpose must keep the batch axis first") }
        return [KTensor(name: ctx.add(.transpose(perm: axes), [x.name]), shape: axes.map { x.shape[$0] })]
    }
    t["ExpandDims"] = { ctx, args in
        let x = ctx.b.channelsLast(try soleTensor(ctx, args))
        guard var axis = ctx.config.int("axis") else { throw ctx.err("ExpandDims without an int 'axis'") }
        if axis < 0 { axis += x.rank + 1 }
        guard axis > 0 && axis <= x.rank else { throw ctx.err("ExpandDims axis \(axis) is not after the batch axis") }
        var shape = x.shape
        shape.insert(1, at: axis)
        return [KTensor(name: ctx.add(.unsqueeze, [x.name, ctx.b.intsConstant([axis], name: "\(ctx.name)/axes")]), shape: shape)]
    }
    t["Concatenate"] = { ctx, args in
        let xs = try args.map { a -> KTensor in
            guard case .tensor(let x) = a else { throw ctx.err("Concatenate of a number") }
            return ctx.b.channelsLast(x)
        }
        guard let first = xs.first else { throw ctx.err("Concatenate of nothing") }
        var axis = ctx.config.int("axis") ?? 0
        if axis < 0 { axis += first.rank }
        guard axis > 0 && axis < first.rank else { throw ctx.err("Concatenate along the batch axis") }
        var shape = first.shape
        shape[axis] = xs.reduce(Optional(0)) { a, x in a.flatMap { a in x.shape[axis].map { a + $0 } } }
        return [KTensor(name: ctx.add(.concat(axis: axis), xs.map(\.name)), shape: shape)]
    }
    t["Clip"] = { ctx, args in
        let x = try soleTensor(ctx, args)
        let lo = ctx.config.float("x_min").map { ctx.b.scalar($0, name: "\(ctx.name)/min") } ?? ""
        let hi = ctx.config.float("x_max").map { ctx.b.scalar($0, name: "\(ctx.name)/max") } ?? ""
        return [KTensor(name: ctx.add(.clip, [x.name, lo, hi]), shape: x.shape, channelsFirst: x.channelsFirst)]
    }
    // `keras.ops.pad(x, pad_width, constant_values=v)`: pad_width in Keras axis order, the
    // fill a positional number (Braid's exporter pads max pooling with the lowest float).
    t["Pad"] = { ctx, args in
        guard let first = args.first, case .tensor(let x0) = first, args.count <= 2 else {
            throw ctx.err("Pad takes a tensor and an optional number")
        }
        var fill: Float = 0
        if args.count == 2 {
            guard case .number(let v) = args[1] else { throw ctx.err("Pad's constant value is not a number") }
            fill = v
        }
        guard (ctx.config.string("mode") ?? "constant") == "constant" else { throw ctx.err("only constant padding is supported") }
        let x = ctx.b.channelsLast(x0)
        let widths = (ctx.config.array("pad_width") ?? []).map { ($0 as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? [] }
        let limit = Geometry.maxExtent
        guard widths.count == x.rank, widths.allSatisfy({ $0.count == 2 && (0...limit).contains($0[0]) && (0...limit).contains($0[1]) }),
              widths[0] == [0, 0] else {
            throw ctx.err("Pad needs one [begin, end] pair of widths in 0...\(limit) per axis, none on the batch axis")
        }
        let pads = ctx.b.intsConstant(widths.map { $0[0] } + widths.map { $0[1] }, name: "\(ctx.name)/pads")
        let y = ctx.add(.pad(mode: .constant), [x.name, pads, ctx.b.scalar(fill, name: "\(ctx.name)/value")])
        let shape = zip(x.shape, widths).map { d, w in d.map { $0 + w[0] + w[1] } }
        return [KTensor(name: y, shape: shape)]
    }
    t["Matmul"] = { ctx, args in
        guard args.count == 2, case .tensor(let a0) = args[0], case .tensor(let b0) = args[1] else {
            throw ctx.err("Matmul takes two tensors")
        }
        let a = ctx.b.channelsLast(a0), b = ctx.b.channelsLast(b0)
        guard a.rank >= 2, b.rank >= 2 else { throw ctx.err("Matmul of vectors is not supported") }
        let r = max(a.rank, b.rank)
        var shape: [Int?] = (0..<(r - 2)).map { i in
            let da = i - (r - a.rank) >= 0 ? a.shape[i - (r - a.rank)] : 1
            let db = i - (r - b.rank) >= 0 ? b.shape[i - (r - b.rank)] : 1
            return da == 1 ? db : da
        }
        shape += [a.shape[a.rank - 2], b.shape[b.rank - 1]]
        shape[0] = nil
        return [KTensor(name: ctx.add(.matMul, [a.name, b.name]), shape: shape)]
    }
    t["Split"] = { ctx, args in
        let x = ctx.b.channelsLast(try soleTensor(ctx, args))
        var axis = ctx.config.int("axis") ?? 0
        if axis < 0 { axis += x.rank }
        guard axis > 0 && axis < x.rank, let n = x.shape[axis] else { throw ctx.err("Split along the batch or an unknown axis") }
        var points: [Int]
        if let k = ctx.config.int("indices_or_sections"), !(ctx.config["indices_or_sections"] is [Any]) {
            guard k > 0, n % k == 0 else { throw ctx.err("Split of \(n) into \(k) equal parts") }
            points = (1..<k).map { $0 * n / k }
        } else {
            points = (ctx.config.array("indices_or_sections") ?? []).compactMap { ($0 as? NSNumber)?.intValue }
        }
        let bounds = [0] + points + [n]
        guard zip(bounds, bounds.dropFirst()).allSatisfy({ $0 <= $1 }) else { throw ctx.err("Split points \(points) are not increasing") }
        let sizes = zip(bounds, bounds.dropFirst()).map { $1 - $0 }
        let sizesName = ctx.b.intsConstant(sizes, name: "\(ctx.name)/sizes")
        let outs = ctx.b.add(.split(axis: axis, count: sizes.count), [x.name, sizesName], name: ctx.name, source: ctx.cls,
                             outputs: sizes.count)
        return zip(outs, sizes).map { name, size in
            var shape = x.shape
            shape[axis] = size
            return KTensor(name: name, shape: shape)
        }
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
private func binaryOperation(_ ctx: LayerContext, _ args: [OperationArgument], _ op: BinaryFunction) throws -> KTensor {
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

/// `keras.ops.mean` and friends: `axis` (an int, a list, or null for all but the batch... and
/// the batch: Keras reduces every axis then) and `keepdims` from the config.
private func reduction(_ ctx: LayerContext, _ args: [OperationArgument], _ kind: ReduceFunction) throws -> KTensor {
    let x = ctx.b.channelsLast(try soleTensor(ctx, args))
    var axes: [Int]
    if let a = ctx.config.int("axis"), !(ctx.config["axis"] is [Any]) {
        axes = [a]
    } else if let list = ctx.config.array("axis") {
        axes = list.compactMap { ($0 as? NSNumber)?.intValue }
    } else {
        throw ctx.err("\(ctx.cls) over every axis (including the batch) is not supported")
    }
    axes = axes.map { $0 < 0 ? $0 + x.rank : $0 }
    guard axes.allSatisfy({ $0 > 0 && $0 < x.rank }) else { throw ctx.err("\(ctx.cls) over the batch axis is not supported") }
    let keep = ctx.config.bool("keepdims") ?? false
    var shape: [Int?] = []
    for (i, d) in x.shape.enumerated() {
        if !axes.contains(i) { shape.append(d) } else if keep { shape.append(1) }
    }
    return KTensor(name: ctx.add(.reduce(kind, axes: axes, keepDims: keep, noopWithEmptyAxes: false), [x.name]), shape: shape)
}
