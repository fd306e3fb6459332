import Foundation
import Logging
import ServiceLifecycle

/// Squall's RabbitMQ client: confirmed publishing, acked consuming, and recovery from drops.
///
/// One `Broker` is one AMQP connection on its own thread (see docs/broker.md). It declares the
/// ``Topology`` on every (re)connection, reconnects with capped exponential backoff and full jitter
/// after a drop, and restarts its consumers; the broker redelivers what was unacked. Calls made
/// while it reconnects wait for it (up to ``Configuration/readyTimeout``) and then fail with a
/// retryable ``BrokerError``. Nothing of rabbitmq-c is visible here.
public final class Broker: Service, Sendable {
    public struct Configuration: Sendable {
        public var url: AMQPURL
        public var topology: Topology
        public var reconnect: ReconnectPolicy
        /// How long a call waits for a (re)connection before failing with ``BrokerError/notReady(_:)``.
        public var readyTimeout: Duration
        public var connectTimeout: Duration

        public init(
            url: AMQPURL, topology: Topology = Topology(), reconnect: ReconnectPolicy = ReconnectPolicy(),
            readyTimeout: Duration = .seconds(30), connectTimeout: Duration = .seconds(10)
        ) {
            self.url = url
            self.topology = topology
            self.reconnect = reconnect
            self.readyTimeout = readyTimeout
            self.connectTimeout = connectTimeout
        }
    }

    public let configuration: Configuration
    private let connection: AMQPConnection

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        connection = AMQPConnection(
            settings: AMQPConnection.Settings(
                url: configuration.url, topology: configuration.topology, reconnect: configuration.reconnect,
                connectTimeout: configuration.connectTimeout),
            logger: logger)
    }

    /// The names of the queues and exchanges this broker declares.
    public var topology: Topology { configuration.topology }

    /// Whether the connection is up with its topology and consumers in place (false while reconnecting).
    public var isReady: Bool { connection.isReady }

    /// The heartbeat interval the broker agreed to, in seconds (0: off), for the current connection.
    public var negotiatedHeartbeatSeconds: Int { connection.negotiatedHeartbeat }

    /// How many connections have been opened so far: 1 until the first drop.
    public var connectionsOpened: Int { connection.connectionsOpened }

    /// Ack frames sent so far: single acks asked for in the same pass of the connection thread that
    /// settle the oldest open deliveries of a consumer go as one `multiple` ack (a quorum queue writes
    /// one log entry per frame).
    public var ackFramesSent: Int { connection.ackFramesSent }

    /// Starts the connection thread and waits until the first connection is ready.
    public func start() async throws(BrokerError) {
        connection.start()
        try await waitUntilReady(timeout: configuration.readyTimeout)
    }

    /// Closes the connection (after waiting briefly for confirms in flight) and ends its thread.
    /// Consumers' streams finish; their unsettled deliveries return to the queue.
    public func shutdown() async {
        await connection.shutdown()
    }

    /// Runs as a lifecycle service: connects, serves until graceful shutdown, then closes.
    public func run() async throws {
        do {
            // A shutdown while the first connection is still being made must not wait out readyTimeout.
            try await cancelWhenGracefulShutdown { try await self.start() }
        } catch  where Task.isShuttingDownGracefully {
            await shutdown()
            return
        }
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Waits until the connection is ready, or fails with ``BrokerError/notReady(_:)`` after `timeout`.
    public func waitUntilReady(timeout: Duration) async throws(BrokerError) {
        let deadline = ContinuousClock.now + timeout
        while !connection.isReady {
            if connection.isFinished { throw .shutDown }
            if ContinuousClock.now >= deadline || Task.isCancelled {
                throw .notReady(connection.lastFailure ?? "not connected after \(timeout)")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Publishes one persistent message and returns once the broker has confirmed it.
    ///
    /// Throws when the broker refuses it (nack), returns it as unroutable (the mandatory flag is
    /// always set), or when the connection drops before the confirm (retryable: publish again).
    public func publish(_ body: Data, to destination: Destination, persistent: Bool = true) async throws(BrokerError) {
        let outcomes = try await send([OutgoingMessage(body: body, destination: destination, persistent: persistent)])
        if let error = outcomes[0] { throw error }
    }

    /// Publishes many messages at once and waits for every confirm: much faster than one
    /// ``publish(_:to:persistent:)`` after another. Throws ``BrokerError/batchFailed(_:)`` naming
    /// each message (by index) that was not confirmed; the others were.
    public func publishBatch(_ messages: [OutgoingMessage]) async throws(BrokerError) {
        guard !messages.isEmpty else { return }
        let outcomes = try await send(messages)
        let failures = outcomes.enumerated().compactMap { index, error in
            error.map { BrokerError.BatchFailure(index: index, error: $0) }
        }
        if !failures.isEmpty { throw .batchFailed(failures) }
    }

    private func send(_ messages: [OutgoingMessage]) async throws(BrokerError) -> [BrokerError?] {
        try await waitUntilReady(timeout: configuration.readyTimeout)
        return await withCheckedContinuation { continuation in
            connection.submit(
                .publish(
                    messages,
                    AMQPConnection.PublishBatch(count: messages.count) { continuation.resume(returning: $0) }))
        }
    }

    /// Consumes `queue` with manual acks, at most `prefetch` deliveries unsettled at a time.
    ///
    /// Returns once the broker has accepted the consumer. The sequence goes on across reconnections
    /// and ends when cancelled, when the broker shuts down, or with an error if the queue goes away.
    public func consume(queue: String, prefetch: Int) async throws(BrokerError) -> Deliveries {
        try await consume(source: .queue(queue), prefetch: prefetch)
    }

    /// Consumes the control fanout through a fresh exclusive, auto-delete queue (a new one on every
    /// connection: cancel messages sent while disconnected are not seen).
    public func consumeControl(prefetch: Int = 10) async throws(BrokerError) -> Deliveries {
        try await consume(source: .fanout(exchange: configuration.topology.control), prefetch: prefetch)
    }

    private func consume(
        source: AMQPConnection.ConsumerRecord.Source, prefetch: Int
    ) async throws(BrokerError)
        -> Deliveries
    {
        try await waitUntilReady(timeout: configuration.readyTimeout)
        let (stream, continuation) = AsyncThrowingStream<[Delivery], any Error>.makeStream()
        let id = connection.makeConsumerID()
        let record = AMQPConnection.ConsumerRecord(
            id: id, source: source, prefetch: UInt16(clamping: max(prefetch, 1)), continuation: continuation)
        continuation.onTermination = { [connection] _ in connection.submit(.cancel(consumerID: id)) }
        let result = await withCheckedContinuation { (waiter: CheckedContinuation<Result<Void, BrokerError>, Never>) in
            connection.submit(.consume(record, { waiter.resume(returning: $0) }))
        }
        try result.get()
        return Deliveries(stream: stream, connection: connection, consumerID: id)
    }

    /// How many messages are ready in `queue` (a passive declare), for the Producer's back-pressure.
    public func queueDepth(_ queue: String) async throws(BrokerError) -> Int {
        try await waitUntilReady(timeout: configuration.readyTimeout)
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Int, BrokerError>, Never>) in
            connection.submit(.queueDepth(queue, { continuation.resume(returning: $0) }))
        }
        return try result.get()
    }
}
