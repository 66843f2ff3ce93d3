import BraidData
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// Loads the real datasets tools/fetch-data puts in the cache (absent: skipped, or a failure
/// under BRAID_REQUIRE_CACHE=1, which the test command sets). Expected figures were read from the
/// files with numpy (`np.loadtxt(gzip.open(path), delimiter=",")`).
final class RealDataTests: XCTestCase {
    func dataFolder() throws -> String {
        for file in ["mnist_5k.csv.gz", "digits.csv.gz", "textures", "sources/brick.png"] {
            try TestCache.require("data/" + file, madeBy: "tools/fetch-data")
        }
        return TestCache.path("data")
    }

    private func sum(_ t: Tensor) -> Double { t.floatArray.reduce(0) { $0 + Double($1) } }

    func testMNIST5k() throws {
        let ds = try ArrayDatasets.mnist5k(path: try dataFolder() + "/mnist_5k.csv.gz")
        XCTAssertEqual(ds.count, 5000)
        XCTAssertEqual(ds.imageShape, [1, 28, 28])
        XCTAssertEqual(ds.classes, (0..<10).map(String.init))
        XCTAssertEqual(ds.classCounts, Array(repeating: 500, count: 10))
        XCTAssertEqual([ds.label(0), ds.label(4999)], [0, 9])
        XCTAssertEqual(sum(try ds.image(0)), 31095)
        XCTAssertEqual(sum(try ds.image(4999)), 33540)
        XCTAssertEqual(ds.pixels.reduce(0) { $0 + Double($1) }, 131_267_102)
    }

    func testDigits() throws {
        let ds = try ArrayDatasets.digits(path: try dataFolder() + "/digits.csv.gz")
        XCTAssertEqual(ds.count, 1797)
        XCTAssertEqual(ds.imageShape, [1, 8, 8])
        XCTAssertEqual(ds.classCounts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
        XCTAssertEqual([ds.label(0), ds.label(1796)], [0, 8])
        // Values 0...16 are rescaled to 0...255.
        XCTAssertEqual(sum(try ds.image(0)), 294 * 255 / 16, accuracy: 1e-2)
        XCTAssertEqual(sum(try ds.image(1796)), 392 * 255 / 16, accuracy: 1e-2)
        XCTAssertEqual(Array(try ds.image(0).floatArray.prefix(4)), [0, 0, 5, 13].map { $0 * 255 / 16 })
    }

    func testTexturePatchesMatchTheirSourceImage() throws {
        let folder = try dataFolder()
        let ds = try ImageFolder(root: folder + "/textures")
        XCTAssertEqual(ds.classes, ["brick", "grass", "gravel"])
        XCTAssertEqual(ds.classCounts, [256, 256, 256])
        let source = try ImageCodec.decode(path: folder + "/sources/brick.png")
        XCTAssertEqual([source.width, source.height, source.channels], [512, 512, 1])
        // Patch r03_c05 is rows 96..<128, columns 160..<192 of brick.png.
        let index = try XCTUnwrap(ds.files.firstIndex { $0.hasSuffix("brick/r03_c05.png") })
        let patch = try ds.image(index)
        XCTAssertEqual(patch.shape, [1, 32, 32])
        var want: [Float] = []
        for y in 96..<128 { for x in 160..<192 { want.append(source.pixels[y * 512 + x]) } }
        XCTAssertEqual(patch.floatArray, want)
    }

    func testMNISTThroughTheLoaderAtAModelsInputSize() throws {
        let ds = try ArrayDatasets.mnist5k(path: try dataFolder() + "/mnist_5k.csv.gz")
        let (train, _, test) = try ds.split(validationFraction: 0.1, testFraction: 0.2, seed: 1)
        XCTAssertEqual(test.classCounts, Array(repeating: 100, count: 10))
        let spec = InputSpec(channels: 3, height: 48, width: 192, scale: 1.0 / 255,
                             mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], bgr: true)
        let loader = try BatchLoader(dataset: train, specs: [spec], batchSize: 32, seed: 1)
        let batch = try XCTUnwrap(try loader.epoch(0).next())
        XCTAssertEqual(batch.inputs[0].shape, [32, 3, 48, 192])
        let values = batch.inputs[0].floatArray
        XCTAssertEqual(values.min()!, -1, accuracy: 1e-5)
        XCTAssertLessThanOrEqual(values.max()!, 1.00001)
    }
}

extension RealDataTests {
    func testCatalogOpensTheFetchedSetsByName() throws {
        let folder = try dataFolder()
        let textures = try DataCatalog.open("textures", dataFolder: folder)
        XCTAssertEqual(textures.classes, ["brick", "grass", "gravel"])
        // Per class of 256: round(51.2) = 51 test, round(25.6) = 26 validation.
        let s = try textures.splits(validationFraction: 0.1, testFraction: 0.2, seed: 4)
        XCTAssertEqual([s.train.count, s.validation.count, s.test.count], [537, 78, 153])
        XCTAssertEqual(try DataCatalog.open("digits", dataFolder: folder).whole?.count, 1797)
    }
}

extension RealDataTests {
    /// tools/fetch-data's ELPV folder, opened by name. Counts follow Models/data-manifest's
    /// split rule; the pixel sums were read with Pillow (`np.asarray(Image.open(path)).sum()`).
    func testCatalogOpensELPVWithItsOwnSplits() throws {
        try TestCache.require("data/elpv/train", madeBy: "tools/fetch-data elpv")
        let data = try DataCatalog.open("elpv", dataFolder: TestCache.path("data"))
        XCTAssertNil(data.whole)
        XCTAssertEqual(data.classes, ["defective", "functional"])
        let train = try XCTUnwrap(data.train), validation = try XCTUnwrap(data.validation)
        let test = try XCTUnwrap(data.test)
        XCTAssertEqual(train.classCounts, [581, 1265])
        XCTAssertEqual(validation.classCounts, [120, 270])
        XCTAssertEqual(test.classCounts, [120, 268])
        // The own splits are used whatever fractions are asked for.
        let s = try data.splits(validationFraction: 0.3, testFraction: 0.3, seed: 2)
        XCTAssertEqual([s.train.count, s.validation.count, s.test.count], [1846, 390, 388])
        let first = try train.image(0)
        XCTAssertEqual(first.shape, [1, 300, 300])
        XCTAssertEqual(sum(first), 6_522_270)
        XCTAssertEqual(train.label(0), 0)
        XCTAssertEqual(sum(try test.image(test.count - 1)), 13_628_100)
        XCTAssertEqual(test.label(test.count - 1), 1)
    }
}
