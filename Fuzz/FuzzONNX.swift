// libFuzzer target: arbitrary bytes as an .onnx model (protobuf decode, then graph import),
// and as a serialized TensorProto (ONNX test data). Built by tools/fuzz.
import BraidONNX
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    _ = try? importONNX(data: bytes, baseDirectory: nil)
    if let proto = try? bytes.withUnsafeBytes({ try ONNXTensorProto(serialized: $0) }) {
        _ = try? proto.tensor(baseDirectory: nil)
    }
    return 0
}
