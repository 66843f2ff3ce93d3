// protobuf-c unpacks nested messages recursively with no depth limit, so a crafted file with
// deeply nested messages (subgraph attributes, sequence-of-sequence types) would overflow the
// stack. This walk follows the schema's message fields iteratively and refuses excessive
// depth before protobuf-c sees the bytes. Malformed input is left to protobuf-c to reject.

/// Message kinds of Formats/onnx/onnx.proto that can hold other messages.
enum WireMessage {
    case model, graph, node, attribute, valueInfo, tensor, sparseTensor
    case type, typeTensor, typeSequence, typeMap, typeOptional, typeSparseTensor, shape, leaf

    /// The kind of message field `field` holds, nil when it is not a message field.
    func child(_ field: UInt64) -> WireMessage? {
        switch (self, field) {
        case (.model, 7): return .graph
        case (.model, 8), (.model, 14): return .leaf
        case (.graph, 1): return .node
        case (.graph, 5): return .tensor
        case (.graph, 11), (.graph, 12), (.graph, 13): return .valueInfo
        case (.graph, 15): return .sparseTensor
        case (.graph, 16), (.node, 9), (.valueInfo, 4), (.tensor, 3), (.tensor, 13), (.tensor, 16):
            return .leaf
        case (.node, 5): return .attribute
        case (.attribute, 5), (.attribute, 10), (.sparseTensor, 1), (.sparseTensor, 2): return .tensor
        case (.attribute, 6), (.attribute, 11): return .graph
        case (.attribute, 14), (.attribute, 15), (.valueInfo, 2), (.typeSequence, 1),
             (.typeMap, 2), (.typeOptional, 1): return .type
        case (.attribute, 22), (.attribute, 23): return .sparseTensor
        case (.type, 1): return .typeTensor
        case (.type, 4): return .typeSequence
        case (.type, 5): return .typeMap
        case (.type, 9): return .typeOptional
        case (.type, 8): return .typeSparseTensor
        case (.type, 7), (.shape, 1): return .leaf
        case (.typeTensor, 2), (.typeSparseTensor, 2): return .shape
        default: return nil
        }
    }
}

/// Messages nested deeper than this are refused (a model with subgraphs uses a few dozen).
let maxMessageNesting = 100

/// Throws when `bytes`, read as a `root` message, nests messages deeper than
/// `maxMessageNesting`.
func checkNesting(_ bytes: UnsafeRawBufferPointer, root: WireMessage) throws {
    var stack: [(kind: WireMessage, end: Int)] = [(root, bytes.count)]
    var pos = 0

    func varint() -> UInt64? {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while pos < bytes.count, shift < 64 {
            let b = bytes[pos]
            pos += 1
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
        }
        return nil
    }

    while let top = stack.last {
        if pos >= top.end {
            stack.removeLast()
            continue
        }
        guard let key = varint() else { return }
        switch key & 7 {
        case 0: guard varint() != nil else { return }
        case 1: pos += 8
        case 5: pos += 4
        case 2:
            // The key and length varints may run past the enclosing message's end.
            guard let len = varint(), pos <= top.end, len <= UInt64(top.end - pos) else { return }
            if let kind = top.kind.child(key >> 3), kind != .leaf {
                guard stack.count < maxMessageNesting else {
                    throw ONNXError("messages nested more than \(maxMessageNesting) deep (corrupt or hostile file)")
                }
                stack.append((kind, pos + Int(len)))
            } else {
                pos += Int(len)
            }
        default: return
        }
        if pos > top.end { return }
    }
}
