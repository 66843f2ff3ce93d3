import ArgumentParser
#if canImport(Glibc)
@preconcurrency import Glibc
#else
import Darwin
#endif
import BraidKernels
import BraidRuntime
import Foundation

@main
struct Braid: ParsableCommand {
    static func main() {
        // Line-buffered stdout keeps results in order with the progress bar on stderr.
        setvbuf(stdout, nil, _IOLBF, 0)
        checkKernelSet()
        checkKernelThreads()
        Cluster.start()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
        Cluster.finish()
    }

    static let configuration = CommandConfiguration(
        commandName: "braid",
        abstract: "Import pretrained vision models from ONNX and Keras, fine-tune them together, export and run them.",
        version: braidVersion,
        subcommands: [Inspect.self, Run.self, Bench.self, Finetune.self, Eval.self, Steps.self, Convert.self, Export.self,
                      Experiment.self])
}


/// Checks `BRAID_CPU` (the instruction set the kernels use): a value that names no set is an
/// error; a set this CPU lacks is a warning, and the kernels use the best set it has.
func checkKernelSet() {
    guard let wanted = ProcessInfo.processInfo.environment["BRAID_CPU"], !wanted.isEmpty else { return }
    guard let isa = KernelISA.parse(wanted) else {
        fail("BRAID_CPU=\(wanted) names no instruction set; expected one of \(KernelISA.names.joined(separator: ", "))")
    }
    if isa.rawValue > KernelISA.best.rawValue {
        FileHandle.standardError.write(Data(
            "braid: warning: BRAID_CPU=\(wanted): this CPU lacks \(isa); the kernels use \(KernelISA.best)\n".utf8))
    }
}

/// Checks `BRAID_THREADS` (the kernels' thread count): anything but a whole number from 1 on is
/// an error, not a silent fallback to one thread per core.
func checkKernelThreads() {
    guard let wanted = ProcessInfo.processInfo.environment["BRAID_THREADS"], !wanted.isEmpty else { return }
    guard KernelThreads.parse(wanted) != nil else {
        fail("BRAID_THREADS=\(wanted) is not a thread count; expected a whole number from 1 on")
    }
}

/// Prints one clear line to standard error and exits non-zero.
func fail(_ message: String) -> Never {
    if Cluster.rank > 0 {
        // An error every rank meets is reported once, by rank 0: mpirun ends this rank
        // (SIGTERM) when rank 0 exits with it, before this rank's pause is over.
        signal(SIGTERM, SIG_DFL)
        sleep(2)
    }
    Cluster.errorOutput.write(Data("braid: error: \(Cluster.errorPrefix)\(message)\n".utf8))
    exit(1)
}

/// Runs `body`, turning any thrown error into one line on standard error and exit status 1.
func reportingErrors<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch let e as ValidationError { fail(e.message) } catch { fail(describe(error)) }
}

/// An error as one line; a library error that names the setting fixing it points at the flag
/// that sets it.
func describe(_ error: any Error) -> String {
    guard let e = error as? any SettingError, let setting = e.setting else { return String(describing: error) }
    return "\(e.description) (\(flagName(setting)))"
}

/// The command-line flag of a library setting: `inputSize` -> `--input-size`, `cacheMB` ->
/// `--cache-mb`.
func flagName(_ setting: String) -> String { "--" + settingWords(setting, separator: "-") }
