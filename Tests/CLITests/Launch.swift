import Foundation
import XCTest

/// Starts `executable` with `args`, its standard output and error on pipes; the caller reads
/// them and waits (or signals the process first).
func launch(_ executable: String, _ args: [String]) throws -> (Process, Pipe, Pipe) {
    guard FileManager.default.isExecutableFile(atPath: executable) else {
        XCTFail("\(executable) missing: build with `swift build --build-tests` first")
        throw CocoaError(.fileNoSuchFile)
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    return (p, out, err)
}
