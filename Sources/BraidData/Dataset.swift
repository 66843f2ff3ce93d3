import BraidTensor

/// A labelled image collection.
///
/// `image(i)` returns a `[C, H, W]` float32 tensor with C = 1 (gray) or 3 (RGB) and pixel
/// values in 0...255 (whatever the source's own range: CSV/IDX/HDF5 loaders rescale with
/// their `maxValue`). Images of one dataset may differ in size (ImageFolder); the input
/// adaptation resizes them per model. Labels are indices into `classes`.
public protocol ImageDataset: Sendable {
    var count: Int { get }
    var classes: [String] { get }
    func label(_ index: Int) -> Int
    func image(_ index: Int) throws -> Tensor
}

extension ImageDataset {
    /// Every label in index order.
    public var labels: [Int] { (0..<count).map(label) }

    /// Number of images per class, indexed like `classes`.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classes.count)
        for i in 0..<count { counts[label(i)] += 1 }
        return counts
    }
}

/// Images held in memory as one `[N, C, H, W]` block of floats in 0...255 (what the IDX,
/// CSV and HDF5 loaders produce).
public struct InMemoryDataset: ImageDataset {
    /// `[C, H, W]` of every image.
    public let imageShape: [Int]
    public let classes: [String]
    public let labelValues: [Int]
    /// `N * C * H * W` values, image after image, each in CHW order.
    public let pixels: [Float]

    public init(imageShape: [Int], pixels: [Float], labels: [Int], classes: [String]) throws {
        guard imageShape.count == 3, imageShape[0] == 1 || imageShape[0] == 3 else {
            throw DataError.invalidArgument("image shape must be [C, H, W] with C 1 or 3, got \(imageShape)")
        }
        guard pixels.count == labels.count * imageShape.product else {
            throw DataError.invalidArgument("\(pixels.count) pixel values for \(labels.count) images of \(imageShape)")
        }
        if let bad = labels.first(where: { $0 < 0 || $0 >= classes.count }) {
            throw DataError.invalidArgument("label \(bad) outside the \(classes.count) classes")
        }
        self.imageShape = imageShape
        self.pixels = pixels
        self.labelValues = labels
        self.classes = classes
    }

    public var count: Int { labelValues.count }
    public func label(_ index: Int) -> Int { labelValues[index] }

    public func image(_ index: Int) throws -> Tensor {
        let size = imageShape.product
        let t = Tensor(zeros: imageShape)
        pixels.withUnsafeBufferPointer { src in
            t.floats.update(from: src.baseAddress! + index * size, count: size)
        }
        return t
    }
}

/// The images of `base` at `indices`, in that order (a split of a dataset).
public struct DatasetSubset: ImageDataset {
    public let base: any ImageDataset
    public let indices: [Int]

    public init(_ base: any ImageDataset, indices: [Int]) {
        self.base = base
        self.indices = indices
    }

    public var count: Int { indices.count }
    public var classes: [String] { base.classes }
    public func label(_ index: Int) -> Int { base.label(indices[index]) }
    public func image(_ index: Int) throws -> Tensor { try base.image(indices[index]) }
}

/// Class names "0", "1", ... for the labels of a numeric dataset (max label + 1 classes).
func numericClasses(_ labels: [Int]) -> [String] {
    (0...(labels.max() ?? 0)).map(String.init)
}
