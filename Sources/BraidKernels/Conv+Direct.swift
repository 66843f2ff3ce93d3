import BraidTensor

/// Direct convolution and transposed convolution over any number of spatial axes, for the
/// shapes the im2col and Winograd paths do not take (3-D volumes). Loops over every output
/// (or input) element and kernel tap, on one thread. Forward only.
///
/// Conv: x `[N, C, in...]`, w `[M, C/group, k...]`, y `[N, M, out...]`.
/// Transposed: x `[N, C, in...]`, w `[C, M/group, k...]`, y `[N, M, out...]`.
public struct DirectConv: Sendable {
    public let batch: Int, inChannels: Int, outChannels: Int, group: Int
    public let input: [Int], output: [Int], kernel: [Int], strides: [Int], dilations: [Int], padBegin: [Int]
    public let transposed: Bool
    let inStrides: [Int], outStrides: [Int], kStrides: [Int], inPlane: Int, outPlane: Int, taps: Int

    public init(batch: Int, inChannels: Int, outChannels: Int, group: Int, input: [Int], output: [Int], kernel: [Int],
                strides: [Int], dilations: [Int], padBegin: [Int], transposed: Bool) {
        self.batch = batch; self.inChannels = inChannels; self.outChannels = outChannels; self.group = group
        self.input = input; self.output = output; self.kernel = kernel; self.strides = strides
        self.dilations = dilations; self.padBegin = padBegin; self.transposed = transposed
        inStrides = input.strides; outStrides = output.strides; kStrides = kernel.strides
        inPlane = input.reduce(1, *); outPlane = output.reduce(1, *); taps = kernel.reduce(1, *)
    }

    public func run(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let r = input.count
        let cg = inChannels / group, mg = outChannels / group
        let items = batch * outChannels
        for item in 0..<items {
            let b = item / outChannels, m = item % outChannels, g = m / mg
            let yp = y + item * outPlane
            yp.update(repeating: bias?[m] ?? 0, count: outPlane)
            do {
                for c in 0..<cg {
                    let ic = g * cg + c
                    let xp = x + (b * inChannels + ic) * inPlane
                    // Weight slice for (m, c): conv [M, C/g, k...]; transposed [C, M/g, k...].
                    let wp = transposed ? w + (ic * mg + (m - g * mg)) * taps : w + (m * cg + c) * taps
                    for tap in 0..<taps {
                        let wv = wp[tap]
                        if wv == 0 { continue }
                        // The element pairs this tap links: out = in * s - p + k * d (transposed) or
                        // in = out * s - p + k * d (conv).
                        let span = transposed ? inPlane : outPlane
                        for e in 0..<span {
                            var rest = e, other = 0, valid = true
                            for d in 0..<r {
                                let i = rest / (transposed ? inStrides[d] : outStrides[d])
                                rest %= transposed ? inStrides[d] : outStrides[d]
                                let k = (tap / kStrides[d]) % kernel[d]
                                let o = i * strides[d] - padBegin[d] + k * dilations[d]
                                let limit = transposed ? output[d] : input[d]
                                if o < 0 || o >= limit { valid = false; break }
                                other += o * (transposed ? outStrides[d] : inStrides[d])
                            }
                            if !valid { continue }
                            if transposed { yp[other] += xp[e] * wv } else { yp[e] += xp[other] * wv }
                        }
                    }
                }
            }
        }
    }
}

/// Col2Im: sums sliding blocks back into an image, the adjoint of im2col. x
/// `[N, C * prod(block), L]` with L the number of block positions, y `[N, C, image...]`.
public struct Col2Im: Sendable {
    public let batch: Int, channels: Int, image: [Int], block: [Int], strides: [Int], dilations: [Int], padBegin: [Int]
    /// Block positions along each axis.
    public let positions: [Int]
    let imageStrides: [Int], blockStrides: [Int], positionStrides: [Int], plane: Int, taps: Int, count: Int

    public init(batch: Int, channels: Int, image: [Int], block: [Int], strides: [Int], dilations: [Int],
                padBegin: [Int], positions: [Int]) {
        self.batch = batch; self.channels = channels; self.image = image; self.block = block
        self.strides = strides; self.dilations = dilations; self.padBegin = padBegin; self.positions = positions
        imageStrides = image.strides; blockStrides = block.strides; positionStrides = positions.strides
        plane = image.reduce(1, *); taps = block.reduce(1, *); count = positions.reduce(1, *)
    }

    public func run(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let r = image.count
        y.update(repeating: 0, count: batch * channels * plane)
        for b in 0..<batch {
            for c in 0..<channels {
                let yp = y + (b * channels + c) * plane
                for tap in 0..<taps {
                    let row = x + ((b * channels + c) * taps + tap) * count
                    for l in 0..<count {
                        var at = 0, valid = true
                        for d in 0..<r {
                            let k = (tap / blockStrides[d]) % block[d]
                            let p = (l / positionStrides[d]) % positions[d]
                            let i = p * strides[d] - padBegin[d] + k * dilations[d]
                            if i < 0 || i >= image[d] { valid = false; break }
                            at += i * imageStrides[d]
                        }
                        if valid { yp[at] += row[l] }
                    }
                }
            }
        }
    }
}
