import CMPI
import Foundation

/// Point-to-point messages of bytes, for work handed out as ranks free up.
extension MPIWorld {
    /// Sends `bytes` (below 2 GiB) to rank `destination` with `tag`; returns once the
    /// buffer may be reused (the receiver may not have taken it yet).
    public func send(_ bytes: [UInt8], to destination: Int, tag: Int) throws {
        guard bytes.count < Int(Int32.max) else { throw MPIError("a message of \(bytes.count) bytes is more than one MPI call carries") }
        let payload = bytes + [0]
        try payload.withUnsafeBytes { b in
            var request: MPI_Request? = braid_mpi_request_null()
            try Self.check(MPI_Isend(b.baseAddress, Int32(bytes.count), braid_mpi_byte(), Int32(destination), Int32(tag),
                                     braid_mpi_world(), &request), "MPI_Isend")
            try wait(&request, "MPI_Isend")
        }
    }

    /// A message with `tag` from any rank if one has arrived (its source and bytes), else nil.
    public func poll(tag: Int) throws -> (source: Int, bytes: [UInt8])? {
        if let stopRequested, stopRequested() { stopWaiting("MPI_Iprobe") }
        var found: Int32 = 0, source: Int32 = 0, count: Int32 = 0
        try Self.check(braid_mpi_iprobe(Int32(tag), &found, &source, &count), "MPI_Iprobe")
        guard found != 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(count) + 1)
        try bytes.withUnsafeMutableBytes { b in
            try Self.check(braid_mpi_recv_bytes(b.baseAddress, count, source, Int32(tag)), "MPI_Recv")
        }
        bytes.removeLast()
        return (Int(source), bytes)
    }

    /// Waits for a message with `tag` from any rank, polling as `wait` does.
    public func receive(tag: Int) throws -> (source: Int, bytes: [UInt8]) {
        var polls = 0
        var pause: UInt32 = 20
        while true {
            if let message = try poll(tag: tag) { return message }
            polls += 1
            if polls % 64 == 0, let stopRequested, stopRequested() { stopWaiting("MPI_Recv") }
            if polls > 2000 {
                usleep(pause)
                pause = min(pause * 2, 2000)
            }
        }
    }
}
