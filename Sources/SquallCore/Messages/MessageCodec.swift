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
            return try encoder.encode(Envelope(message: message))
        } catch {
            // Only non-finite floats can fail, and the encoder spells those as strings.
            preconditionFailure("encoding \(Message.kind) failed: \(error)")
        }
    }

    /// Decodes a message of one kind, or says exactly why not.
    public static func decode<Message: SquallMessage>(
        _ type: Message.Type, from body: Data
    ) throws(MessageDecodingError) -> Message {
        switch try decodeOnce(Incoming<Message, Message>.self, from: body) {
        case .first(let message): message
        case .second(let message): message
        }
    }

    /// Decodes what `squall.progress` carries.
    public static func decodeProgressStream(_ body: Data) throws(MessageDecodingError) -> ProgressStreamMessage {
        switch try decodeOnce(Incoming<ProgressPacket, Heartbeat>.self, from: body) {
        case .first(let packet): .progress(packet)
        case .second(let heartbeat): .heartbeat(heartbeat)
        }
    }

    private enum Keys: String, CodingKey { case v, type }

    private struct Envelope<Message: SquallMessage>: Encodable {
        var message: Message

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(MessageCodec.version, forKey: .v)
            try container.encode(Message.kind, forKey: .type)
            try message.encode(to: encoder)
        }
    }

    /// One of two kinds of message, told apart by `type`, read in one pass over the body: the
    /// header first (`v`, `type`), then the fields of the kind it names.
    private enum Incoming<First: SquallMessage, Second: SquallMessage>: Decodable {
        case first(First)
        case second(Second)

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Keys.self)
            let version = try container.decode(Int.self, forKey: .v)
            let type = try container.decode(String.self, forKey: .type)
            guard version == MessageCodec.version else {
                throw Refusal.wrong(.unsupportedVersion(found: version, supported: MessageCodec.version))
            }
            do {
                switch type {
                case First.kind: self = .first(try First(from: decoder))
                case Second.kind: self = .second(try Second(from: decoder))
                default:
                    let expected = First.kind == Second.kind ? [First.kind] : [First.kind, Second.kind]
                    throw Refusal.wrong(.unexpectedType(found: type, expected: expected))
                }
            } catch let refusal as Refusal {
                throw refusal
            } catch {
                throw Refusal.wrong(.malformed("\(type): \(MessageCodec.describe(error))"))
            }
        }
    }

    /// Carries a decoding verdict out of `init(from:)` past the decoder.
    private enum Refusal: Error {
        case wrong(MessageDecodingError)
    }

    private static func decodeOnce<Value: Decodable>(
        _ type: Value.Type, from body: Data
    ) throws(MessageDecodingError) -> Value {
        do {
            return try decoder.decode(Value.self, from: body)
        } catch let Refusal.wrong(error) {
            throw error
        } catch {
            throw .malformed(describe(error))
        }
    }

    // One of each for every message: both are safe to share between threads, and making them
    // per message cost as much as a small body's parsing.
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }()

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }()

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
