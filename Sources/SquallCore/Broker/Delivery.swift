import Foundation

/// Where a publish goes.
public enum Destination: Sendable, Equatable, CustomStringConvertible {
    /// A queue, through the default exchange (the routing key is the queue's name).
    case queue(String)
    /// An exchange (the control fanout), with a routing key.
    case exchange(String, routingKey: String = "")

    var exchangeAndRoutingKey: (exchange: String, routingKey: String) {
        switch self {
        case .queue(let name): ("", name)
        case .exchange(let name, let routingKey): (name, routingKey)
        }
    }

    public var description: String {
        switch self {
        case .queue(let name): "queue \"\(name)\""
        case .exchange(let name, let routingKey):
            routingKey.isEmpty ? "exchange \"\(name)\"" : "exchange \"\(name)\" (key \"\(routingKey)\")"
        }
    }
}

/// One message of a batch publish.
public struct OutgoingMessage: Sendable {
    public var body: Data
    public var destination: Destination
    /// Written to disk by the broker (delivery mode 2); Squall's messages always are.
    public var persistent: Bool

    public init(body: Data, destination: Destination, persistent: Bool = true) {
        self.body = body
        self.destination = destination
        self.persistent = persistent
    }
}

/// A message handed to a consumer, to be settled exactly once with ``ack(multiple:)``,
/// ``nack(requeue:)`` or ``reject()``.
///
/// Until it is settled the broker holds the message for this consumer; if the connection drops
/// first, the broker delivers it again (with ``redelivered`` set) and settling this copy throws
/// ``BrokerError/deliveryStale(deliveryTag:)``.
public struct Delivery: Sendable {
    public let body: Data
    /// The broker delivered this message before (to this or another consumer) without an ack.
    public let redelivered: Bool
    /// How many times the message was handed out and returned before this delivery
    /// (`x-delivery-count` of quorum queues): 0 the first time; nil when the broker does not count.
    public let deliveryCount: Int?
    public let deliveryTag: UInt64
    public let exchange: String
    public let routingKey: String
    /// The queue consumed.
    public let queue: String
    let channel: UInt16
    let generation: UInt64
    let connection: AMQPConnection

    /// The message is done: the broker forgets it. With `multiple`, every earlier unsettled delivery
    /// of this consumer too.
    public func ack(multiple: Bool = false) async throws(BrokerError) {
        try await settle(.ack(multiple: multiple))
    }

    /// The message was not processed: back to the queue (`requeue`, counting as a delivery) or to the
    /// dead-letter queue.
    public func nack(requeue: Bool) async throws(BrokerError) {
        try await settle(.nack(requeue: requeue, multiple: false))
    }

    /// The message cannot be processed (malformed): it goes to the dead-letter queue.
    public func reject() async throws(BrokerError) {
        try await settle(.reject)
    }

    private func settle(_ kind: AMQPConnection.Settlement.Kind) async throws(BrokerError) {
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Void, BrokerError>, Never>) in
            connection.submit(
                .settle(
                    AMQPConnection.Settlement(
                        kind: kind, channel: channel, deliveryTag: deliveryTag, generation: generation,
                        completion: { continuation.resume(returning: $0) })))
        }
        try result.get()
    }
}

/// The deliveries of one consumer, across reconnections, until the consumer is cancelled.
///
/// Ending the iteration (leaving the loop, or cancelling the task) cancels the consumer: its channel
/// closes and unsettled deliveries go back to the queue. Deliveries of a connection that dropped are
/// skipped: the broker delivers those messages again on the new connection.
public struct Deliveries: AsyncSequence, Sendable {
    public typealias Element = Delivery

    /// Deliveries come in the batches the connection read in one pass over its socket.
    let stream: AsyncThrowingStream<[Delivery], any Error>
    let connection: AMQPConnection
    let consumerID: Int

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: stream.makeAsyncIterator(), connection: connection)
    }

    /// Stops consuming: the channel closes and unsettled deliveries return to the queue.
    public func cancel() {
        connection.submit(.cancel(consumerID: consumerID))
    }

    /// Stops new deliveries (basic.cancel) but keeps the channel open, so the deliveries already handed
    /// out can still be acked or nacked: a Consumer shutting down finishes its running jobs this way
    /// without the broker pushing it more. The sequence ends. Returns once the broker has answered
    /// (or the connection is gone); a delivery the broker sent just before the cancel took effect is
    /// dropped unsettled and requeued when the connection closes.
    public func stopDelivering() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            connection.submit(.stopDelivering(consumerID: consumerID, { continuation.resume() }))
        }
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<[Delivery], any Error>.Iterator
        let connection: AMQPConnection
        var batch: [Delivery] = []
        var position = 0

        init(base: AsyncThrowingStream<[Delivery], any Error>.Iterator, connection: AMQPConnection) {
            self.base = base
            self.connection = connection
        }

        public mutating func next() async throws -> Delivery? {
            while true {
                while position < batch.count {
                    let delivery = batch[position]
                    position += 1
                    if delivery.generation == connection.currentGeneration { return delivery }
                }
                guard let next = try await base.next() else { return nil }
                batch = next
                position = 0
            }
        }
    }
}
