import BraidTensor

/// Value shapes and plan-time constants of a graph whose inputs have symbolic dimensions,
/// found by planning it with the Executor.
///
/// The graph is planned twice with each symbolic input dimension bound to two different sizes
/// (leading dims 1 and 2, others 64 and 96). A dimension equal in both plans is fixed; one that
/// follows a symbol's two sizes is that symbol; any other is unknown. When the graph cannot be
/// planned (an input without a declared shape, a size the model rejects) nothing is known
/// (`isEmpty`) and callers fall back to forms that do not need shapes.
public struct ShapeKnowledge {
    private var first: [String: PlanValue] = [:]
    private var second: [String: PlanValue] = [:]
    private var symbols: [(name: String, first: Int, second: Int)] = []

    /// Knows nothing.
    public init() {}

    public init(planning graph: Graph) {
        func bind(_ alt: Bool) -> (feeds: [String: (shape: [Int], dtype: DType)], sym: [String: Int])? {
            var feeds: [String: (shape: [Int], dtype: DType)] = [:]
            var sym: [String: Int] = [:]
            for d in graph.feedInputs {
                guard let dims = d.shape else { return nil }
                feeds[d.name] = (dims.enumerated().map { i, dim in
                    switch dim {
                    case .fixed(let n): return n
                    case .symbol(let s):
                        let v = sym[s] ?? (i == 0 ? (alt ? 2 : 1) : (alt ? 96 : 64))
                        sym[s] = v
                        return v
                    }
                }, d.dtype)
            }
            return (feeds, sym)
        }
        guard let a = bind(false), let b = bind(true) else { return }
        let executor = Executor(graph: graph)
        guard let p1 = try? executor.plan(for: a.feeds), let p2 = try? executor.plan(for: b.feeds) else { return }
        first = p1.values
        second = p2.values
        symbols = a.sym.keys.sorted().map { ($0, a.sym[$0]!, b.sym[$0]!) }
    }

    /// True when the graph could not be planned.
    public var isEmpty: Bool { first.isEmpty }

    /// Each dimension of `value`: its size, the symbol it follows, or nil when it changes with
    /// the input sizes otherwise. Nil when the value is unknown or changes rank.
    public func dims(_ value: String) -> [SymbolicDim]? {
        guard let a = first[value], let b = second[value], a.shape.count == b.shape.count else { return nil }
        return zip(a.shape, b.shape).map { x, y in
            if x == y { return .fixed(x) }
            if let s = symbols.first(where: { $0.first == x && $0.second == y }) { return .symbol(s.name) }
            return .unknown
        }
    }

    /// The shape with nil for dimensions that change with the input sizes.
    public func shape(_ value: String) -> [Int?]? {
        dims(value)?.map { if case .fixed(let n) = $0 { return n } else { return nil } }
    }

    /// The element type planning found.
    public func dtype(_ value: String) -> DType? { first[value]?.dtype }

    /// A plan-time constant equal in both plans (so not derived from a symbolic size).
    public func constant(_ value: String) -> Tensor? {
        guard let a = first[value]?.constant, let b = second[value]?.constant,
              a.shape == b.shape, a.dtype == b.dtype else { return nil }
        if a.dtype.isFloat {
            guard a.floatArray.elementsEqual(b.floatArray, by: { $0.bitPattern == $1.bitPattern }) else { return nil }
        } else {
            guard a.intArray == b.intArray else { return nil }
        }
        return a
    }
}

/// One dimension as `ShapeKnowledge` finds it.
public enum SymbolicDim: Sendable, Equatable {
    case fixed(Int)
    case symbol(String)
    /// Changes with the input sizes but follows no one symbol.
    case unknown
}

extension Executor {
    /// Output shapes with symbolic dimensions kept symbolic (`?` for a dimension that follows
    /// no one symbol); nil when the graph cannot be planned (see `ShapeKnowledge`).
    public func symbolicOutputShapes() -> [String: [Dim]]? {
        let k = ShapeKnowledge(planning: graph)
        if k.isEmpty { return nil }
        var result: [String: [Dim]] = [:]
        for o in graph.outputs {
            guard let dims = k.dims(o.name) else { continue }
            result[o.name] = dims.map {
                switch $0 {
                case .fixed(let n): return .fixed(n)
                case .symbol(let s): return .symbol(s)
                case .unknown: return .symbol("?")
                }
            }
        }
        return result
    }
}
