import Foundation

/// A dataset opened by name or path, with its own split folders when it has them.
public struct OpenedData: Sendable {
    /// What was asked for, as the user wrote it.
    public let name: String
    public let classes: [String]
    /// The whole set, when it has no split folders of its own.
    public let whole: (any ImageDataset)?
    /// The set's own splits (`train/`, `val/`, `test/` folders, or MNIST's train/t10k files).
    public let train: (any ImageDataset)?
    public let validation: (any ImageDataset)?
    public let test: (any ImageDataset)?

    /// The image files left out because they failed to decode (`CorruptImagePolicy.skip`),
    /// with the reason for each.
    public var skipped: [(path: String, reason: String)] {
        [whole, train, validation, test].compactMap { $0 as? ImageFolder }.flatMap(\.skipped)
    }

    /// Train, validation and test sets. A set without its own splits is cut by
    /// `stratifiedSplit` with the given fractions; a missing own validation or test split is
    /// cut from the own train split the same way.
    public func splits(validationFraction: Double, testFraction: Double, seed: UInt64) throws
        -> (train: any ImageDataset, validation: any ImageDataset, test: any ImageDataset) {
        if let whole {
            let s = try whole.split(validationFraction: validationFraction, testFraction: testFraction, seed: seed)
            return (s.train, s.validation, s.test)
        }
        guard let train else { throw DataError.invalidArgument("\(name): no training data") }
        let needVal = validation == nil ? validationFraction : 0
        let needTest = test == nil ? testFraction : 0
        let cut = try train.split(validationFraction: needVal, testFraction: needTest, seed: seed)
        return (cut.train, validation ?? cut.validation, test ?? cut.test)
    }
}

/// Opens datasets the way the CLI's `--data` names them.
public enum DataCatalog {
    /// `$BRAID_CACHE/data`, or `./.cache/data` when unset (where tools/fetch-data writes).
    public static func defaultDataFolder() -> String {
        let env = ProcessInfo.processInfo.environment["BRAID_CACHE"] ?? ""
        return (env.isEmpty ? FileManager.default.currentDirectoryPath + "/.cache" : env) + "/data"
    }

    /// The fetched sets by name (case and `-`/`_` ignored): `mnist-5k`, `digits`, `textures`,
    /// `elpv` (solar-cell electroluminescence scans, a train/val/test ImageFolder).
    public static let fetchedNames = ["mnist5k": "mnist_5k.csv.gz", "digits": "digits.csv.gz",
                                      "textures": "textures", "elpv": "elpv"]

    /// Opens `data`:
    /// - a fetched set's name (`mnist-5k`, `digits`, `textures`, `elpv`), looked up in `dataFolder`;
    /// - a folder with `train/` (and optionally `val/` or `validation/`, `test/`) class folders;
    /// - a folder with MNIST's IDX files (`train-images-idx3-ubyte[.gz]`,
    ///   `train-labels-idx1-ubyte[.gz]`, optionally `t10k-...` as the test split);
    /// - any other folder: an ImageFolder (one subfolder per class);
    /// - `mnist_5k.csv.gz` or `digits.csv.gz` (by file name);
    /// - `FILE.h5#IMAGES,LABELS` (or `.hdf5`): an HDF5 file's NHWC (or NHW) images and labels
    ///   datasets, default names `images` and `labels`.
    ///
    /// - Throws: `DataError` naming the path (a missing fetched set says to run tools/fetch-data).
    public static func open(_ data: String, dataFolder: String = defaultDataFolder(),
                            onCorrupt: CorruptImagePolicy = .fail) throws -> OpenedData {
        let key = data.lowercased().replacingOccurrences(of: "-", with: "").replacingOccurrences(of: "_", with: "")
        let fm = FileManager.default
        var path = data
        if let file = fetchedNames[key] {
            path = dataFolder + "/" + file
            guard fm.fileExists(atPath: path) else {
                throw DataError.unreadable(path: path, reason: "not fetched yet: run tools/fetch-data")
            }
        }
        let base = (path as NSString).lastPathComponent
        var isDir: ObjCBool = false
        let hdf5Part = path.split(separator: "#", maxSplits: 1).map(String.init)
        if hdf5Part[0].hasSuffix(".h5") || hdf5Part[0].hasSuffix(".hdf5") {
            let names = hdf5Part.count > 1 ? hdf5Part[1].split(separator: ",").map(String.init) : ["images", "labels"]
            guard names.count == 2 else {
                throw DataError.invalidArgument("\(data): HDF5 data is FILE.h5#IMAGES,LABELS")
            }
            let dims = try hdf5Rank(hdf5Part[0], names[0])
            let set = try ArrayDatasets.hdf5(path: hdf5Part[0], images: names[0], labels: names[1],
                                             layout: dims == 3 ? .nhw : .nhwc)
            return OpenedData(name: data, classes: set.classes, whole: set, train: nil, validation: nil, test: nil)
        }
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw DataError.unreadable(path: path, reason: "no such file or folder")
        }
        if !isDir.boolValue {
            let set: InMemoryDataset
            if base.hasPrefix("mnist_5k.csv") {
                set = try ArrayDatasets.mnist5k(path: path)
            } else if base.hasPrefix("digits.csv") {
                set = try ArrayDatasets.digits(path: path)
            } else {
                throw DataError.invalidArgument("\(path): unknown data file; give a folder, mnist_5k.csv.gz, digits.csv.gz or FILE.h5#IMAGES,LABELS")
            }
            return OpenedData(name: data, classes: set.classes, whole: set, train: nil, validation: nil, test: nil)
        }
        if let train = idxFile(path, "train-images-idx3-ubyte"), let labels = idxFile(path, "train-labels-idx1-ubyte") {
            let trainSet = try ArrayDatasets.idx(images: train, labels: labels)
            var testSet: InMemoryDataset?
            if let ti = idxFile(path, "t10k-images-idx3-ubyte"), let tl = idxFile(path, "t10k-labels-idx1-ubyte") {
                testSet = try ArrayDatasets.idx(images: ti, labels: tl, classes: trainSet.classes)
            }
            return OpenedData(name: data, classes: trainSet.classes, whole: nil, train: trainSet,
                              validation: nil, test: testSet)
        }
        if ImageFolder.hasSplitFolders(path) {
            let s = try ImageFolder.splits(root: path, onCorrupt: onCorrupt)
            return OpenedData(name: data, classes: s.train.classes, whole: nil, train: s.train,
                              validation: s.validation, test: s.test)
        }
        let set = try ImageFolder(root: path, onCorrupt: onCorrupt)
        return OpenedData(name: data, classes: set.classes, whole: set, train: nil, validation: nil, test: nil)
    }

    private static func idxFile(_ folder: String, _ stem: String) -> String? {
        [stem, stem + ".gz"].map { folder + "/" + $0 }.first { FileManager.default.fileExists(atPath: $0) }
    }
}
