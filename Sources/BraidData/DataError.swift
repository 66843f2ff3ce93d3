import Foundation

/// Errors from loading, decoding and preparing data. Every case names the file or folder.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A file or folder could not be read.
    case unreadable(path: String, reason: String)
    /// An image file is corrupt, truncated or of an unknown format.
    case corruptImage(path: String, reason: String)
    /// A class folder holds no image.
    case emptyClass(path: String)
    /// A dataset folder holds no class folder.
    case noClasses(path: String)
    /// The splits of one dataset disagree about the classes.
    case classMismatch(path: String, detail: String)
    /// A file's content does not have the expected structure.
    case badFormat(path: String, detail: String)
    /// Parameters that cannot work together (fractions, shapes, batch size...).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot read (\(reason))"
        case let .corruptImage(path, reason): return "\(path): corrupt image (\(reason))"
        case let .emptyClass(path): return "\(path): class folder holds no PNG or JPEG image"
        case let .noClasses(path): return "\(path): no class folders (expected one subfolder per class)"
        case let .classMismatch(path, detail): return "\(path): splits disagree on classes: \(detail)"
        case let .badFormat(path, detail): return "\(path): \(detail)"
        case let .invalidArgument(detail): return detail
        }
    }
}

/// Reads a whole file, mapping failures to `DataError.unreadable`.
func readFile(_ path: String) throws -> Data {
    do {
        return try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
        throw DataError.unreadable(path: path, reason: (error as NSError).localizedDescription)
    }
}

/// Reads a file and inflates it when it starts with the gzip magic bytes.
func readMaybeGzip(_ path: String) throws -> Data {
    let data = try readFile(path)
    guard data.count >= 2, data[data.startIndex] == 0x1F, data[data.startIndex + 1] == 0x8B else {
        return data
    }
    do {
        return try gunzip(data)
    } catch let DataError.badFormat(_, detail) {
        throw DataError.badFormat(path: path, detail: detail)
    }
}
