import BraidGraph
import BraidTensor

// Element-wise ONNX ops -> IR. Opset versions listed are the ones whose semantics Braid reads
// differently; versions that only widened the accepted types share an entry.

let mathOps: OpTable = {
    var t: OpTable = [:]
    func unary(_ name: String, since: Int, _ op: UnaryFunction) {
        t[name] = [v(since) { n in n.emit(.unary(op), inputs: [n.input(0)]) }]
    }
    func unary(_ name: String, since: Int, _ make: @escaping @Sendable (NodeTranslation) throws -> UnaryFunction) {
        t[name] = [v(since) { n in n.emit(.unary(try make(n)), inputs: [n.input(0)]) }]
    }
    // Before opset 7 the arithmetic and logical ops broadcast only when asked (`broadcast`),
    // optionally aligned at `axis`.
    func binary(_ name: String, since: Int, legacyBefore: Int = 7, _ op: BinaryFunction) {
        var entries = [v(since) { n in try legacyBinary(n, op) }]
        if since < legacyBefore { entries.append(v(legacyBefore) { n in n.emit(.binary(op)) }) }
        t[name] = entries
    }

    for (name, op) in [("Neg", UnaryFunction.neg), ("Abs", .abs), ("Sqrt", .sqrt), ("Exp", .exp),
                       ("Log", .log), ("Reciprocal", .reciprocal), ("Floor", .floor),
                       ("Ceil", .ceil), ("Relu", .relu), ("Sigmoid", .sigmoid), ("Tanh", .tanh),
                       ("Softplus", .softplus), ("Softsign", .softsign), ("Not", .not)] {
        unary(name, since: 1, op)
    }
    for (name, op) in [("Sin", UnaryFunction.sin), ("Cos", .cos), ("Tan", .tan), ("Asin", .asin),
                       ("Acos", .acos), ("Atan", .atan)] {
        unary(name, since: 7, op)
    }
    for (name, op) in [("Sinh", UnaryFunction.sinh), ("Cosh", .cosh), ("Asinh", .asinh),
                       ("Acosh", .acosh), ("Atanh", .atanh), ("Erf", .erf), ("Sign", .sign),
                       ("IsNaN", .isNaN)] {
        unary(name, since: 9, op)
    }
    unary("Round", since: 11, .round)
    unary("HardSwish", since: 14, .hardSwish)
    unary("Mish", since: 18, .mish)
    unary("LeakyRelu", since: 1) { .leakyRelu(alpha: try $0.float("alpha", default: 0.01)) }
    unary("Elu", since: 1) { .elu(alpha: try $0.float("alpha", default: 1)) }
    unary("Celu", since: 12) { .celu(alpha: try $0.float("alpha", default: 1)) }
    unary("Selu", since: 1) {
        .selu(alpha: try $0.float("alpha", default: 1.67326319217681884765625),
              gamma: try $0.float("gamma", default: 1.05070102214813232421875))
    }
    unary("ThresholdedRelu", since: 10) { .thresholdedRelu(alpha: try $0.float("alpha", default: 1)) }
    unary("HardSigmoid", since: 1) {
        .hardSigmoid(alpha: try $0.float("alpha", default: 0.2), beta: try $0.float("beta", default: 0.5))
    }
    unary("Shrink", since: 9) {
        .shrink(bias: try $0.float("bias", default: 0), lambd: try $0.float("lambd", default: 0.5))
    }
    unary("Gelu", since: 20) { n in
        switch try n.string("approximate", default: "none") {
        case "none": return .gelu(tanhApproximation: false)
        case "tanh": return .gelu(tanhApproximation: true)
        case let s: throw n.error("attribute 'approximate' = '\(s)', expected 'none' or 'tanh'")
        }
    }
    t["IsInf"] = [v(10, translateIsInf)]

    for (name, op) in [("Add", BinaryFunction.add), ("Sub", .sub), ("Mul", .mul), ("Div", .div),
                       ("Equal", .equal), ("Less", .less), ("Greater", .greater),
                       ("And", .and), ("Or", .or), ("Xor", .xor)] {
        binary(name, since: 1, op)
    }
    binary("Pow", since: 1, .pow)
    for (name, op) in [("BitwiseAnd", BinaryFunction.bitwiseAnd), ("BitwiseOr", .bitwiseOr), ("BitwiseXor", .bitwiseXor)] {
        t[name] = [v(18) { n in n.emit(.binary(op)) }]
    }
    unary("BitwiseNot", since: 18, .bitwiseNot)
    binary("LessOrEqual", since: 12, .lessOrEqual)
    binary("GreaterOrEqual", since: 12, .greaterOrEqual)
    t["Mod"] = [v(10) { n in n.emit(.binary(.mod(fmod: try n.bool("fmod", default: false)))) }]
    t["BitShift"] = [v(11) { n in
        switch try n.string("direction") {
        case "LEFT": n.emit(.binary(.bitShiftLeft))
        case "RIGHT": n.emit(.binary(.bitShiftRight))
        case let s: throw n.error("attribute 'direction' = '\(s ?? "(missing)")', expected 'LEFT' or 'RIGHT'")
        }
    }]

    for (name, op) in [("Sum", VariadicOp.sum), ("Mean", .mean), ("Max", .max), ("Min", .min)] {
        t[name] = [v(1) { n in
            guard !n.inputs.isEmpty else { throw n.error("needs at least one input") }
            n.emit(.variadic(op))
        }]
    }
    t["Where"] = [v(9) { $0.emit(.select) }]
    t["BitCast"] = [v(26) { n in
        // The source's width comes from its declared type: Braid widens floats to float32.
        let to = try n.requiredInt("to")
        guard let c = Int32(exactly: to), let target = ONNXDataType(rawValue: c).flatMap(bitLayout),
              let source = n.knownElementType(0).flatMap(bitLayout) else {
            throw n.error("BitCast needs the source's declared type and a target of a plain numeric type")
        }
        n.emit(.reinterpretBits(from: source, to: target), inputs: [n.input(0)])
    }]
    t["PRelu"] = [v(1) { $0.emit(.prelu, inputs: [$0.input(0), $0.input(1)]) }]
    t["Clip"] = [v(1, translateClipAttributes), v(11) { n in
        n.emit(.clip, inputs: [n.input(0), n.input(1), n.input(2)])
    }]
    t["Cast"] = [v(1) { n in
        let code: Int
        if let s = try? n.string("to") {
            // Opset 1 and 5 spelled the type as a string.
            guard let i = ["FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5, "INT32": 6,
                           "INT64": 7, "STRING": 8, "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11,
                           "UINT32": 12, "UINT64": 13][s] else { throw n.error("attribute 'to' = '\(s)' is not a known type") }
            code = i
        } else {
            code = try n.requiredInt("to")
        }
        guard let c32 = Int32(exactly: code) else { throw n.error("attribute 'to' = \(code) is not a known type") }
        do {
            let to = try braidType(code: c32, subject: "")
            try emitCast(n, n.input(0), to: to, narrow: try narrowTarget(n, ONNXDataType(rawValue: c32)))
        } catch let e as ONNXError {
            throw n.error("cannot cast: \(e.message)")
        }
    }]
    return t
}()

/// A binary op before opset 7: with `broadcast` and `axis`, B's axes line up with A's from
/// `axis` on, so B gets trailing size-1 axes (both ranks must be known at import).
@Sendable private func legacyBinary(_ n: NodeTranslation, _ op: BinaryFunction) throws {
    guard try n.bool("broadcast", default: false), let axis = try n.int("axis") else {
        return n.emit(.binary(op))
    }
    guard let ra = n.knownShape(0)?.count, let b = n.knownShape(1) else {
        throw n.error("legacy broadcast aligned at attribute 'axis' needs both operands' shapes at import; re-export the model at opset 7 or later")
    }
    let a = axis < 0 ? axis + ra : axis
    let trailing = ra - a - b.count
    guard a >= 0, trailing >= 0 else { throw n.error("attribute 'axis' = \(axis) does not fit operands of ranks \(ra) and \(b.count)") }
    guard trailing > 0 else { return n.emit(.binary(op)) }
    let shape = n.constant(ints: b + Array(repeating: 1, count: trailing), "aligned_shape")
    n.emit(.binary(op), inputs: [n.input(0), n.step(.reshape(allowZero: false), [n.input(1), shape], "aligned")])
}

/// IsInf with one sign disabled becomes `isInf(x) and (x > 0)` (or `< 0`).
@Sendable private func translateIsInf(_ n: NodeTranslation) throws {
    let positive = try n.bool("detect_positive", default: true)
    let negative = try n.bool("detect_negative", default: true)
    switch (positive, negative) {
    case (true, true):
        n.emit(.unary(.isInf), inputs: [n.input(0)])
    case (false, false):
        // Neither sign: all false, which `x < x` gives for every x including NaN and inf.
        n.emit(.binary(.less), inputs: [n.input(0), n.input(0)])
    default:
        let inf = n.temporary("isinf"), sign = n.temporary("sign")
        let zero = n.constant(floats: [0], shape: [], "zero")
        n.emit(.unary(.isInf), inputs: [n.input(0)], outputs: [inf])
        n.emit(.binary(positive ? .greater : .less), inputs: [n.input(0), zero], outputs: [sign])
        n.emit(.binary(.and), inputs: [inf, sign], outputs: [n.outputs[0]])
    }
}

/// Clip 1 and 6 carry the bounds as attributes; they become constant inputs.
@Sendable private func translateClipAttributes(_ n: NodeTranslation) throws {
    let lo = try n.float("min").map { n.constant(floats: [$0], shape: [], "min") } ?? ""
    let hi = try n.float("max").map { n.constant(floats: [$0], shape: [], "max") } ?? ""
    n.emit(.clip, inputs: [n.input(0), lo, hi])
}

// MARK: - Writers (IR -> ONNX)

/// Writes the element-wise ops; false when `n` is not one of them.
func writeMathOp(_ n: NodeExport) throws -> Bool {
    switch n.node.op {
    case .unary(let u): try writeUnary(u, n)
    case .binary(let b):
        switch b {
        case .mod(let fmod): n.emit("Mod", attrs: [.bool("fmod", fmod)])
        case .bitShiftLeft: n.emit("BitShift", attrs: [.string("direction", "LEFT")])
        // Right shifts of signed values fill with the sign in ONNX's reference too.
        case .bitShiftRight, .arithmeticShiftRight: n.emit("BitShift", attrs: [.string("direction", "RIGHT")])
        default:
            guard let name = binaryNames.first(where: { $0.1 == b })?.0 else { preconditionFailure("\(b) is written with attributes") }
            n.emit(name)
        }
    case .variadic(let v):
        switch v {
        case .sum: n.emit("Sum")
        case .mean: n.emit("Mean")
        case .max: n.emit("Max")
        case .min: n.emit("Min")
        }
    case .select: n.emit("Where")
    case .clip: n.emit("Clip")
    case .prelu: n.emit("PRelu")
    case .cast(let to): n.emit("Cast", attrs: [.int("to", Int64(ONNXDataType(to).rawValue))])
    case .castLike: n.emit("CastLike")
    case .reinterpretBits(_, let to):
        guard let code = ONNXDataType.allCases.first(where: { bitLayout($0) == to }) else { return false }
        n.emit("BitCast", attrs: [.int("to", Int64(code.rawValue))])
    default: return false
    }
    return true
}

/// The ONNX op each binary function without attributes is written as (Max and Min as the
/// variadic ops of two inputs).
private let binaryNames: [(String, BinaryFunction)] = [
    ("Add", .add), ("Sub", .sub), ("Mul", .mul), ("Div", .div), ("Pow", .pow), ("Max", .max), ("Min", .min),
    ("Equal", .equal), ("Less", .less), ("Greater", .greater), ("LessOrEqual", .lessOrEqual),
    ("GreaterOrEqual", .greaterOrEqual), ("And", .and), ("Or", .or), ("Xor", .xor),
    ("BitwiseAnd", .bitwiseAnd), ("BitwiseOr", .bitwiseOr), ("BitwiseXor", .bitwiseXor),
]

private func writeUnary(_ u: UnaryFunction, _ n: NodeExport) throws {
    let x = n.input(0)
    switch u {
    case .neg: n.emit("Neg", [x])
    case .abs: n.emit("Abs", [x])
    case .sqrt: n.emit("Sqrt", [x])
    case .exp: n.emit("Exp", [x])
    case .log: n.emit("Log", [x])
    case .reciprocal: n.emit("Reciprocal", [x])
    case .floor: n.emit("Floor", [x])
    case .ceil: n.emit("Ceil", [x])
    case .round: n.emit("Round", [x])
    case .sign: n.emit("Sign", [x])
    case .sin: n.emit("Sin", [x])
    case .cos: n.emit("Cos", [x])
    case .tan: n.emit("Tan", [x])
    case .asin: n.emit("Asin", [x])
    case .acos: n.emit("Acos", [x])
    case .atan: n.emit("Atan", [x])
    case .sinh: n.emit("Sinh", [x])
    case .cosh: n.emit("Cosh", [x])
    case .asinh: n.emit("Asinh", [x])
    case .acosh: n.emit("Acosh", [x])
    case .atanh: n.emit("Atanh", [x])
    case .erf: n.emit("Erf", [x])
    case .relu: n.emit("Relu", [x])
    case .sigmoid: n.emit("Sigmoid", [x])
    case .tanh: n.emit("Tanh", [x])
    case .softplus: n.emit("Softplus", [x])
    case .softsign: n.emit("Softsign", [x])
    case .not: n.emit("Not", [x])
    case .isNaN: n.emit("IsNaN", [x])
    case .isInf: n.emit("IsInf", [x])
    case .bitwiseNot: n.emit("BitwiseNot", [x])
    case .narrow(let format, let saturate):
        // Through the narrow type and back, which rounds as the IR op does.
        let code = ONNXDataType.allCases.first { $0.narrowFormat == format }?.rawValue ?? ONNXDataType.bfloat16.rawValue
        let narrowed = n.emitTemporary("Cast", [x], "narrowed", [.int("to", Int64(code)), .bool("saturate", saturate)])
        n.emit("Cast", [narrowed], attrs: [.int("to", Int64(format.isInteger ? (format == .int4 || format == .int2 ? ONNXDataType.int8 : .uint8).rawValue : ONNXDataType.float.rawValue))])
    case .leakyRelu(let alpha): n.emit("LeakyRelu", [x], attrs: [.float("alpha", alpha)])
    case .elu(let alpha): n.emit("Elu", [x], attrs: [.float("alpha", alpha)])
    case .celu(let alpha): n.emit("Celu", [x], attrs: [.float("alpha", alpha)])
    case .selu(let alpha, let gamma): n.emit("Selu", [x], attrs: [.float("alpha", alpha), .float("gamma", gamma)])
    case .thresholdedRelu(let alpha): n.emit("ThresholdedRelu", [x], attrs: [.float("alpha", alpha)])
    case .hardSigmoid(let alpha, let beta):
        n.emit("HardSigmoid", [x], attrs: [.float("alpha", alpha), .float("beta", beta)])
    case .shrink(let bias, let lambd): n.emit("Shrink", [x], attrs: [.float("bias", bias), .float("lambd", lambd)])
    case .hardSwish:
        if n.opset >= 14 { n.emit("HardSwish", [x]); return }
        let gate = n.emitTemporary("HardSigmoid", [x], "gate", [.float("alpha", 1 / 6), .float("beta", 0.5)])
        n.emit("Mul", [x, gate])
    case .mish:
        if n.opset >= 18 { n.emit("Mish", [x]); return }
        let sp = n.emitTemporary("Softplus", [x], "softplus")
        n.emit("Mul", [x, n.emitTemporary("Tanh", [sp], "tanh")])
    case .gelu(let tanhApproximation):
        if n.opset >= 20 { n.emit("Gelu", [x], attrs: [.string("approximate", tanhApproximation ? "tanh" : "none")]); return }
        // Before opset 20: 0.5 x (1 + erf(x / sqrt 2)), or the tanh form.
        let inner: String
        if tanhApproximation {
            let x2 = n.emitTemporary("Mul", [x, x], "x2")
            let x3 = n.emitTemporary("Mul", [x2, x], "x3")
            let cubic = n.emitTemporary("Mul", [x3, n.constant(scalar: 0.044715, "c")], "cubic")
            let sum = n.emitTemporary("Add", [x, cubic], "sum")
            let scaled = n.emitTemporary("Mul", [sum, n.constant(scalar: Float((2 / Double.pi).squareRoot()), "k")], "scaled")
            inner = n.emitTemporary("Tanh", [scaled], "tanh")
        } else {
            let scaled = n.emitTemporary("Mul", [x, n.constant(scalar: Float(1 / 2.0.squareRoot()), "k")], "scaled")
            inner = n.emitTemporary("Erf", [scaled], "erf")
        }
        let onePlus = n.emitTemporary("Add", [inner, n.constant(scalar: 1, "one")], "one_plus")
        let times = n.emitTemporary("Mul", [x, onePlus], "times")
        n.emit("Mul", [times, n.constant(scalar: 0.5, "half")])
    }
}

/// The narrow format a Cast or CastLike to `type` rounds onto (float8, float4, bfloat16 and the
/// 4- and 2-bit integers), with the node's `saturate` and `round_mode` attributes.
func narrowTarget(_ n: NodeTranslation, _ type: ONNXDataType?) throws -> (NarrowFormat, saturate: Bool)? {
    guard let type else { return nil }
    var format: NarrowFormat
    if type == .bfloat16 {
        format = .bfloat16
    } else if let f = type.narrowFormat {
        format = f
    } else {
        return nil
    }
    if case .float8e8m0 = format {
        switch try n.string("round_mode", default: "up") {
        case "up": format = .float8e8m0(.up)
        case "down": format = .float8e8m0(.down)
        case "nearest": format = .float8e8m0(.nearest)
        case let s: throw n.error("attribute 'round_mode' = '\(s)', expected 'up', 'down' or 'nearest'")
        }
    }
    return (format, n.opset >= 19 ? try n.bool("saturate", default: true) : true)
}

/// A Cast to `to`, rounding onto `narrow`'s grid: integer formats are narrowed before the
/// conversion (out-of-range values become 0), float formats after it.
func emitCast(_ n: NodeTranslation, _ x: String, to: DType, narrow: (NarrowFormat, saturate: Bool)?) throws {
    guard let (format, saturate) = narrow else {
        n.emit(.cast(to: to), inputs: [x])
        return
    }
    if format.isInteger {
        n.emit(.cast(to: to), inputs: [n.step(.unary(.narrow(format, saturate: saturate)), [x], "narrowed")])
    } else {
        n.emit(.unary(.narrow(format, saturate: saturate)), inputs: [n.step(.cast(to: to), [x], "widened")])
    }
}

/// The bit layout of an ONNX element type, nil for types BitCast does not take here.
func bitLayout(_ t: ONNXDataType) -> BitLayout? {
    switch t {
    case .float: return .float32
    case .double: return .float64
    case .float16: return .float16
    case .bfloat16: return .bfloat16
    case .bool: return .bool
    case .int8: return .integer(bits: 8, signed: true)
    case .uint8: return .integer(bits: 8, signed: false)
    case .int16: return .integer(bits: 16, signed: true)
    case .uint16: return .integer(bits: 16, signed: false)
    case .int32: return .integer(bits: 32, signed: true)
    case .uint32: return .integer(bits: 32, signed: false)
    case .int64: return .integer(bits: 64, signed: true)
    case .uint64: return .integer(bits: 64, signed: false)
    default: return nil
    }
}
