import Foundation
import Logging

/// A delivery whose body decoded as a Squall message.
public struct DecodedDelivery<Message: Sendable>: Sendable {
    public let message: Message
    /// The delivery, to ack, nack or reject once the message is handled.
    public let delivery: Delivery
}

/// Deliveries decoded with ``MessageCodec``: a body that does not decode is rejected to the
/// dead-letter queue with the decoding error logged, and consuming carries on.
public struct TypedDeliveries<Message: Sendable>: AsyncSequence, Sendable {
    public typealias Element = DecodedDelivery<Message>

    let deliveries: Deliveries
    let logger: Logger
    let decode: @Sendable (Data) throws(MessageDecodingError) -> Message

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: deliveries.makeAsyncIterator(), logger: logger, decode: decode)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: Deliveries.Iterator
        let logger: Logger
        let decode: @Sendable (Data) throws(MessageDecodingError) -> Message

        public mutating func next() async throws -> DecodedDelivery<Message>? {
            while let delivery = try await base.next() {
                do {
                    return DecodedDelivery(message: try decode(delivery.body), delivery: delivery)
                } catch {
                    logger.info(
                        "rejecting a malformed message to the dead-letter queue",
                        metadata: [
                            "amqp.queue": "\(delivery.queue)", "amqp.delivery_tag": "\(delivery.deliveryTag)",
                            "message.error": "\(error)",
                        ])
                    // A stale delivery needs nothing: the broker redelivers it and it is rejected then.
                    try? await delivery.reject()
                }
            }
            return nil
        }
    }
}

extension Deliveries {
    /// These deliveries decoded as `Message`; malformed bodies go to the dead-letter queue.
    public func decoding<Message: SquallMessage>(_ type: Message.Type, logger: Logger) -> TypedDeliveries<Message> {
        TypedDeliveries(deliveries: self, logger: logger) { body throws(MessageDecodingError) in
            try MessageCodec.decode(Message.self, from: body)
        }
    }

    /// `squall.progress` deliveries decoded as progress packets or heartbeats.
    public func decodingProgressStream(logger: Logger) -> TypedDeliveries<ProgressStreamMessage> {
        TypedDeliveries(deliveries: self, logger: logger) { body throws(MessageDecodingError) in
            try MessageCodec.decodeProgressStream(body)
        }
    }
}
