/// An error the caller can fix by changing one setting.
///
/// Library errors describe the remedy in words ("give its input size"); `setting` names the
/// setting as the library's options spell it (`inputSize`, `lr`, `onNonfinite`), so a front
/// end can point at its own spelling of it (a command-line flag, a configuration key).
public protocol SettingError: Error, CustomStringConvertible {
    /// The setting whose value would fix the problem, or nil.
    var setting: String? { get }
}
