import BraidTensor
import Foundation

/// What to do with an image file that cannot be decoded.
public enum CorruptImagePolicy: Sendable {
    /// Throw `DataError.corruptImage` naming the file.
    case fail
    /// Leave the file out and record it in `skipped`.
    case skip
}

/// A folder with one subfolder per class, each holding PNG and JPEG files.
///
/// Classes are the subfolder names in lexical order; files are taken in lexical order, and
/// hidden files are ignored. Every file is decoded once when the dataset is opened, so a
/// corrupt one is found up front (failing or skipped per `onCorrupt`); with `preload` the
/// decoded images are kept in memory, otherwise they are decoded again on each access.
public struct ImageFolder: ImageDataset {
    public let root: String
    public let classes: [String]
    /// The image files, parallel to their labels.
    public let files: [String]
    public let labelValues: [Int]
    /// Files left out under `.skip`, with the reason.
    public let skipped: [(path: String, reason: String)]
    private let cache: [Tensor]?

    public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Opens `root`.
    ///
    /// - Parameter classes: expected class names (for a split that must agree with another);
    ///   the folder's classes must be exactly these.
    /// - Throws: `DataError.noClasses`, `.emptyClass` (naming the empty folder),
    ///   `.corruptImage` under `.fail`, `.classMismatch` when `classes` disagree.
    public init(root: String, onCorrupt: CorruptImagePolicy = .fail, preload: Bool = true,
                classes expected: [String]? = nil) throws {
        let fm = FileManager.default
        let found = try listDirectory(root).filter { name in
            var isDir: ObjCBool = false
            return fm.fileExists(atPath: root + "/" + name, isDirectory: &isDir) && isDir.boolValue
        }
        guard !found.isEmpty else { throw DataError.noClasses(path: root) }
        if let expected, expected != found {
            throw DataError.classMismatch(
                path: root, detail: "found \(found.count) classes \(found), expected \(expected.count) \(expected)")
        }
        var files: [String] = []
        var labels: [Int] = []
        var skipped: [(path: String, reason: String)] = []
        var cache: [Tensor] = []
        for (label, name) in found.enumerated() {
            let folder = root + "/" + name
            let images = try listDirectory(folder).filter {
                Self.imageExtensions.contains(($0 as NSString).pathExtension.lowercased())
            }
            var kept = 0
            for file in images {
                let path = folder + "/" + file
                do {
                    let decoded = try ImageCodec.decode(path: path).tensor()
                    if preload { cache.append(decoded) }
                } catch let DataError.corruptImage(path, reason) where onCorrupt == .skip {
                    skipped.append((path, reason))
                    continue
                }
                files.append(path)
                labels.append(label)
                kept += 1
            }
            if kept == 0 { throw DataError.emptyClass(path: folder) }
        }
        self.root = root
        self.classes = found
        self.files = files
        self.labelValues = labels
        self.skipped = skipped
        self.cache = preload ? cache : nil
    }

    public var count: Int { files.count }
    public func label(_ index: Int) -> Int { labelValues[index] }

    public func image(_ index: Int) throws -> Tensor {
        if let cache { return cache[index] }
        return try ImageCodec.decode(path: files[index]).tensor()
    }

    /// Opens a dataset stored as split folders `root/train`, `root/val` (or `validation`)
    /// and `root/test`, each an ImageFolder. Missing splits are nil; `train` is required.
    ///
    /// - Throws: `DataError.classMismatch` when a split's class folders differ from train's.
    public static func splits(root: String, onCorrupt: CorruptImagePolicy = .fail,
                              preload: Bool = true) throws -> (train: ImageFolder, validation: ImageFolder?, test: ImageFolder?) {
        let fm = FileManager.default
        guard fm.fileExists(atPath: root + "/train") else {
            throw DataError.badFormat(path: root, detail: "no train/ split folder")
        }
        let train = try ImageFolder(root: root + "/train", onCorrupt: onCorrupt, preload: preload)
        func open(_ names: [String]) throws -> ImageFolder? {
            guard let name = names.first(where: { fm.fileExists(atPath: root + "/" + $0) }) else { return nil }
            return try ImageFolder(root: root + "/" + name, onCorrupt: onCorrupt, preload: preload,
                                   classes: train.classes)
        }
        return (train, try open(["val", "validation"]), try open(["test"]))
    }

    /// True when `root` holds a `train` folder (the dataset's own split layout).
    public static func hasSplitFolders(_ root: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: root + "/train", isDirectory: &isDir) && isDir.boolValue
    }
}

func listDirectory(_ path: String) throws -> [String] {
    do {
        return try FileManager.default.contentsOfDirectory(atPath: path)
            .filter { !$0.hasPrefix(".") }
            .sorted()
    } catch {
        throw DataError.unreadable(path: path, reason: "not a readable folder")
    }
}
