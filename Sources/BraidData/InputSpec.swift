import BraidTensor

/// Memory layout of a model's image input.
public enum InputLayout: String, Sendable {
    /// `[N, C, H, W]`
    case nchw = "NCHW"
    /// `[N, H, W, C]`
    case nhwc = "NHWC"
}

/// How one model wants its input images: size, channels, channel order, normalisation and
/// layout. The adaptation of a `[C, H, W]` image in 0...255 is, in order:
/// 1. channel conversion: gray to RGB replicates the plane; RGB to gray uses ITU-R 601 luma
///    `0.299 R + 0.587 G + 0.114 B` (PIL's "L" weights, without its integer rounding);
/// 2. bilinear resize to `height x width` with half-pixel centres and edge clamping, no
///    antialiasing: OpenCV's `INTER_LINEAR` and ONNX Resize `linear`/`half_pixel`
///    (downscaling therefore aliases, as it does in OpenCV);
/// 3. RGB to BGR when `bgr`;
/// 4. `x = (pixel * scale - offset - mean[c]) / std[c]`, `c` in the model's channel order (a
///    single mean/std value applies to every channel; `offset` is 1 for the -1..1 range);
/// 5. the `layout` of the batch.
public struct InputSpec: Sendable, Equatable {
    public var channels: Int
    public var height: Int
    public var width: Int
    public var layout: InputLayout
    public var scale: Float
    public var mean: [Float]
    public var std: [Float]
    public var bgr: Bool
    /// Subtracted after scaling, before the mean (1 for `PixelRange.symmetric`).
    public var offset: Float

    public init(channels: Int, height: Int, width: Int, layout: InputLayout = .nchw,
                scale: Float = 1.0 / 255, mean: [Float] = [0], std: [Float] = [1], bgr: Bool = false,
                offset: Float = 0) {
        (self.channels, self.height, self.width, self.layout) = (channels, height, width, layout)
        (self.scale, self.mean, self.std, self.bgr, self.offset) = (scale, mean, std, bgr, offset)
    }

    /// Shape of one sample in `layout`.
    public var sampleShape: [Int] {
        layout == .nchw ? [channels, height, width] : [height, width, channels]
    }

    /// Shape of a batch of `n` samples.
    public func batchShape(_ n: Int) -> [Int] { [n] + sampleShape }

    /// Checks the fields can describe an image input.
    public func validate() throws {
        guard channels == 1 || channels == 3, height > 0, width > 0 else {
            throw DataError.invalidArgument("input spec needs 1 or 3 channels and a positive size, got \(channels)x\(height)x\(width)")
        }
        for (name, v) in [("mean", mean), ("std", std)] where v.count != 1 && v.count != channels {
            throw DataError.invalidArgument("input spec \(name) has \(v.count) values for \(channels) channels")
        }
        if std.contains(0) { throw DataError.invalidArgument("input spec std contains 0") }
    }
}

/// Converts a `[C, H, W]` image between 1 and 3 channels (see `InputSpec`).
public func convertChannels(_ image: Tensor, to channels: Int) -> Tensor {
    let c = image.shape[0]
    if c == channels { return image }
    let plane = image.shape[1] * image.shape[2]
    let out = Tensor(zeros: [channels, image.shape[1], image.shape[2]])
    let src = image.floats, dst = out.floats
    if c == 1 {
        for k in 0..<channels { (dst + k * plane).update(from: src, count: plane) }
    } else {
        for p in 0..<plane {
            dst[p] = 0.299 * src[p] + 0.587 * src[plane + p] + 0.114 * src[2 * plane + p]
        }
    }
    return out
}

/// Bilinear resize of a `[C, H, W]` image to `[C, height, width]` with half-pixel centres,
/// clamped at the edges, no antialiasing (OpenCV `INTER_LINEAR`).
public func resizeBilinear(_ image: Tensor, height: Int, width: Int) -> Tensor {
    let (c, h, w) = (image.shape[0], image.shape[1], image.shape[2])
    if h == height && w == width { return image }
    let out = Tensor(zeros: [c, height, width])
    let xs = taps(input: w, output: width)
    let ys = taps(input: h, output: height)
    let src = image.floats, dst = out.floats
    for k in 0..<c {
        let plane = src + k * h * w
        let target = dst + k * height * width
        for oy in 0..<height {
            let (y0, y1, fy) = ys[oy]
            let row0 = plane + y0 * w, row1 = plane + y1 * w
            for ox in 0..<width {
                let (x0, x1, fx) = xs[ox]
                let top = row0[x0] + (row0[x1] - row0[x0]) * fx
                let bottom = row1[x0] + (row1[x1] - row1[x0]) * fx
                target[oy * width + ox] = top + (bottom - top) * fy
            }
        }
    }
    return out
}

/// Source indices and weight of each output coordinate: `src = (dst + 0.5) * in / out - 0.5`,
/// clamped to `[0, in - 1]`.
private func taps(input: Int, output: Int) -> [(Int, Int, Float)] {
    let ratio = Double(input) / Double(output)
    return (0..<output).map { o in
        let s = min(max((Double(o) + 0.5) * ratio - 0.5, 0), Double(input - 1))
        let i0 = Int(s)
        return (i0, min(i0 + 1, input - 1), Float(s - Double(i0)))
    }
}

extension InputSpec {
    /// Adapts one `[C, H, W]` image in 0...255 and writes it as sample `index` of `batch`
    /// (a float32 tensor of shape `batchShape(N)`).
    public func write(_ image: Tensor, into batch: Tensor, at index: Int) {
        var x = image
        if channels < x.shape[0] {
            x = resizeBilinear(convertChannels(x, to: channels), height: height, width: width)
        } else {
            x = convertChannels(resizeBilinear(x, height: height, width: width), to: channels)
        }
        let plane = height * width
        let src = x.floats
        let dst = batch.floats + index * channels * plane
        for k in 0..<channels {
            let from = bgr && channels == 3 ? 2 - k : k
            let m = mean.count == 1 ? mean[0] : mean[k]
            let s = std.count == 1 ? std[0] : std[k]
            let a = scale / s, b = -(m + offset) / s
            let plane0 = src + from * plane
            if layout == .nchw {
                let out = dst + k * plane
                for p in 0..<plane { out[p] = plane0[p] * a + b }
            } else {
                for p in 0..<plane { dst[p * channels + k] = plane0[p] * a + b }
            }
        }
    }

    /// One adapted image as a `[1, ...sampleShape]` tensor.
    public func adapt(_ image: Tensor) -> Tensor {
        let batch = Tensor(zeros: batchShape(1))
        write(image, into: batch, at: 0)
        return batch
    }
}
