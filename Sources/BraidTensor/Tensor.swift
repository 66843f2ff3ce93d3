/// Element types Braid computes with.
///
/// Floating-point data is always held as `Float` (float16 and float64 are converted on import).
/// Every integer type and `bool` is held as `Int64` so that shape and index work has one
/// representation; the tag keeps the declared type so outputs can be written back faithfully.
public enum DType: String, Sendable, Equatable, CaseIterable {
    case float32, int64, int32, int16, int8, uint8, uint16, uint32, uint64, bool

    /// True for the one type whose storage is `Float`.
    public var isFloat: Bool { self == .float32 }

    /// Bytes per element in Braid's storage (not the file's).
    public var storageStride: Int { isFloat ? 4 : 8 }
}

/// A heap block owned by one tensor or one planned executor slot.
///
/// Memory is 64-byte aligned and zero-filled on creation. The block never moves, so kernels
/// may hold raw pointers into it for the duration of a call.
public final class TensorBuffer: @unchecked Sendable {
    public let raw: UnsafeMutableRawPointer
    public let byteCount: Int

    public init(byteCount: Int) {
        let n = max(byteCount, 64)
        raw = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: n)
        self.byteCount = n
    }

    deinit { raw.deallocate() }
}

/// An n-dimensional array: a shape, an element type and a buffer.
///
/// Tensors are values whose storage is shared by reference: copying a `Tensor` does not copy
/// its elements. Use `copy()` when an independent buffer is needed.
public struct Tensor: @unchecked Sendable {
    public var shape: [Int]
    public var dtype: DType
    public let buffer: TensorBuffer

    /// Wraps an existing buffer that holds at least `shape.product` elements of `dtype`.
    public init(shape: [Int], dtype: DType, buffer: TensorBuffer) {
        precondition(shape.reduce(1, *) * dtype.storageStride <= buffer.byteCount,
                     "buffer too small for shape \(shape)")
        self.shape = shape
        self.dtype = dtype
        self.buffer = buffer
    }

    /// A zero-filled tensor.
    public init(zeros shape: [Int], dtype: DType = .float32) {
        let count = shape.reduce(1, *)
        self.init(shape: shape, dtype: dtype, buffer: TensorBuffer(byteCount: count * dtype.storageStride))
    }

    /// A float32 tensor holding `values` in row-major order.
    public init(shape: [Int], floats values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        self.init(zeros: shape, dtype: .float32)
        let dst = floats
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { dst.update(from: base, count: values.count) }
        }
    }

    /// An integer-class tensor (any dtype but float32) holding `values` in row-major order.
    public init(shape: [Int], ints values: [Int64], dtype: DType = .int64) {
        precondition(!dtype.isFloat, "ints initializer needs an integer or bool dtype")
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        self.init(zeros: shape, dtype: dtype)
        let dst = ints
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { dst.update(from: base, count: values.count) }
        }
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }

    /// Element pointer for float32 tensors.
    public var floats: UnsafeMutablePointer<Float> {
        buffer.raw.assumingMemoryBound(to: Float.self)
    }

    /// Element pointer for integer and bool tensors.
    public var ints: UnsafeMutablePointer<Int64> {
        buffer.raw.assumingMemoryBound(to: Int64.self)
    }

    /// The elements as a Swift array (float32 only).
    public var floatArray: [Float] {
        precondition(dtype.isFloat, "floatArray on \(dtype) tensor")
        return Array(UnsafeBufferPointer(start: floats, count: count))
    }

    /// The elements as a Swift array (integer and bool only).
    public var intArray: [Int64] {
        precondition(!dtype.isFloat, "intArray on \(dtype) tensor")
        return Array(UnsafeBufferPointer(start: ints, count: count))
    }

    /// The elements as doubles, whatever the dtype: for comparisons and printing.
    public var doubleArray: [Double] {
        dtype.isFloat ? floatArray.map(Double.init) : intArray.map(Double.init)
    }

    /// A tensor with its own copy of the elements.
    public func copy() -> Tensor {
        let t = Tensor(zeros: shape, dtype: dtype)
        t.buffer.raw.copyMemory(from: buffer.raw, byteCount: count * dtype.storageStride)
        return t
    }

    /// The same elements seen with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "reshape \(shape) -> \(newShape)")
        return Tensor(shape: newShape, dtype: dtype, buffer: buffer)
    }

    /// A scalar read as Int64, for shape work on small integer tensors.
    public func int(at index: Int) -> Int64 {
        dtype.isFloat ? Int64(floats[index]) : ints[index]
    }
}

extension Array where Element == Int {
    /// Product of the entries (1 for a scalar shape).
    public var product: Int { reduce(1, *) }

    /// Row-major strides of a shape.
    public var strides: [Int] {
        var s = [Int](repeating: 1, count: count)
        var acc = 1
        for i in stride(from: count - 1, through: 0, by: -1) { s[i] = acc; acc *= self[i] }
        return s
    }
}
