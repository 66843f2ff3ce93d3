import BraidTensor
import Foundation

/// One batch: the same images adapted to every `InputSpec` of the loader.
public struct Batch: @unchecked Sendable {
    /// One float32 tensor per spec, in the loader's spec order, of shape `spec.batchShape(n)`.
    public let inputs: [Tensor]
    /// Class index of each sample.
    public let labels: [Int]
    /// Dataset index of each sample.
    public let indices: [Int]
}

/// Cuts a dataset into batches in a seeded order, adapts each image to several model inputs
/// at once, and prepares the next batch on a background thread while the current one is used.
///
/// The order of epoch `e` is a permutation fixed by (`seed`, `e`) (dataset order when
/// `shuffle` is false); augmentation numbers are fixed by (`seed`, `e`, dataset index). So a
/// run restarted at epoch `e` sees exactly the batches an uninterrupted run would.
public final class BatchLoader: @unchecked Sendable {
    public let dataset: any ImageDataset
    public let specs: [InputSpec]
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    public let augmentation: Augmentation

    /// - Throws: `DataError.invalidArgument` for an empty dataset, no spec, a batch size
    ///   below 1 or a spec that fails `InputSpec.validate()`.
    public init(dataset: any ImageDataset, specs: [InputSpec], batchSize: Int, shuffle: Bool = true,
                dropLast: Bool = false, seed: UInt64 = 0, augmentation: Augmentation = Augmentation()) throws {
        guard dataset.count > 0 else { throw DataError.invalidArgument("the dataset holds no image") }
        guard !specs.isEmpty else { throw DataError.invalidArgument("a batch loader needs at least one input spec") }
        guard batchSize >= 1 else { throw DataError.invalidArgument("batch size must be at least 1, got \(batchSize)") }
        for spec in specs { try spec.validate() }
        (self.dataset, self.specs, self.batchSize) = (dataset, specs, batchSize)
        (self.shuffle, self.dropLast, self.seed, self.augmentation) = (shuffle, dropLast, seed, augmentation)
    }

    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// Dataset indices in the order epoch `epoch` visits them.
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return Array(0..<dataset.count) }
        var g = SplitMix64(seed: seed, epoch, -1)
        return seededPermutation(dataset.count, seed: g.next())
    }

    /// Builds the batch of the given dataset indices synchronously.
    public func makeBatch(indices: [Int], epoch: Int) throws -> Batch {
        let inputs = specs.map { Tensor(zeros: $0.batchShape(indices.count)) }
        for (slot, index) in indices.enumerated() {
            var image = try dataset.image(index)
            if !augmentation.isIdentity {
                var g = SplitMix64(seed: seed, epoch, index)
                image = augmentation.apply(image, using: &g)
            }
            for (spec, batch) in zip(specs, inputs) { spec.write(image, into: batch, at: slot) }
        }
        return Batch(inputs: inputs, labels: indices.map(dataset.label), indices: indices)
    }

    /// The batches of epoch `epoch`, from batch `start` on, prepared one ahead on a
    /// background thread. Stop early by dropping the iterator.
    ///
    /// With `shard` (data-parallel training), each batch is only part `shard.index` of
    /// `shard.count` equal consecutive parts of the batch it would be without; `batchSize`
    /// must be a multiple of `shard.count` (the last batch too, unless `dropLast`).
    public func epoch(_ epoch: Int, startingAt start: Int = 0, shard: (index: Int, count: Int)? = nil) -> EpochIterator {
        let order = order(epoch: epoch)
        let groups = (start..<batchesPerEpoch).map { b in
            let whole = order[(b * batchSize)..<min((b + 1) * batchSize, order.count)]
            guard let shard else { return Array(whole) }
            let part = whole.count / shard.count
            return Array(whole.dropFirst(part * shard.index).prefix(part))
        }
        return EpochIterator(groups: groups) { [self] indices in try makeBatch(indices: indices, epoch: epoch) }
    }
}

/// The batches of one epoch, produced on a background thread one batch ahead of the reader.
public final class EpochIterator: @unchecked Sendable {
    /// State shared with the producer thread; the thread holds only this, so dropping the
    /// iterator runs its deinit, which releases a producer waiting for a free slot.
    private final class Channel: @unchecked Sendable {
        let lock = NSLock()
        // Both start at 0: libdispatch traps when a semaphore is freed with a value below
        // its initial one, which an early-dropped epoch would leave.
        let free = DispatchSemaphore(value: 0)
        let ready = DispatchSemaphore(value: 0)
        var queue: [Result<Batch, Error>] = []
        var cancelled = false
    }

    private let channel = Channel()
    private var delivered = 0
    private var failed = false
    /// Number of batches this iterator yields.
    public let count: Int

    init(groups: [[Int]], make: @escaping @Sendable ([Int]) throws -> Batch) {
        count = groups.count
        let channel = self.channel
        channel.free.signal()
        let thread = Thread {
            for group in groups {
                channel.free.wait()
                if channel.lock.withLock({ channel.cancelled }) { return }
                let result = Result { try make(group) }
                channel.lock.withLock { channel.queue.append(result) }
                channel.ready.signal()
                if case .failure = result { return }
            }
        }
        thread.name = "BraidData.BatchLoader"
        thread.start()
    }

    /// The next batch, or nil after the last one.
    ///
    /// - Throws: the error that preparing the batch raised (e.g. `DataError.corruptImage`);
    ///   the epoch ends there.
    public func next() throws -> Batch? {
        guard delivered < count, !failed else { return nil }
        channel.ready.wait()
        let result = channel.lock.withLock { channel.queue.removeFirst() }
        delivered += 1
        channel.free.signal()
        do {
            return try result.get()
        } catch {
            failed = true
            throw error
        }
    }

    deinit {
        channel.lock.withLock { channel.cancelled = true }
        channel.free.signal()
    }
}
