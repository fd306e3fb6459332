import Foundation

/// A message Squall sends through the broker: a Codable value with a wire name.
public protocol SquallMessage: Codable, Sendable {
    /// The `type` field on the wire (`job`, `progress`, `heartbeat`, `result`, `control`).
    static var kind: String { get }
}

/// Why a message body could not be read. Decoding never crashes: a bad body is one of these.
public enum MessageDecodingError: Error, Equatable, CustomStringConvertible {
    /// Not JSON, a field missing or of the wrong type.
    case malformed(String)
    /// A schema version this build does not speak.
    case unsupportedVersion(found: Int, supported: Int)
    /// Well-formed, but another kind of message than the queue carries.
    case unexpectedType(found: String, expected: [String])

    public var description: String {
        switch self {
        case .malformed(let reason): "malformed message: \(reason)"
        case .unsupportedVersion(let found, let supported):
            "message schema version \(found) is not supported (this build speaks \(supported))"
        case .unexpectedType(let found, let expected):
            "message type \"\(found)\" is not expected here (expected \(expected.joined(separator: " or ")))"
        }
    }
}

/// What `squall.progress` carries: progress of a job, or a node's heartbeat.
public enum ProgressStreamMessage: Sendable, Equatable {
    case progress(ProgressPacket)
    case heartbeat(Heartbeat)
}

/// JSON on the wire: one object holding the schema version `v`, the `type`, and the message's fields.
public enum MessageCodec {
    /// The schema version this build writes and reads.
    public static let version = 1

    /// Encodes `message` with its `v` and `type` fields.
    public static func encode<Message: SquallMessage>(_ message: Message) -> Data {
        do {
            return try makeEncoder().encode(Envelope(message: message))
        } catch {
            // Only non-finite floats can fail, and the encoder spells those as strings.
            preconditionFailure("encoding \(Message.kind) failed: \(error)")
        }
    }

    /// Decodes a message of one kind, or says exactly why not.
    public static func decode<Message: SquallMessage>(
        _ type: Message.Type, from body: Data
    ) throws(MessageDecodingError) -> Message {
        let header = try decodeHeader(body)
        guard header.type == Message.kind else {
            throw .unexpectedType(found: header.type, expected: [Message.kind])
        }
        return try decodeBody(Message.self, from: body)
    }

    /// Decodes what `squall.progress` carries.
    public static func decodeProgressStream(_ body: Data) throws(MessageDecodingError) -> ProgressStreamMessage {
        let header = try decodeHeader(body)
        switch header.type {
        case ProgressPacket.kind: return .progress(try decodeBody(ProgressPacket.self, from: body))
        case Heartbeat.kind: return .heartbeat(try decodeBody(Heartbeat.self, from: body))
        default: throw .unexpectedType(found: header.type, expected: [ProgressPacket.kind, Heartbeat.kind])
        }
    }

    private struct Header: Decodable {
        var v: Int
        var type: String
    }

    private struct Envelope<Message: SquallMessage>: Encodable {
        var message: Message
        enum Keys: String, CodingKey { case v, type }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(MessageCodec.version, forKey: .v)
            try container.encode(Message.kind, forKey: .type)
            try message.encode(to: encoder)
        }
    }

    private static func decodeHeader(_ body: Data) throws(MessageDecodingError) -> Header {
        let header: Header
        do {
            header = try makeDecoder().decode(Header.self, from: body)
        } catch {
            throw .malformed(describe(error))
        }
        guard header.v == version else { throw .unsupportedVersion(found: header.v, supported: version) }
        return header
    }

    private static func decodeBody<Message: SquallMessage>(
        _ type: Message.Type, from body: Data
    ) throws(MessageDecodingError) -> Message {
        do {
            return try makeDecoder().decode(Message.self, from: body)
        } catch {
            throw .malformed("\(Message.kind): \(describe(error))")
        }
    }

    private static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }

    private static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }

    /// A one-line reason naming the field at fault, for logs and the dead-letter queue.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return String(describing: error) }
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "body" : "field \"\(keys.joined(separator: "."))\""
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = context.codingPath.isEmpty ? "" : " in \(path(context))"
            return "field \"\(key.stringValue)\" is missing\(parent)"
        case .typeMismatch(let type, let context): return "\(path(context)) is not \(type)"
        case .valueNotFound(let type, let context): return "\(path(context)) is null, expected \(type)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty
                ? "not valid JSON" : "\(path(context)): \(context.debugDescription)"
        @unknown default: return String(describing: error)
        }
    }
}
