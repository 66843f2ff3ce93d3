import BraidData
import BraidTensor
import Foundation
import XCTest

/// Data-parallel shards: the ranks' batches, put together in rank order, are the batches
/// one process gets, in the same order, from any starting batch.
final class ShardLoaderTests: XCTestCase {
    func testShardsTogetherAreTheWholeBatches() throws {
        let labels = (0..<50).map { $0 % 3 }
        let pixels = (0..<(50 * 9)).map { Float($0 % 251) }
        let ds = try InMemoryDataset(imageShape: [1, 3, 3], pixels: pixels, labels: labels, classes: ["a", "b", "c"])
        let spec = InputSpec(channels: 1, height: 3, width: 3)
        let loader = try BatchLoader(dataset: ds, specs: [spec], batchSize: 12, shuffle: true, dropLast: true, seed: 4)
        func batches(_ epoch: Int, from start: Int, shard: (index: Int, count: Int)?) throws -> [Batch] {
            var out: [Batch] = []
            let it = loader.epoch(epoch, startingAt: start, shard: shard)
            while let b = try it.next() { out.append(b) }
            return out
        }
        for ranks in [2, 3, 4] {
            for (epoch, start) in [(0, 0), (1, 2)] {
                let whole = try batches(epoch, from: start, shard: nil)
                let parts = try (0..<ranks).map { try batches(epoch, from: start, shard: ($0, ranks)) }
                XCTAssertEqual(whole.count, 4 - start)
                for (b, batch) in whole.enumerated() {
                    let together = parts.map { $0[b] }
                    XCTAssertEqual(together.flatMap(\.indices), batch.indices, "\(ranks) ranks, epoch \(epoch), batch \(b)")
                    XCTAssertEqual(together.flatMap(\.labels), batch.labels)
                    XCTAssertEqual(together.flatMap { $0.inputs[0].floatArray }, batch.inputs[0].floatArray)
                    XCTAssertEqual(together.map { $0.inputs[0].shape[0] }, Array(repeating: 12 / ranks, count: ranks))
                }
            }
        }
    }
}
