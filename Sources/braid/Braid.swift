import ArgumentParser
@preconcurrency import Glibc
import BraidTransfer
import Foundation

@main
struct Braid: ParsableCommand {
    static func main() {
        // Line-buffered stdout keeps results in order with the progress bar on stderr.
        setvbuf(stdout, nil, _IOLBF, 0)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "braid",
        abstract: "Import pretrained vision models from ONNX and Keras, fine-tune them together, export and run them.",
        version: braidVersion,
        subcommands: [Inspect.self, Run.self, Bench.self, Finetune.self, Eval.self, Convert.self, Export.self,
                      Experiment.self])
}


/// Prints one clear line to standard error and exits non-zero.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("braid: error: \(message)\n".utf8))
    exit(1)
}

/// Runs `body`, turning any thrown error into one line on standard error and exit status 1.
func reportingErrors<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch let e as ValidationError { fail(e.message) } catch { fail(String(describing: error)) }
}
