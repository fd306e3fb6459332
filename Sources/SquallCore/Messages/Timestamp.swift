import Foundation

/// A wall-clock instant in whole milliseconds since the Unix epoch, as packets carry it.
///
/// Within one attempt, packets come from one node and their timestamps order them: a row only
/// moves forward to a newer timestamp. JSON carries it as a plain integer.
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) {
        self.milliseconds = milliseconds
    }

    /// The current time, truncated to the millisecond.
    public static func now() -> Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(milliseconds: Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public init(from decoder: any Decoder) throws {
        milliseconds = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(milliseconds)
    }

    /// ISO 8601 with milliseconds, UTC: `2026-11-22T10:00:00.123Z`.
    ///
    /// Written digit by digit from `gmtime_r`: every log line carries one, and Foundation's ISO 8601
    /// format style cost more than the rest of the line.
    public var description: String {
        var (seconds, millisecond) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        if millisecond < 0 {
            seconds -= 1
            millisecond += 1000
        }
        var time = time_t(seconds)
        var fields = tm()
        gmtime_r(&time, &fields)
        var text = ""
        text.reserveCapacity(24)
        func append(_ value: Int, digits: Int) {
            let decimal = String(value)
            if decimal.count < digits { text += String(repeating: "0", count: digits - decimal.count) }
            text += decimal
        }
        append(Int(fields.tm_year) + 1900, digits: 4)
        text += "-"
        append(Int(fields.tm_mon) + 1, digits: 2)
        text += "-"
        append(Int(fields.tm_mday), digits: 2)
        text += "T"
        append(Int(fields.tm_hour), digits: 2)
        text += ":"
        append(Int(fields.tm_min), digits: 2)
        text += ":"
        append(Int(fields.tm_sec), digits: 2)
        text += "."
        append(Int(millisecond), digits: 3)
        return text + "Z"
    }
}
