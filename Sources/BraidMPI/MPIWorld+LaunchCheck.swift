import Foundation

/// What every rank of a job must share: the program file and the command line, and the
/// files the command line names (models, configurations, data files), by content.
public struct LaunchFingerprint: Codable, Sendable, Equatable {
    /// Hash of the running executable's bytes.
    public var binary: UInt64
    public var arguments: [String]
    /// Per argument that names a regular file: its hash (files above `contentLimit`
    /// bytes are hashed by size only).
    public var files: [String: UInt64]

    /// Files larger than this are compared by size, not content.
    public static let contentLimit = 512 << 20

    /// The fingerprint of this process: `/proc/self/exe` (or argv[0]) and `arguments`.
    public static func current(arguments: [String] = Array(CommandLine.arguments.dropFirst())) throws -> LaunchFingerprint {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        guard let binary = hashFile(exe) else { throw MPIError("cannot read the running program \(exe) to compare it across ranks") }
        var files: [String: UInt64] = [:]
        for argument in arguments {
            // `--option=value` and `NAME=path` forms name files too.
            for candidate in [argument] + argument.split(separator: "=", maxSplits: 1).dropFirst().map(String.init) {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
                   let h = hashFile(candidate) {
                    files[candidate] = h
                }
            }
        }
        return LaunchFingerprint(binary: binary, arguments: arguments, files: files)
    }

    /// What differs between `self` (rank `rank`) and `reference` (rank 0), or nil.
    public func difference(from reference: LaunchFingerprint, rank: Int, program: String = "braid") -> String? {
        if binary != reference.binary {
            return "rank \(rank) runs another \(program) binary than rank 0 (content hashes \(hex(binary)) and \(hex(reference.binary)))"
        }
        if arguments != reference.arguments {
            return "rank \(rank) was started with other arguments than rank 0 (\(arguments.joined(separator: " ")) vs \(reference.arguments.joined(separator: " ")))"
        }
        for name in Set(files.keys).union(reference.files.keys).sorted() where files[name] != reference.files[name] {
            let state = files[name] == nil ? "is missing on rank \(rank)" : reference.files[name] == nil ? "is missing on rank 0"
                : "differs between rank \(rank) and rank 0"
            return "\(name) \(state)"
        }
        return nil
    }

    private func hex(_ v: UInt64) -> String { String(v, radix: 16) }

    /// A 64-bit hash of a file's bytes (of its size alone beyond `contentLimit`), nil when
    /// it cannot be read.
    static func hashFile(_ path: String) -> UInt64? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let size = (attributes[.size] as? NSNumber)?.intValue else { return nil }
        guard size <= contentLimit else { return mix(0x6c61_7267_6566_696c, UInt64(size)) }
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return data.withUnsafeBytes { raw -> UInt64 in
            var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(raw.count)
            let words = raw.count / 8
            for i in 0..<words { h = mix(h, raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
            var tail: UInt64 = 0
            for i in (words * 8)..<raw.count { tail = tail << 8 | UInt64(raw[i]) }
            return mix(h, tail)
        }
    }

    /// One step of a multiply-xorshift hash (not cryptographic: it detects mistakes, not attacks).
    @inline(__always)
    static func mix(_ h: UInt64, _ word: UInt64) -> UInt64 {
        var x = (h ^ word) &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 31
        x = x &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 29)
    }
}

extension MPIWorld {
    /// Compares every rank's fingerprint with rank 0's; throws, on every rank, one error
    /// naming the first rank that differs and how.
    public func checkSameLaunch(_ fingerprint: LaunchFingerprint) throws {
        let all = try allGather(Array(try JSONEncoder().encode(fingerprint)))
        let decoded = try all.map { try JSONDecoder().decode(LaunchFingerprint.self, from: Data($0)) }
        for r in 1..<size {
            if let problem = decoded[r].difference(from: decoded[0], rank: r) {
                throw MPIError("the ranks of this job differ: \(problem); start every rank with the same braid and files")
            }
        }
    }
}
