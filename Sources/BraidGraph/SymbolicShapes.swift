import BraidTensor

extension Executor {
    /// Output shapes with symbolic dimensions kept symbolic.
    ///
    /// Plans the graph twice with each symbolic input dimension bound to two different sizes
    /// (batch-like leading dims 1 and 2, other dims 64 and 96); an output dimension that
    /// follows a symbol's size is shown as that symbol, one that changes otherwise as `?`.
    /// Returns nil when the graph cannot be planned with those sizes.
    public func symbolicOutputShapes() -> [String: [Dim]]? {
        func bind(_ alt: Bool) -> ([String: (shape: [Int], dtype: DType)], [String: Int]) {
            var feeds: [String: (shape: [Int], dtype: DType)] = [:]
            var sym: [String: Int] = [:]
            for d in graph.feedInputs {
                guard let dims = d.shape else { continue }
                var shape: [Int] = []
                for (i, dim) in dims.enumerated() {
                    switch dim {
                    case .fixed(let n): shape.append(n)
                    case .symbol(let s):
                        let v = sym[s] ?? (i == 0 ? (alt ? 2 : 1) : (alt ? 96 : 64))
                        sym[s] = v
                        shape.append(v)
                    }
                }
                feeds[d.name] = (shape, d.dtype)
            }
            return (feeds, sym)
        }
        let (f1, s1) = bind(false), (f2, s2) = bind(true)
        guard f1.count == graph.feedInputs.count,
              let p1 = try? plan(for: f1), let p2 = try? plan(for: f2) else { return nil }
        var result: [String: [Dim]] = [:]
        for (o1, o2) in zip(p1.outputs, p2.outputs) {
            guard o1.tensor.shape.count == o2.tensor.shape.count else { continue }
            result[o1.name] = zip(o1.tensor.shape, o2.tensor.shape).map { a, b in
                if a == b { return .fixed(a) }
                if let s = s1.first(where: { $0.value == a && s2[$0.key] == b }) { return .symbol(s.key) }
                return .symbol("?")
            }
        }
        return result
    }
}
