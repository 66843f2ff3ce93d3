import BraidGraph

extension ShapeKnowledge {
    /// The shape as ONNX dimensions: fixed sizes, symbols a dimension follows, or unknown.
    func onnxDims(_ value: String) -> [ONNXDim]? {
        dims(value)?.map {
            switch $0 {
            case .fixed(let n): return .value(Int64(n))
            case .symbol(let s): return .param(s)
            case .unknown: return .unknown
            }
        }
    }
}
