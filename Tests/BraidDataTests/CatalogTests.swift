import BraidData
import BraidTensor
import Foundation
import XCTest

final class CatalogTests: XCTestCase {
    func testFetchedNameWithoutDataSaysToFetch() throws {
        let empty = try temporaryFolder(self)
        XCTAssertThrowsError(try DataCatalog.open("MNIST-5k", dataFolder: empty)) { error in
            XCTAssertTrue("\(error)".contains("run tools/fetch-data"), "\(error)")
            XCTAssertTrue("\(error)".contains(empty + "/mnist_5k.csv.gz"), "\(error)")
        }
    }

    func testELPVIsAFetchedName() throws {
        let empty = try temporaryFolder(self)
        XCTAssertThrowsError(try DataCatalog.open("ELPV", dataFolder: empty)) { error in
            XCTAssertTrue("\(error)".contains("run tools/fetch-data"), "\(error)")
            XCTAssertTrue("\(error)".contains(empty + "/elpv"), "\(error)")
        }
    }

    func testIDXFolderWithoutTestSplitIsCutFromTrain() throws {
        let folder = try temporaryFolder(self)
        try FileManager.default.copyItem(atPath: fixture("tiny-images-idx3-ubyte.gz"),
                                         toPath: folder + "/train-images-idx3-ubyte.gz")
        try FileManager.default.copyItem(atPath: fixture("tiny-labels-idx1-ubyte"),
                                         toPath: folder + "/train-labels-idx1-ubyte")
        let data = try DataCatalog.open(folder)
        XCTAssertNil(data.whole)
        XCTAssertEqual(data.classes, ["0", "1", "2"])
        let s = try data.splits(validationFraction: 0, testFraction: 0.5, seed: 1)
        XCTAssertEqual([s.train.count, s.validation.count, s.test.count], [3, 0, 3])
        XCTAssertEqual(s.test.classCounts, [1, 1, 1])
    }

    func testHDF5WithDatasetNames() throws {
        let data = try DataCatalog.open(fixture("tiny.h5") + "#x_train,y_train")
        XCTAssertEqual(data.whole?.count, 6)
        XCTAssertThrowsError(try DataCatalog.open(fixture("tiny.h5"))) { error in
            XCTAssertTrue("\(error)".contains("images"), "\(error)")
        }
    }

    func testSplitFoldersKeepTheirOwnValidationAndTest() throws {
        let root = try temporaryFolder(self)
        for (split, n) in [("train", 4), ("val", 1), ("test", 2)] {
            for name in ["p", "q"] {
                let folder = "\(root)/\(split)/\(name)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for i in 0..<n {
                    try ImageCodec.writePNG(makeImage(3, 2, 2) { _, _, _ in Float(i) }, to: "\(folder)/\(i).png")
                }
            }
        }
        let s = try DataCatalog.open(root).splits(validationFraction: 0.25, testFraction: 0.25, seed: 0)
        XCTAssertEqual([s.train.count, s.validation.count, s.test.count], [8, 2, 4])
        XCTAssertThrowsError(try DataCatalog.open(fixture("rgb8.png")))
    }
}
