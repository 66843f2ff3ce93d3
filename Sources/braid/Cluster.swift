import BraidMPI
import BraidTransfer
#if canImport(Glibc)
@preconcurrency import Glibc
#else
import Darwin
#endif
import Foundation

/// `MPIWorld` as the library's `ProcessGroup`.
final class MPIGroup: ProcessGroup {
    let world: MPIWorld
    init(_ world: MPIWorld) { self.world = world }
    var rank: Int { world.rank }
    var size: Int { world.size }
    func barrier() throws { try world.barrier() }
    func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] { try world.broadcast(bytes, root: root) }
    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { try world.allGather(bytes) }
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws { try world.allReduceSum(values) }
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws { try world.allReduceSum(values) }
    func send(_ bytes: [UInt8], to destination: Int, tag: Int) throws { try world.send(bytes, to: destination, tag: tag) }
    func poll(tag: Int) throws -> (source: Int, bytes: [UInt8])? { try world.poll(tag: tag) }
    func receive(tag: Int) throws -> (source: Int, bytes: [UInt8]) { try world.receive(tag: tag) }
}

/// The job this process belongs to when `mpirun` or `srun` started it.
///
/// Rank 0 prints and writes the run directory; every other rank writes its standard output
/// and progress to /dev/null and its files into a private scratch directory (removed at the
/// end), and reports only its own fatal error, prefixed with its rank.
enum Cluster {
    nonisolated(unsafe) static var world: MPIWorld?
    nonisolated(unsafe) static var group: (any ProcessGroup)?
    /// Where fatal errors go (this rank's real standard error).
    nonisolated(unsafe) static var errorOutput = FileHandle.standardError
    nonisolated(unsafe) static var scratch: RankRunDirectories?

    static var rank: Int { world?.rank ?? 0 }
    static var size: Int { world?.size ?? 1 }

    /// Starts MPI when a launcher started this process, and checks that every rank runs the
    /// same binary with the same arguments and files. Without a launcher, does nothing.
    static func start() {
        guard MPIWorld.isLaunched() else { return }
        do {
            let w = try MPIWorld.start()
            world = w
            if w.rank > 0 {
                let saved = dup(2)
                if saved >= 0 { errorOutput = FileHandle(fileDescriptor: saved, closeOnDealloc: false) }
                let null = open("/dev/null", O_WRONLY)
                if null >= 0 { dup2(null, 1); dup2(null, 2); close(null) }
            }
            if w.size > 1 {
                // A rank that ends makes the launcher stop the others with SIGTERM; one of
                // them names it (see MPIWorld.onStop).
                StopRequest.install()
                w.stopRequested = { StopRequest.pendingSignal != nil }
                let out = errorOutput
                w.onStop = { report, reporter in
                    if reporter { out.write(Data("braid: error: \(report)\n".utf8)) } else {
                        // Stay a moment, so that the reporter does not count this rank among the ended.
                        sleep(1)
                    }
                    exit(1)
                }
                group = MPIGroup(w)
                try w.checkSameLaunch(try LaunchFingerprint.current())
            }
        } catch {
            fail(String(describing: error))
        }
    }

    /// Waits for every rank, removes this rank's scratch directory and ends MPI.
    static func finish() {
        guard let w = world else { return }
        do { try w.barrier() } catch { fail(String(describing: error)) }
        scratch?.removeScratch()
        w.finalize()
    }

    /// The prefix of this rank's fatal error lines ("rank 2: "; empty on rank 0 or alone).
    static var errorPrefix: String { rank > 0 ? "rank \(rank): " : "" }

    /// The run directories this rank works in (`ProcessGroup.runDirectories`): `out` and
    /// `resume` unchanged without MPI and on rank 0, a private scratch directory on the others
    /// (removed by `finish`).
    static func runDirectories(out: String?, resume: String?) throws -> (out: String?, resume: String?) {
        guard let g = group else { return (out, resume) }
        let dirs = try g.runDirectories(out: out, resume: resume)
        scratch = dirs
        return (dirs.out, dirs.resume)
    }
}
