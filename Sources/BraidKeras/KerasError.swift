/// A problem importing a Keras model: names the file and, when known, the layer (its name,
/// class and position in the model's layer list) and what was expected.
public struct KerasError: Error, CustomStringConvertible, Sendable {
    public var file: String?
    public var layer: String?
    public var layerClass: String?
    public var position: Int?
    public var message: String

    public init(file: String? = nil, layer: String? = nil, layerClass: String? = nil,
                position: Int? = nil, _ message: String) {
        self.file = file; self.layer = layer; self.layerClass = layerClass
        self.position = position; self.message = message
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let layer {
            var s = "layer '\(layer)'"
            if let layerClass { s += " (\(layerClass)" + (position.map { ", position \($0)" } ?? "") + ")" }
            parts.append(s)
        }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}
