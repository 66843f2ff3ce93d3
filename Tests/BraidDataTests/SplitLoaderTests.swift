import BraidData
import BraidTensor
import Foundation
import XCTest

final class SplitLoaderTests: XCTestCase {
    private func dataset(perClass: [Int], size: Int = 4) throws -> InMemoryDataset {
        var labels: [Int] = []
        for (c, n) in perClass.enumerated() { labels += Array(repeating: c, count: n) }
        var pixels: [Float] = []
        for i in 0..<labels.count { pixels += (0..<(size * size)).map { Float((i * 7 + $0) % 256) } }
        return try InMemoryDataset(imageShape: [1, size, size], pixels: pixels, labels: labels,
                                   classes: perClass.indices.map { "c\($0)" })
    }

    func testStratifiedSplitProperties() throws {
        let labels = (0..<300).map { $0 % 3 == 0 ? 0 : ($0 % 3 == 1 ? 1 : 2) } + Array(repeating: 3, count: 40)
        let s = try stratifiedSplit(labels: labels, validationFraction: 0.1, testFraction: 0.2, seed: 42)
        let all = s.train + s.validation + s.test
        XCTAssertEqual(all.sorted(), Array(0..<labels.count), "a partition of every index")
        for c in 0..<4 {
            let n = labels.filter { $0 == c }.count
            XCTAssertEqual(s.test.filter { labels[$0] == c }.count, Int((Double(n) * 0.2).rounded()))
            XCTAssertEqual(s.validation.filter { labels[$0] == c }.count, Int((Double(n) * 0.1).rounded()))
        }
        XCTAssertEqual(try stratifiedSplit(labels: labels, validationFraction: 0.1, testFraction: 0.2, seed: 42), s)
        XCTAssertNotEqual(try stratifiedSplit(labels: labels, validationFraction: 0.1, testFraction: 0.2, seed: 43), s)
        XCTAssertThrowsError(try stratifiedSplit(labels: labels, validationFraction: 0.5, testFraction: 0.5, seed: 1))
        XCTAssertThrowsError(try stratifiedSplit(labels: labels, validationFraction: -0.1, testFraction: 0.5, seed: 1))
    }

    func testSubsetsFromSplit() throws {
        let ds = try dataset(perClass: [10, 10])
        let (train, val, test) = try ds.split(validationFraction: 0.2, testFraction: 0.3, seed: 5)
        XCTAssertEqual([train.count, val.count, test.count], [10, 4, 6])
        XCTAssertEqual(test.classCounts, [3, 3])
        XCTAssertEqual(try test.image(0).floatArray, try ds.image(test.indices[0]).floatArray)
    }

    func testLoaderCoversEpochDeterministicallyForSeveralSpecs() throws {
        let ds = try dataset(perClass: [5, 6])
        let specs = [InputSpec(channels: 3, height: 8, width: 6, layout: .nchw, scale: 1, mean: [1, 2, 3], std: [1, 1, 1], bgr: true),
                     InputSpec(channels: 1, height: 2, width: 2, layout: .nhwc, scale: 1.0 / 255, mean: [0.5], std: [0.5])]
        let loader = try BatchLoader(dataset: ds, specs: specs, batchSize: 4, seed: 9)
        XCTAssertEqual(loader.batchesPerEpoch, 3)
        func run(_ epoch: Int) throws -> [Batch] {
            var out: [Batch] = []
            let it = loader.epoch(epoch)
            while let b = try it.next() { out.append(b) }
            return out
        }
        let first = try run(0)
        XCTAssertEqual(first.map(\.labels.count), [4, 4, 3])
        XCTAssertEqual(first.flatMap(\.indices).sorted(), Array(0..<11))
        XCTAssertEqual(first[1].inputs[0].shape, [4, 3, 8, 6])
        XCTAssertEqual(first[2].inputs[1].shape, [3, 2, 2, 1])
        for b in first {
            XCTAssertEqual(b.labels, b.indices.map(ds.label))
            for (slot, index) in b.indices.enumerated() {
                for (k, spec) in specs.enumerated() {
                    let one = spec.adapt(try ds.image(index)).floatArray
                    let size = one.count
                    XCTAssertEqual(Array(b.inputs[k].floatArray[(slot * size)..<((slot + 1) * size)]), one)
                }
            }
        }
        let again = try run(0)
        XCTAssertEqual(again.map(\.indices), first.map(\.indices))
        XCTAssertEqual(again.map { $0.inputs[0].floatArray }, first.map { $0.inputs[0].floatArray })
        XCTAssertNotEqual(try run(1).map(\.indices), first.map(\.indices), "each epoch has its own order")
        let resumed = loader.epoch(0, startingAt: 1)
        XCTAssertEqual(try resumed.next()?.indices, first[1].indices)
    }

    func testUnshuffledDropLastAndEarlyStop() throws {
        let ds = try dataset(perClass: [3, 4])
        let loader = try BatchLoader(dataset: ds, specs: [InputSpec(channels: 1, height: 4, width: 4)],
                                     batchSize: 3, shuffle: false, dropLast: true)
        let it = loader.epoch(0)
        XCTAssertEqual(try it.next()?.indices, [0, 1, 2])
        XCTAssertEqual(try it.next()?.indices, [3, 4, 5])
        XCTAssertNil(try it.next())
        // Dropping an epoch early must release its producer thread cleanly.
        let single = try BatchLoader(dataset: ds, specs: [InputSpec(channels: 1, height: 4, width: 4)], batchSize: 1)
        for _ in 0..<20 { _ = try single.epoch(0).next() }
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertThrowsError(try BatchLoader(dataset: ds, specs: [], batchSize: 3))
        XCTAssertThrowsError(try BatchLoader(dataset: ds, specs: [InputSpec(channels: 1, height: 4, width: 4)], batchSize: 0))
    }

    func testAugmentedBatchesRepeatForTheSameSeed() throws {
        let ds = try dataset(perClass: [4, 4], size: 12)
        let aug = Augmentation(cropScale: 0.5...1, horizontalFlip: true, rotationDegrees: 15)
        let spec = InputSpec(channels: 1, height: 8, width: 8)
        let a = try BatchLoader(dataset: ds, specs: [spec], batchSize: 8, seed: 3, augmentation: aug)
        let b = try BatchLoader(dataset: ds, specs: [spec], batchSize: 8, seed: 3, augmentation: aug)
        let plain = try BatchLoader(dataset: ds, specs: [spec], batchSize: 8, seed: 3)
        let x = try XCTUnwrap(try a.epoch(2).next()), y = try XCTUnwrap(try b.epoch(2).next())
        let z = try XCTUnwrap(try plain.epoch(2).next())
        XCTAssertEqual(x.indices, z.indices)
        XCTAssertEqual(x.inputs[0].floatArray, y.inputs[0].floatArray)
        XCTAssertNotEqual(x.inputs[0].floatArray, z.inputs[0].floatArray)
    }

    func testCorruptImageDuringEpochIsThrownWithItsPath() throws {
        let root = try temporaryFolder(self)
        for name in ["a", "b"] {
            try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: fixture("rgb8.png"), toPath: root + "/\(name)/1.png")
        }
        let ds = try ImageFolder(root: root, preload: false)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: root + "/b/1.png"))
        let loader = try BatchLoader(dataset: ds, specs: [InputSpec(channels: 3, height: 2, width: 2)],
                                     batchSize: 1, shuffle: false)
        let it = loader.epoch(0)
        XCTAssertNotNil(try it.next())
        XCTAssertThrowsError(try it.next()) { error in
            XCTAssertTrue("\(error)".contains(root + "/b/1.png"), "\(error)")
        }
        XCTAssertNil(try it.next())
    }
}
