/// An error the caller can fix by changing one setting.
///
/// Library errors describe the remedy in words ("give its input size"); `setting` names the
/// setting as the library's options spell it (`inputSize`, `lr`, `onNonfinite`), so a front
/// end can point at its own spelling of it (a command-line flag, a configuration key).
public protocol SettingError: Error, CustomStringConvertible {
    /// The setting whose value would fix the problem, or nil.
    var setting: String? { get }
}

/// A setting's name in words joined by `separator`: `weightDecay` -> `weight_decay` or
/// `weight-decay`; a run of capitals is one word (`cacheMB` -> `cache_mb`).
public func settingWords(_ setting: String, separator: String) -> String {
    var out = "", previousUpper = false
    for c in setting {
        if c.isUppercase && !previousUpper && !out.isEmpty { out += separator }
        out += c.lowercased()
        previousUpper = c.isUppercase
    }
    return out
}
