import ArgumentParser
@preconcurrency import Glibc
import BraidRuntime
import Foundation

@main
struct Braid: ParsableCommand {
    static func main() {
        // Line-buffered stdout keeps results in order with the progress bar on stderr.
        setvbuf(stdout, nil, _IOLBF, 0)
        if let missing = missingCPUFeatures() {
            fail("this CPU lacks \(missing); Braid's kernels are built for x86-64 CPUs with AVX2 and FMA "
                 + "(Intel Haswell, AMD Zen or later)")
        }
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


/// The instruction-set extensions the kernels are compiled for (`-target-cpu haswell` in
/// Package.swift) that `/proc/cpuinfo` does not list, or nil when all are there (or the file
/// cannot be read, as on a system without it).
func missingCPUFeatures() -> String? {
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
    let flags = Set(line.split(separator: " ").map(String.init))
    let missing = ["avx", "avx2", "fma", "bmi2", "f16c", "movbe"].filter { !flags.contains($0) }
    return missing.isEmpty ? nil : missing.joined(separator: ", ")
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
