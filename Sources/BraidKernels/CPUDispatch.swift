import CKernels

/// The instruction set Braid's C kernels (the `CKernels` target) run with. Each kernel is built
/// for every set the package's architecture has and one is chosen at run time: the best the CPU
/// supports, or the one `BRAID_CPU` names (`portable`, `avx2`, `avx512`, `auto`). A set the CPU
/// lacks falls back to the best it has, never to an illegal instruction.
public enum KernelISA: Int32, CaseIterable, Sendable, CustomStringConvertible {
    /// Baseline code for the architecture: SSE2 on x86-64, NEON on arm64.
    case portable = 0
    /// AVX2 and FMA (x86-64).
    case avx2 = 1
    /// AVX-512 F and VL (x86-64).
    case avx512 = 2

    public var description: String { String(cString: braid_isa_name(rawValue)) }

    /// The best set this CPU supports.
    public static var best: KernelISA { KernelISA(rawValue: braid_isa_best()) ?? .portable }

    /// The set the kernels use now.
    public static var active: KernelISA { KernelISA(rawValue: braid_isa_active()) ?? .portable }

    /// Uses `isa`, or the best set the CPU has if it lacks `isa`; returns the set in use.
    @discardableResult
    public static func select(_ isa: KernelISA) -> KernelISA {
        KernelISA(rawValue: braid_isa_select(isa.rawValue)) ?? .portable
    }

    /// The set a `BRAID_CPU` value names (`auto` is `best`), or nil for anything else.
    public static func parse(_ name: String) -> KernelISA? {
        KernelISA(rawValue: braid_isa_parse(name))
    }

    /// Every value `BRAID_CPU` accepts.
    public static let names = ["auto"] + allCases.map(\.description)
}
