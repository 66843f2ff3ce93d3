/* Replaced by protoc-c output for Formats/onnx/onnx.proto. */
