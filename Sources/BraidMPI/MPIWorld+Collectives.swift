import CMPI
import Foundation

/// The collectives Braid uses. Each is nonblocking underneath and waited for by polling
/// (`wait`); every rank must make the same calls in the same order.
extension MPIWorld {
    /// Largest element count passed to one MPI call (MPI counts are 32-bit).
    static let chunk = 1 << 28

    /// Returns when every rank has called it.
    public func barrier() throws {
        var request: MPI_Request? = braid_mpi_request_null()
        try Self.check(MPI_Ibarrier(braid_mpi_world(), &request), "MPI_Ibarrier")
        try wait(&request, "MPI_Ibarrier")
    }

    /// Element-wise sum over the ranks of `values`, in place on every rank.
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        try allReduce(values, type: braid_mpi_float(), op: braid_mpi_sum())
    }

    /// Element-wise sum over the ranks of `values`, in place on every rank.
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        try allReduce(values, type: braid_mpi_double(), op: braid_mpi_sum())
    }

    /// Element-wise maximum over the ranks of `values`, in place on every rank.
    public func allReduceMax(_ values: UnsafeMutableBufferPointer<Double>) throws {
        try allReduce(values, type: braid_mpi_double(), op: braid_mpi_max())
    }

    private func allReduce<T>(_ values: UnsafeMutableBufferPointer<T>, type: MPI_Datatype?, op: MPI_Op?) throws {
        guard let base = values.baseAddress else { return }
        var start = 0
        while start < values.count {
            let n = min(Self.chunk, values.count - start)
            var request: MPI_Request? = braid_mpi_request_null()
            try Self.check(MPI_Iallreduce(braid_mpi_in_place(), base + start, Int32(n), type, op, braid_mpi_world(), &request),
                           "MPI_Iallreduce")
            try wait(&request, "MPI_Iallreduce")
            start += n
        }
    }

    /// `bytes` of rank `root`, on every rank (the others' `bytes` are ignored).
    public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        var count = [Int64(rank == root ? bytes.count : 0)]
        try count.withUnsafeMutableBytes { c in
            var request: MPI_Request? = braid_mpi_request_null()
            try Self.check(MPI_Ibcast(c.baseAddress, 1, braid_mpi_int64(), Int32(root), braid_mpi_world(), &request), "MPI_Ibcast")
            try wait(&request, "MPI_Ibcast")
        }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count[0]))
        try out.withUnsafeMutableBytes { b in
            var start = 0
            while start < b.count {
                let n = min(Self.chunk, b.count - start)
                var request: MPI_Request? = braid_mpi_request_null()
                try Self.check(MPI_Ibcast(b.baseAddress! + start, Int32(n), braid_mpi_byte(), Int32(root), braid_mpi_world(), &request),
                               "MPI_Ibcast")
                try wait(&request, "MPI_Ibcast")
                start += n
            }
        }
        return out
    }

    /// Every rank's `bytes`, indexed by rank, on every rank (each rank may send a different
    /// length, below 2 GiB in total).
    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var counts = [Int64](repeating: 0, count: size)
        counts[rank] = Int64(bytes.count)
        try counts.withUnsafeMutableBytes { c in
            var request: MPI_Request? = braid_mpi_request_null()
            try Self.check(MPI_Iallgather(braid_mpi_in_place(), 0, braid_mpi_int64(), c.baseAddress, 1, braid_mpi_int64(),
                                          braid_mpi_world(), &request), "MPI_Iallgather")
            try wait(&request, "MPI_Iallgather")
        }
        let total = counts.reduce(0, +)
        guard total < Int64(Int32.max) else { throw MPIError("allGather of \(total) bytes: more than one MPI call carries") }
        let sizes = counts.map { Int32($0) }
        var offsets = [Int32](repeating: 0, count: size)
        for r in 1..<max(size, 1) { offsets[r] = offsets[r - 1] + sizes[r - 1] }
        // One spare byte each way, so that empty buffers still have addresses.
        var all = [UInt8](repeating: 0, count: Int(total) + 1)
        let send = bytes + [0]
        try send.withUnsafeBytes { s in
            try all.withUnsafeMutableBytes { a in
                var request: MPI_Request? = braid_mpi_request_null()
                try Self.check(MPI_Iallgatherv(s.baseAddress, Int32(bytes.count), braid_mpi_byte(), a.baseAddress, sizes, offsets,
                                               braid_mpi_byte(), braid_mpi_world(), &request), "MPI_Iallgatherv")
                try wait(&request, "MPI_Iallgatherv")
            }
        }
        return (0..<size).map { r in Array(all[Int(offsets[r])..<Int(offsets[r] + sizes[r])]) }
    }
}
