import Dispatch
import Foundation
import Synchronization

/// The kernels' worker threads: one per extra core, each spinning for a short while after a
/// job before it sleeps, so that the next kernel's work starts within a microsecond or two.
/// `DispatchQueue.concurrentPerform` wakes its workers from sleep on every call; at batch 1 a
/// network makes about a hundred such calls of 20 to 300 us each, and a wake-up of tens of
/// microseconds each time was a large share of the latency.
///
/// One job runs at a time. A caller that finds the pool busy (a kernel called from inside
/// another parallel region, or from two threads at once) falls back to `concurrentPerform`.
/// Iterations are claimed through one ticket holding the job's generation and the next index,
/// so a worker still looking at a finished job can never take an iteration of the next one.
final class SpinPool: @unchecked Sendable {
    static let shared = SpinPool(threads: NNParallel.workers - 1)

    /// How long a worker spins for the next job before sleeping.
    private static let spinNanoseconds: UInt64 = 200_000

    private let threads: Int
    private let busy = Atomic<Bool>(false)
    /// The current job's generation, bumped after the job is published.
    private let generation = Atomic<Int>(0)
    /// `generation << 32 | next iteration`.
    private let ticket = Atomic<Int>(0)
    private let count = Atomic<Int>(0)
    /// The address of the caller's `(Int) -> Void`, valid while the job runs.
    private let body = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let wake = DispatchSemaphore(value: 0)

    private init(threads: Int) {
        self.threads = max(0, threads)
        for _ in 0..<self.threads {
            let thread = Thread { [unowned self] in self.work() }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(i)` for `i` in `0..<count` on the calling thread and the pool's; returns
    /// false (having run nothing) when the pool is busy or has no threads.
    func run(_ count: Int, _ body: (Int) -> Void) -> Bool {
        guard threads > 0, count < 1 << 31,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        withoutActuallyEscaping(body) { escaping in
            withUnsafePointer(to: escaping) { pointer in
                let gen = (generation.load(ordering: .relaxed) + 1) & 0x7fff_ffff
                self.body.store(Int(bitPattern: pointer), ordering: .relaxed)
                self.count.store(count, ordering: .relaxed)
                finished.store(0, ordering: .relaxed)
                ticket.store(gen << 32, ordering: .releasing)
                generation.store(gen, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    for _ in 0..<threads { wake.signal() }
                }
                claim(gen)
                while finished.load(ordering: .acquiring) < count {}
            }
        }
        busy.store(false, ordering: .releasing)
        return true
    }

    /// Takes iterations of job `gen` until none are left or another job has started.
    private func claim(_ gen: Int) {
        while true {
            let t = ticket.load(ordering: .acquiring)
            guard t >> 32 == gen else { return }
            let i = t & 0xffff_ffff
            guard i < count.load(ordering: .acquiring) else { return }
            guard ticket.compareExchange(expected: t, desired: t + 1, ordering: .acquiringAndReleasing).exchanged else {
                continue
            }
            // The job cannot end before this iteration does, so its body is still alive.
            let pointer = UnsafePointer<(Int) -> Void>(bitPattern: body.load(ordering: .acquiring))!
            pointer.pointee(i)
            finished.add(1, ordering: .releasing)
        }
    }

    private func work() {
        var seen = 0
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            var current = generation.load(ordering: .acquiring)
            while current == seen {
                if DispatchTime.now().uptimeNanoseconds - start > SpinPool.spinNanoseconds {
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    // Re-read after announcing the sleep: a job published in between is seen
                    // here, or its publisher sees the sleeper and signals.
                    if generation.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            claim(current)
        }
    }
}
