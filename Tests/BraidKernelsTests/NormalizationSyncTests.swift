import BraidKernels
import BraidTestSupport
import Foundation
import XCTest

/// Two shards of a batch normalised on two threads with `batchNormTrainingSynced`, their
/// sums exchanged through an in-process all-reduce, against `batchNormTraining` on the
/// whole batch: the same outputs, statistics and gradients up to summation order.
final class NormalizationSyncTests: XCTestCase {
    /// An all-reduce between `parties` threads: each call blocks until every party has
    /// added its values, then returns the sums to all.
    final class ThreadAllReduce: @unchecked Sendable {
        let parties: Int
        let condition = NSCondition()
        var sums: [Float] = []
        var arrived = 0
        var generation = 0
        var left = 0

        init(parties: Int) { self.parties = parties }

        func reduce(_ values: UnsafeMutableBufferPointer<Float>) {
            condition.lock()
            defer { condition.unlock() }
            while left > 0 { condition.wait() }
            if arrived == 0 { sums = [Float](repeating: 0, count: values.count) }
            for i in 0..<values.count { sums[i] += values[i] }
            arrived += 1
            let mine = generation
            if arrived == parties {
                generation += 1
                left = parties
                arrived = 0
                condition.broadcast()
            } else {
                while generation == mine { condition.wait() }
            }
            for i in 0..<values.count { values[i] = sums[i] }
            left -= 1
            if left == 0 { condition.broadcast() }
        }
    }

    func testTwoShardsMatchTheWholeBatch() {
        let n = 6, c = 5, s = 7, half = n / 2
        var rng = SystemRandomNumberGenerator()
        let x = (0..<(n * c * s)).map { _ in Float.random(in: -2...3, using: &rng) }
        let dy = (0..<(n * c * s)).map { _ in Float.random(in: -1...1, using: &rng) }
        let scale = (0..<c).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
        let bias = (0..<c).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
        let rm0 = (0..<c).map { _ in Float.random(in: -0.2...0.2, using: &rng) }
        let rv0 = (0..<c).map { _ in Float.random(in: 0.8...1.2, using: &rng) }

        // The whole batch in one call.
        var y = [Float](repeating: 0, count: n * c * s), mean = [Float](repeating: 0, count: c)
        var inv = [Float](repeating: 0, count: c), rm = rm0, rv = rv0
        batchNormTraining(batch: n, channels: c, spatial: s, x: x, scale: scale, bias: bias, epsilon: 1e-5,
                          momentum: 0.1, runningMean: &rm, runningVar: &rv, y: &y, mean: &mean, invStd: &inv)
        var dx = [Float](repeating: 0, count: n * c * s), ds = [Float](repeating: 0, count: c)
        var db = [Float](repeating: 0, count: c)
        batchNormTrainingBackward(batch: n, channels: c, spatial: s, x: x, scale: scale, mean: mean, invStd: inv,
                                  dy: dy, dx: &dx, dScale: &ds, dBias: &db)

        // Two shards on two threads. Each shard's loss is the mean over its rows, so its
        // upstream gradient is twice the whole batch's for the same rows.
        final class Shard: @unchecked Sendable {
            var y: [Float], mean: [Float], inv: [Float], rm: [Float], rv: [Float]
            var dx: [Float], ds: [Float], db: [Float]
            init(rows: Int, c: Int, s: Int, rm: [Float], rv: [Float]) {
                y = [Float](repeating: 0, count: rows * c * s); mean = [Float](repeating: 0, count: c)
                inv = mean; self.rm = rm; self.rv = rv; dx = y; ds = mean; db = mean
            }
        }
        let shards = (0..<2).map { _ in Shard(rows: half, c: c, s: s, rm: rm0, rv: rv0) }
        let reducer = ThreadAllReduce(parties: 2)
        DispatchQueue.concurrentPerform(iterations: 2) { r in
            let sh = shards[r]
            let xs = Array(x[(r * half * c * s)..<((r + 1) * half * c * s)])
            let dys = dy[(r * half * c * s)..<((r + 1) * half * c * s)].map { $0 * 2 }
            var scratch = [Float](repeating: 0, count: 2 * c)
            batchNormTrainingSynced(batch: half, channels: c, spatial: s, x: xs, scale: scale, bias: bias, epsilon: 1e-5,
                                    momentum: 0.1, runningMean: &sh.rm, runningVar: &sh.rv, y: &sh.y, mean: &sh.mean,
                                    invStd: &sh.inv, processes: 2, allReduce: reducer.reduce)
            batchNormTrainingSyncedBackward(batch: half, channels: c, spatial: s, x: xs, scale: scale, mean: sh.mean,
                                            invStd: sh.inv, dy: dys, dx: &sh.dx, dScale: &sh.ds, dBias: &sh.db,
                                            scratch: &scratch, processes: 2, allReduce: reducer.reduce)
        }
        assertClose(shards[0].y + shards[1].y, y, tolerance: 1e-5, "y")
        for (r, sh) in shards.enumerated() {
            assertClose(sh.mean, mean, tolerance: 1e-5, "mean, shard \(r)")
            assertClose(sh.inv, inv, tolerance: 1e-5, "invStd, shard \(r)")
            assertClose(sh.rm, rm, tolerance: 1e-5, "running mean, shard \(r)")
            assertClose(sh.rv, rv, tolerance: 1e-5, "running variance, shard \(r)")
        }
        // Input gradients: each shard's rows get twice the whole batch's (its loss weighs them
        // double); parameter gradients averaged over the shards give the whole batch's.
        assertClose((shards[0].dx + shards[1].dx).map { $0 / 2 }, dx, tolerance: 1e-5, "dx")
        assertClose(zip(shards[0].ds, shards[1].ds).map { ($0 + $1) / 2 }, ds, tolerance: 1e-5, "dScale")
        assertClose(zip(shards[0].db, shards[1].db).map { ($0 + $1) / 2 }, db, tolerance: 1e-5, "dBias")
    }
}
