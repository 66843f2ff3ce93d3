/// A problem with an ONNX file: which file, which node or tensor, and what was expected.
///
/// `description` is one line, suitable for a command-line error.
public struct ONNXError: Error, CustomStringConvertible, Sendable {
    /// The file being read, when known.
    public var file: String?
    /// The node, tensor or value the problem is about, when there is one.
    public var subject: String?
    public var message: String

    public init(file: String? = nil, subject: String? = nil, _ message: String) {
        self.file = file; self.subject = subject; self.message = message
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let subject { parts.append(subject) }
        parts.append(message)
        return parts.joined(separator: ": ").replacingOccurrences(of: "\n", with: " ")
    }

    /// The same error with the file filled in when it was not known where it was raised.
    func inFile(_ path: String?) -> ONNXError {
        var e = self
        if e.file == nil { e.file = path }
        return e
    }
}
