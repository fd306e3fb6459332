/// Reads a service's own settings (window sizes, leases, intervals), each a flag and an environment
/// variable where the flag wins, as ``CommonOptions`` does for the shared ones; errors name the
/// flag or variable that held the value.
public struct SettingReader: Sendable {
    public let environment: [String: String]

    public init(environment: [String: String]) {
        self.environment = environment
    }

    private func pick(_ flag: String?, _ flagName: String, _ variable: String) -> (value: String, setting: String)? {
        if let flag { return (flag, "--\(flagName)") }
        if let value = environment[variable], !value.isEmpty { return (value, variable) }
        return nil
    }

    /// A whole number in `range`, or `defaultValue` when neither the flag nor the variable is set.
    public func integer(
        _ flag: String?, _ flagName: String, _ variable: String, default defaultValue: Int, range: ClosedRange<Int>
    ) throws(ConfigurationError) -> Int {
        guard let (value, setting) = pick(flag, flagName, variable) else { return defaultValue }
        guard let number = Int(value), range.contains(number) else {
            throw ConfigurationError(
                setting: setting,
                reason: "\"\(value)\" is not a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    /// A positive number of seconds (decimals allowed: `0.25`), or `defaultValue`.
    public func seconds(
        _ flag: String?, _ flagName: String, _ variable: String, default defaultValue: Duration
    ) throws(ConfigurationError) -> Duration {
        guard let (value, setting) = pick(flag, flagName, variable) else { return defaultValue }
        guard let seconds = Double(value), seconds > 0, seconds <= 31_536_000 else {
            throw ConfigurationError(setting: setting, reason: "\"\(value)\" is not a number of seconds above 0")
        }
        return .milliseconds(Int64((seconds * 1000).rounded(.up)))
    }

    /// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, or `defaultValue`.
    public func flag(
        _ flag: String?, _ flagName: String, _ variable: String, default defaultValue: Bool
    ) throws(ConfigurationError) -> Bool {
        guard let (value, setting) = pick(flag, flagName, variable) else { return defaultValue }
        switch value.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(setting: setting, reason: "\"\(value)\" is not 1 or 0")
        }
    }
}
