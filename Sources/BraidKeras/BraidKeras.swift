import BraidGraph
// Temporary until the Keras importer lands.
public func importKeras(path: String) throws -> Graph { throw GraphError(node: nil, "\(path): Keras import not yet available") }
