import Logging
import ServiceLifecycle

/// What the Producer, Observer and Collector loops share: pauses that end at graceful shutdown,
/// retries that outlast a database or broker restart, a broker connection that waits for the
/// server instead of failing the process, and a delivery stream that ends at shutdown without
/// cancelling the consumer (so the last batch can still be acked).
public enum ServiceLoop {
    /// Sleeps for `duration`; returns false early once graceful shutdown begins or the task is cancelled.
    public static func pause(_ duration: Duration) async -> Bool {
        if Task.isShuttingDownGracefully || Task.isCancelled { return false }
        let slept = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await Task.sleep(for: duration)
                    return true
                } catch {
                    return false
                }
            }
            group.addTask {
                try? await gracefulShutdown()
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        return slept && !Task.isShuttingDownGracefully && !Task.isCancelled
    }

    /// Whether trying again later can succeed: a lost or refused connection, a restarting server,
    /// a deadlock. A constraint violation or a malformed answer cannot.
    public static func isRetryable(_ error: any Error) -> Bool {
        switch error {
        case let error as PostgresError: error.isRetryable
        case let error as BrokerError: error.isRetryable
        default: false
        }
    }

    /// Runs `operation` until it succeeds, waiting with capped exponential backoff after each
    /// retryable failure (``isRetryable(_:)``), so a database restart delays the work instead of
    /// ending the service. Non-retryable errors are thrown at once; cancellation throws
    /// `CancellationError`. With `untilShutdown`, it also gives up (throwing `CancellationError`)
    /// once graceful shutdown begins; without, it goes on until the work is done or the task is
    /// cancelled (the service group's grace period), for work that must not be left half done.
    public static func retrying<T: Sendable>(
        _ what: String, logger: Logger, untilShutdown: Bool = false,
        initialDelay: Duration = .milliseconds(100), maximumDelay: Duration = .seconds(5),
        _ operation: () async throws -> T
    ) async throws -> T {
        var delay = initialDelay
        var failures = 0
        while true {
            do {
                let result = try await operation()
                if failures > 0 {
                    logger.info("recovered", metadata: ["operation": "\(what)", "failures": "\(failures)"])
                }
                return result
            } catch {
                guard isRetryable(error) else { throw error }
                failures += 1
                if failures == 1 || failures % 10 == 0 {
                    logger.info(
                        "failed, retrying with backoff",
                        metadata: ["operation": "\(what)", "error": "\(error)", "failures": "\(failures)"])
                }
                if Task.isCancelled || (untilShutdown && Task.isShuttingDownGracefully) { throw CancellationError() }
                if untilShutdown {
                    guard await pause(delay) else { throw CancellationError() }
                } else {
                    try await Task.sleep(for: delay)
                }
                delay = min(delay * 2, maximumDelay)
            }
        }
    }

    /// Starts `broker` and waits until its first connection is ready, however long the broker is
    /// away (its connection thread keeps reconnecting with backoff). Returns false when graceful
    /// shutdown began first.
    public static func connect(_ broker: Broker, logger: Logger) async -> Bool {
        let connected = await cancelWhenGracefulShutdown {
            do {
                try await broker.start()
                return true
            } catch BrokerError.shutDown {
                return false
            } catch {
                logger.info(
                    "broker not reachable yet; still trying", metadata: ["error": "\(error)"])
            }
            while !Task.isCancelled {
                do {
                    try await broker.waitUntilReady(timeout: .seconds(30))
                    return true
                } catch BrokerError.shutDown {
                    return false
                } catch {
                    if Task.isCancelled { return false }
                    logger.info("broker not reachable yet; still trying", metadata: ["error": "\(error)"])
                }
            }
            return false
        }
        return connected && !Task.isShuttingDownGracefully
    }

    /// Waits until the database schema is at least the version this build's statements are written
    /// for (``Migrations/latestVersion``). Returns false when graceful shutdown began first.
    ///
    /// A service that went ahead on an older schema would fail every statement that names what a
    /// later migration adds: a Collector would hand each batch of results back to the queue until
    /// the delivery limit dead-letters it. So the service waits, not ready, and says what to run.
    /// A newer schema (a later release migrated first) is fine: this build's statements still hold.
    public static func awaitSchema(
        _ repository: JobRepository, logger: Logger, recheck: Duration = .seconds(5)
    ) async -> Bool {
        let needed = Migrations.latestVersion
        // Said at once, then once a minute: the fix is an operator's, not a retry's.
        let checksPerMinute = max(1, Int(Duration.seconds(60) / recheck))
        var checks = 0
        while true {
            defer { checks += 1 }
            let version: Int
            do {
                version = try await retrying("schema version", logger: logger, untilShutdown: true) {
                    try await repository.schemaVersion()
                }
            } catch is CancellationError {
                return false
            } catch {
                // Not a lost connection (no permission on the table, a database that is not Squall's):
                // waiting unready, and saying why, serves better than exiting to be restarted into it.
                if checks % checksPerMinute == 0 {
                    logger.warning("cannot read the database schema version; waiting", metadata: ["error": "\(error)"])
                }
                guard await pause(recheck) else { return false }
                continue
            }
            let versions: Logger.Metadata = ["db.schema_version": "\(version)", "db.schema_needed": "\(needed)"]
            if version > needed {
                logger.info("database schema is newer than this build; carrying on", metadata: versions)
                return true
            }
            if version == needed {
                if checks > 0 { logger.info("database schema is up to date", metadata: versions) }
                return true
            }
            if checks % checksPerMinute == 0 {
                logger.warning(
                    "database schema is older than this build; waiting for `squallctl migrate` (or a Producer started with --migrate)",
                    metadata: versions)
            }
            guard await pause(recheck) else { return false }
        }
    }

    /// Runs `body` over `deliveries` until they end or graceful shutdown begins.
    ///
    /// At shutdown the sequence `body` reads simply ends: the broker consumer stays open until
    /// `body` returns, so the last batch can be written and its deliveries acked. Deliveries the
    /// broker sent meanwhile are not handed on; they go back to the queue when the consumer closes.
    public static func untilShutdown<Items: AsyncSequence & Sendable>(
        _ deliveries: Items,
        _ body: @Sendable (AsyncThrowingStream<Items.Element, any Error>) async throws -> Void
    ) async throws where Items.Element: Sendable {
        let (stream, continuation) = AsyncThrowingStream<Items.Element, any Error>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await delivery in deliveries { continuation.yield(delivery) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            try await withGracefulShutdownHandler {
                try await body(stream)
            } onGracefulShutdown: {
                continuation.finish()
            }
            group.cancelAll()
        }
    }

    /// Acks the deliveries of a committed batch, in delivery order, with one `multiple` ack of the
    /// last. A delivery of a connection that dropped is stale: the broker redelivers it, and the
    /// version guard makes the second write change nothing.
    public static func ackCommitted(_ deliveries: [Delivery]) async {
        guard let last = deliveries.last else { return }
        try? await last.ack(multiple: true)
    }
}
