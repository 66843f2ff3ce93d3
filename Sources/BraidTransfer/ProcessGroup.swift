import Foundation

/// The processes of one job working together (an MPI job's ranks, through BraidMPI), as the
/// searches, data-parallel training and experiment runner use them. Every member calls the
/// same collectives in the same order; each returns when all have called it.
///
/// Braid's library targets do not link MPI: a program passes an implementation (the `braid`
/// tool wraps `MPIWorld`); without one, everything runs in one process.
public protocol ProcessGroup: AnyObject, Sendable {
    /// This process's index, `0..<size`; rank 0 prints and writes run directories.
    var rank: Int { get }
    var size: Int { get }
    func barrier() throws
    /// `bytes` of rank `root`, on every rank.
    func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8]
    /// Every rank's `bytes`, indexed by rank.
    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]]
    /// Element-wise sum over the ranks, in place.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    /// Sends `bytes` to rank `destination` under `tag` (point to point, for work handed out
    /// as ranks free up).
    func send(_ bytes: [UInt8], to destination: Int, tag: Int) throws
    /// A message under `tag` from any rank, if one has arrived.
    func poll(tag: Int) throws -> (source: Int, bytes: [UInt8])?
    /// Waits for a message under `tag` from any rank.
    func receive(tag: Int) throws -> (source: Int, bytes: [UInt8])
}

extension ProcessGroup {
    /// Rank 0's value of `value` on every rank (JSON underneath).
    public func broadcast<T: Codable>(_ value: T, root: Int = 0) throws -> T {
        let bytes = rank == root ? Array(try JSONEncoder().encode(value)) : []
        return try JSONDecoder().decode(T.self, from: Data(try broadcast(bytes, root: root)))
    }

    /// Every rank's `value`, indexed by rank (JSON underneath).
    public func allGather<T: Codable>(_ value: T) throws -> [T] {
        try allGather(Array(try JSONEncoder().encode(value))).map { try JSONDecoder().decode(T.self, from: Data($0)) }
    }

    /// Sums of `values` over the ranks.
    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        var v = values
        try v.withUnsafeMutableBufferPointer { try allReduceSum($0) }
        return v
    }
}
