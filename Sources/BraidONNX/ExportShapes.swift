import BraidGraph
import BraidTensor

/// Value shapes and plan-time constants found by planning a graph with the Executor.
///
/// The graph is planned twice with each symbolic input dimension bound to two different sizes
/// (leading dims 1 and 2, others 64 and 96). A dimension equal in both plans is fixed; one that
/// follows a symbol is that symbol; any other is unknown. When the graph cannot be planned
/// (an input without a declared shape, a size the model rejects) nothing is known and writers
/// fall back to forms that do not need shapes.
struct ShapeKnowledge {
    private var first: [String: PlanValue] = [:]
    private var second: [String: PlanValue] = [:]
    private var symbols: [(name: String, first: Int, second: Int)] = []

    /// Knows nothing.
    init() {}

    init(planning graph: Graph) {
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

    /// The shape with nil for dimensions that change with the input sizes.
    func shape(_ value: String) -> [Int?]? {
        guard let a = first[value], let b = second[value], a.shape.count == b.shape.count else { return nil }
        return zip(a.shape, b.shape).map { $0 == $1 ? $0 : nil }
    }

    /// The element type planning found.
    func dtype(_ value: String) -> DType? { first[value]?.dtype }

    /// A plan-time constant equal in both plans (so not derived from a symbolic size).
    func constant(_ value: String) -> Tensor? {
        guard let a = first[value]?.constant, let b = second[value]?.constant,
              a.shape == b.shape, a.dtype == b.dtype else { return nil }
        if a.dtype.isFloat {
            guard a.floatArray.elementsEqual(b.floatArray, by: { $0.bitPattern == $1.bitPattern }) else { return nil }
        } else {
            guard a.intArray == b.intArray else { return nil }
        }
        return a
    }

    /// The shape as ONNX dimensions: fixed sizes, symbols a dimension follows, or unknown.
    func onnxDims(_ value: String) -> [ONNXDim]? {
        guard let a = first[value], let b = second[value], a.shape.count == b.shape.count else { return nil }
        return zip(a.shape, b.shape).map { x, y in
            if x == y { return .value(Int64(x)) }
            if let s = symbols.first(where: { $0.first == x && $0.second == y }) { return .param(s.name) }
            return .unknown
        }
    }
}
