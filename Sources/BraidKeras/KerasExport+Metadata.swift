import BraidHDF5
import Foundation
import ZIPFoundation

/// Where `exportKeras(_:to:inputShapes:metadata:)` stores Braid's metadata: a root
/// attribute of an `.h5` (a JSON object of strings), a key of a `.keras`'s metadata.json.
public let braidMetadataKey = "braid_metadata"

/// The metadata `exportKeras` stored in a Keras file (empty when the file has none, as
/// files Keras itself wrote).
///
/// - Throws: `KerasError` naming the file when it cannot be read as HDF5 or as a zip, or
///   the stored metadata is not a JSON object of strings.
public func kerasFileMetadata(path: String) throws -> [String: String] {
    guard FileManager.default.fileExists(atPath: path) else { throw KerasError(file: path, "no such file") }
    let text: String?
    var isZip = false
    if let h = FileHandle(forReadingAtPath: path) {
        isZip = (try? h.read(upToCount: 4)) == Data([0x50, 0x4B, 0x03, 0x04])
        try? h.close()
    }
    if isZip {
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
            throw KerasError(file: path, "not a readable zip archive (\(error))")
        }
        guard let entry = archive["metadata.json"] else { return [:] }
        var data = Data()
        do { _ = try archive.extract(entry) { data.append($0) } } catch {
            throw KerasError(file: path, "cannot extract metadata.json (\(error))")
        }
        guard let meta = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw KerasError(file: path, "metadata.json is not a JSON object")
        }
        guard let stored = meta[braidMetadataKey] else { return [:] }
        guard let strings = stored as? [String: String] else {
            throw KerasError(file: path, "metadata.json: '\(braidMetadataKey)' is not an object of strings")
        }
        return strings
    }
    text = try hdf5Lock.withLock { try HDF5File(path: path).stringAttribute(braidMetadataKey) }
    guard let text else { return [:] }
    guard let strings = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: String] else {
        throw KerasError(file: path, "root attribute '\(braidMetadataKey)' is not a JSON object of strings")
    }
    return strings
}
