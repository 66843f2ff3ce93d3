import CMPI
import Foundation

/// An MPI call that failed, or a job that cannot go on (a mismatch between ranks).
public struct MPIError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The job's processes over Open MPI's `MPI_COMM_WORLD`, started only when a launcher
/// (`mpirun`, `mpiexec`, Slurm's `srun`) started this process.
///
/// Braid links libmpi, but calls nothing in it unless `isLaunched` is true: a process run
/// without a launcher makes no MPI call and behaves as a plain single process. Every
/// collective is called from one thread (MPI_THREAD_FUNNELED) in the same order on every
/// rank, and waits by polling a nonblocking request, sleeping between polls once the wait
/// gets long, so that a rank waiting for its peers does not take a core from them.
public final class MPIWorld: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// Ranks sharing this rank's machine (Open MPI's local size; 1 when unknown).
    public let localSize: Int
    private var finalized = false
    /// Each rank's host name and process id (learnt at start), to name a rank that ended.
    public private(set) var peers: [Peer] = []
    /// Consulted while waiting for other ranks: true when this process was asked to stop
    /// (launchers send SIGTERM to every other rank when one ends).
    public var stopRequested: (@Sendable () -> Bool)?
    /// Called (instead of waiting on) when `stopRequested` says so, with a line naming the
    /// ranks that ended, and whether this rank should print it (the lowest rank still
    /// running among those it can see); it must end the process.
    public var onStop: ((_ report: String, _ reporter: Bool) -> Never)?

    public struct Peer: Codable, Sendable {
        public var host: String
        public var pid: Int32
    }

    /// True when an MPI launcher started this process: Open MPI's `mpirun` sets
    /// `OMPI_COMM_WORLD_SIZE`; PMIx launchers (`srun --mpi=pmix`, PRRTE) set `PMIX_RANK`;
    /// PMI-1/2 launchers (`srun --mpi=pmi2`) set `PMI_RANK`.
    public static func isLaunched(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { environment[$0] != nil }
    }

    /// Initialises MPI. Call once, from the thread that makes every later MPI call.
    public static func start() throws -> MPIWorld {
        var provided: Int32 = 0
        try check(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided), "MPI_Init_thread")
        try check(braid_mpi_errors_return(), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0, size: Int32 = 0
        try check(MPI_Comm_rank(braid_mpi_world(), &rank), "MPI_Comm_rank")
        try check(MPI_Comm_size(braid_mpi_world(), &size), "MPI_Comm_size")
        let local = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        let world = MPIWorld(rank: Int(rank), size: Int(size), localSize: max(local, 1))
        let me = Peer(host: ProcessInfo.processInfo.hostName, pid: getpid())
        world.peers = try world.allGather(Array(try JSONEncoder().encode(me))).map {
            try JSONDecoder().decode(Peer.self, from: Data($0))
        }
        return world
    }

    /// Ranks on this machine whose process is gone (a rank on another machine cannot be
    /// checked from here).
    public func endedRanks() -> [Int] {
        let host = ProcessInfo.processInfo.hostName
        return peers.indices.filter { r in
            r != rank && peers[r].host == host && kill(peers[r].pid, 0) != 0 && errno == ESRCH
        }
    }

    /// Reports a stop requested while waiting (see `onStop`).
    func stopWaiting(_ call: String) -> Never {
        let ended = endedRanks()
        let lowestRunning = (0..<size).first { !ended.contains($0) } ?? rank
        let report: String
        if ended.isEmpty {
            report = "rank \(rank) was stopped while waiting for the other ranks in \(call) (a rank on another machine ended, or the job was cancelled)"
        } else {
            let names = ended.map { "rank \($0) (pid \(peers[$0].pid) on \(peers[$0].host))" }.joined(separator: ", ")
            report = "\(names) ended while the job ran; the other ranks stop"
        }
        if let onStop { onStop(report, lowestRunning == rank) }
        exit(1)
    }

    private init(rank: Int, size: Int, localSize: Int) {
        self.rank = rank
        self.size = size
        self.localSize = localSize
    }

    /// Ends MPI on this rank (idempotent). Every rank must call it before exiting normally.
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        MPI_Finalize()
    }

    /// Ends the whole job with `code` (MPI_Abort on every rank).
    public func abort(code: Int32) -> Never {
        MPI_Abort(braid_mpi_world(), code)
        exit(code)
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code != MPI_SUCCESS else { return }
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &text, &length)
        let message = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw MPIError("\(call) failed: \(message) (MPI error \(code))")
    }

    /// Waits for `request`: polls at once for about a millisecond (a collective among
    /// ranks that arrive together), then sleeps between polls, doubling the pause up to 2 ms.
    func wait(_ request: inout MPI_Request?, _ call: String) throws {
        var done: Int32 = 0
        var polls = 0
        var pause: UInt32 = 20
        while true {
            try Self.check(braid_mpi_test(&request, &done), call)
            if done != 0 { return }
            polls += 1
            if polls % 64 == 0, let stopRequested, stopRequested() { stopWaiting(call) }
            if polls > 2000 {
                usleep(pause)
                pause = min(pause * 2, 2000)
            }
        }
    }
}
