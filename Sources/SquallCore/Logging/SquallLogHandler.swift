import Foundation
import Logging

/// Writes log records to standard error, as text lines or as one JSON object per line.
///
/// Text: `2026-11-22T10:00:00.123Z info squall-consumer: transfer done job.id=42 transfer.bytes=1024`.
/// JSON: `{"ts":"…","level":"info","logger":"squall-consumer","message":"transfer done","job.id":"42",…}`.
public struct SquallLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: LogFormat
    private let sink: LogSink

    public init(label: String, format: LogFormat, sink: LogSink = .standardError) {
        self.label = label
        self.format = format
        self.sink = sink
    }

    /// Installs this handler for the whole process. Call once, in `main`, never in tests.
    public static func bootstrap(format: LogFormat, level: Logger.Level = .info) {
        LoggingSystem.bootstrap { label in
            var handler = SquallLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line = Self.render(
            format: format, timestamp: Timestamp.now(), level: event.level, label: label,
            message: event.message.description, metadata: merged)
        sink.write(line)
    }

    /// One record as one line, ending in a newline.
    static func render(
        format: LogFormat, timestamp: Timestamp, level: Logger.Level, label: String, message: String,
        metadata: Logger.Metadata
    ) -> String {
        let keys = metadata.keys.sorted()
        switch format {
        case .text:
            var line = "\(timestamp) \(level) \(label): \(message)"
            for key in keys { line += " \(key)=\(metadata[key]!)" }
            return line + "\n"
        case .json:
            var line = "{\"ts\":\(quote(timestamp.description)),\"level\":\(quote(level.rawValue))"
            line += ",\"logger\":\(quote(label)),\"message\":\(quote(message))"
            for key in keys where !["ts", "level", "logger", "message"].contains(key) {
                line += ",\(quote(key)):\(quote(metadata[key]!.description))"
            }
            return line + "}\n"
        }
    }

    /// A JSON string literal.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Where log lines go: a file descriptor, written under a lock so lines never interleave.
public final class LogSink: @unchecked Sendable {
    public static let standardError = LogSink(fileDescriptor: 2)
    private let fileDescriptor: Int32
    private let lock = NSLock()

    public init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    func write(_ line: String) {
        lock.lock()
        defer { lock.unlock() }
        var bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { buffer in
                Foundation.write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written <= 0 { return }
            offset += written
        }
    }
}
