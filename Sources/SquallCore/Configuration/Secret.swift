/// A value that must never be printed: passwords, secret keys, session tokens.
///
/// Its `description` is a mask, so interpolating a `Secret` into a log line or an error cannot leak it.
/// Only code that hands the value to a C library reads ``revealed``.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The mask printed in place of every secret.
    public static let mask = "******"

    /// The secret itself, for the one call that needs it.
    public let revealed: String

    public init(_ value: String) {
        self.revealed = value
    }

    public var description: String { Self.mask }
    public var debugDescription: String { "Secret(\(Self.mask))" }
}
