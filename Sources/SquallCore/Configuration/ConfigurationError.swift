/// A setting that cannot be used, naming where it came from (`SQUALL_AMQP_URL` or `--amqp-url`).
public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
    /// The environment variable or flag that held the value.
    public var setting: String
    /// What is wrong with it, quoting the offending part (never a secret).
    public var reason: String

    public init(setting: String, reason: String) {
        self.setting = setting
        self.reason = reason
    }

    public var description: String { "\(setting): \(reason)" }
}
