import BraidGraph
import BraidTensor
// Temporary until the importer lands.
public func importONNX(path: String) throws -> Graph { throw GraphError(node: nil, "not yet") }
public func readTensorProto(path: String) throws -> Tensor { throw GraphError(node: nil, "not yet") }
