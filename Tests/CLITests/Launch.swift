import Foundation
import XCTest

/// Starts `executable` with `args`, its standard output and error on pipes; the caller reads
/// them and waits (or signals the process first). `environment` adds to (or overrides) this
/// process's variables.
func launch(_ executable: String, _ args: [String], environment: [String: String] = [:]) throws -> (Process, Pipe, Pipe) {
    guard FileManager.default.isExecutableFile(atPath: executable) else {
        XCTFail("\(executable) missing: build with `swift build --build-tests` first")
        throw CocoaError(.fileNoSuchFile)
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if !environment.isEmpty {
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    return (p, out, err)
}
