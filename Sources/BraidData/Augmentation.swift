import BraidTensor
import Foundation

/// Random image augmentation applied to the target image before it is adapted to each
/// model's input (so every model of an ensemble sees the same augmented image). Everything is
/// off by default; digits must not be flipped.
public struct Augmentation: Sendable, Equatable {
    /// Random resized crop (torchvision's rule): a crop whose area is a fraction in
    /// `cropScale` of the image and whose aspect ratio is log-uniform in `cropRatio`, up to
    /// 10 tries, else the whole image. Nil: no crop.
    public var cropScale: ClosedRange<Float>?
    public var cropRatio: ClosedRange<Float>
    /// Mirror left-right with probability 1/2.
    public var horizontalFlip: Bool
    /// Rotate about the centre by an angle uniform in `[-d, d]` degrees (bilinear, zero fill).
    public var rotationDegrees: Float

    public init(cropScale: ClosedRange<Float>? = nil, cropRatio: ClosedRange<Float> = 0.75...(4.0 / 3.0),
                horizontalFlip: Bool = false, rotationDegrees: Float = 0) {
        self.cropScale = cropScale
        self.cropRatio = cropRatio
        self.horizontalFlip = horizontalFlip
        self.rotationDegrees = rotationDegrees
    }

    /// True when no transform is enabled.
    public var isIdentity: Bool { cropScale == nil && !horizontalFlip && rotationDegrees == 0 }

    /// Applies the enabled transforms to a `[C, H, W]` image with numbers from `g`. The crop
    /// keeps its own size (the input adaptation resizes it per model).
    public func apply(_ image: Tensor, using g: inout SplitMix64) -> Tensor {
        var x = image
        if let cropScale { x = randomCrop(x, scale: cropScale, using: &g) }
        if horizontalFlip && g.nextUnit() < 0.5 { x = flipped(x) }
        if rotationDegrees > 0 { x = rotated(x, degrees: g.uniform(-rotationDegrees...rotationDegrees)) }
        return x
    }

    private func randomCrop(_ image: Tensor, scale: ClosedRange<Float>, using g: inout SplitMix64) -> Tensor {
        let (h, w) = (image.shape[1], image.shape[2])
        let area = Float(h * w)
        let logRatio = log(cropRatio.lowerBound)...log(cropRatio.upperBound)
        for _ in 0..<10 {
            let target = area * g.uniform(scale)
            let ratio = exp(g.uniform(logRatio))
            let cw = Int((target * ratio).squareRoot().rounded())
            let ch = Int((target / ratio).squareRoot().rounded())
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let top = Int(g.next() % UInt64(h - ch + 1))
                let left = Int(g.next() % UInt64(w - cw + 1))
                return crop(image, top: top, left: left, height: ch, width: cw)
            }
        }
        return image
    }
}

/// The `[C, height, width]` window of a `[C, H, W]` image at (`top`, `left`).
public func crop(_ image: Tensor, top: Int, left: Int, height: Int, width: Int) -> Tensor {
    let (c, h, w) = (image.shape[0], image.shape[1], image.shape[2])
    precondition(top >= 0 && left >= 0 && top + height <= h && left + width <= w, "crop outside image")
    let out = Tensor(zeros: [c, height, width])
    for k in 0..<c {
        for y in 0..<height {
            (out.floats + (k * height + y) * width)
                .update(from: image.floats + (k * h + top + y) * w + left, count: width)
        }
    }
    return out
}

/// A `[C, H, W]` image mirrored left-right.
public func flipped(_ image: Tensor) -> Tensor {
    let w = image.shape[2]
    let out = Tensor(zeros: image.shape)
    let rows = image.count / w
    for r in 0..<rows {
        let src = image.floats + r * w, dst = out.floats + r * w
        for x in 0..<w { dst[x] = src[w - 1 - x] }
    }
    return out
}

/// A `[C, H, W]` image rotated counter-clockwise by `degrees` about its centre, sampled
/// bilinearly; points that fall outside the source are 0.
public func rotated(_ image: Tensor, degrees: Float) -> Tensor {
    let (c, h, w) = (image.shape[0], image.shape[1], image.shape[2])
    let out = Tensor(zeros: image.shape)
    let angle = degrees * .pi / 180
    let (cs, sn) = (cos(angle), sin(angle))
    let cx = Float(w - 1) / 2, cy = Float(h - 1) / 2
    for y in 0..<h {
        for x in 0..<w {
            let dx = Float(x) - cx, dy = Float(y) - cy
            // Inverse mapping: the source point that lands on (x, y).
            let sx = cs * dx - sn * dy + cx
            let sy = sn * dx + cs * dy + cy
            guard sx > -1, sy > -1, sx < Float(w), sy < Float(h) else { continue }
            let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
            let fx = sx - Float(x0), fy = sy - Float(y0)
            for k in 0..<c {
                let plane = image.floats + k * h * w
                func at(_ yy: Int, _ xx: Int) -> Float {
                    (yy >= 0 && yy < h && xx >= 0 && xx < w) ? plane[yy * w + xx] : 0
                }
                let top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
                let bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
                out.floats[(k * h + y) * w + x] = top * (1 - fy) + bottom * fy
            }
        }
    }
    return out
}
