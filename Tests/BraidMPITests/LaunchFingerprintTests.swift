import BraidMPI
import Foundation
import XCTest

/// What the start-up check across ranks compares and how it names a difference (no MPI
/// call: the comparison itself).
final class LaunchFingerprintTests: XCTestCase {
    func testNamesTheFirstDifference() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-fingerprint-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("grid.json").path
        try Data("{\"a\": 1}".utf8).write(to: URL(fileURLWithPath: config))
        let args = ["experiment", "--config", config, "--out", dir.path]
        let zero = try LaunchFingerprint.current(arguments: args)
        XCTAssertNotNil(zero.files[config], "a file named on the command line is fingerprinted")
        XCTAssertNil(zero.files[dir.path], "a directory is not")
        XCTAssertNil(try LaunchFingerprint.current(arguments: args).difference(from: zero, rank: 1))

        var other = zero
        other.binary &+= 1
        XCTAssertEqual(other.difference(from: zero, rank: 2)?.hasPrefix("rank 2 runs another braid binary"), true)

        let moreArgs = try LaunchFingerprint.current(arguments: args + ["--quiet"])
        XCTAssertEqual(moreArgs.difference(from: zero, rank: 1)?.hasPrefix("rank 1 was started with other arguments"), true)

        try Data("{\"a\": 2}".utf8).write(to: URL(fileURLWithPath: config))
        let edited = try LaunchFingerprint.current(arguments: args)
        XCTAssertEqual(edited.difference(from: zero, rank: 3), "\(config) differs between rank 3 and rank 0")
        try FileManager.default.removeItem(atPath: config)
        let missing = try LaunchFingerprint.current(arguments: args)
        XCTAssertEqual(missing.difference(from: zero, rank: 1), "\(config) is missing on rank 1")
    }

    func testLaunchDetection() {
        XCTAssertFalse(MPIWorld.isLaunched(environment: ["PATH": "/usr/bin"]))
        XCTAssertTrue(MPIWorld.isLaunched(environment: ["OMPI_COMM_WORLD_SIZE": "2"]))
        XCTAssertTrue(MPIWorld.isLaunched(environment: ["PMIX_RANK": "0"]))
        XCTAssertTrue(MPIWorld.isLaunched(environment: ["PMI_RANK": "1"]))
    }
}
