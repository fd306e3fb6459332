import Foundation
import Logging

/// The wiring the Producer, Observer and Collector mains share: their required settings, their
/// broker and repository, and the readiness checks over them.
extension ServiceLauncher {
    /// The value `body` reads from the configuration, or exit 64 naming the missing setting.
    public static func require<T>(
        role: Heartbeat.Role, _ body: () throws(ConfigurationError) -> T
    ) -> T {
        do {
            return try body()
        } catch {
            FileHandle.standardError.write(Data("squall-\(role.rawValue): \(error)\n".utf8))
            exit(64)
        }
    }

    /// The broker client for `configuration`: DESIGN's topology under the configured prefix. Calls
    /// made while it reconnects wait up to 10 s, then fail with a retryable error the loops retry.
    public static func broker(_ configuration: SquallConfiguration, url: AMQPURL, logger: Logger) -> Broker {
        Broker(
            configuration: Broker.Configuration(
                url: url, topology: Topology(prefix: configuration.queuePrefix), readyTimeout: .seconds(10)),
            logger: logger)
    }

    /// The job repository as `configuration.nodeName` (its name in the audit trail).
    ///
    /// Its own reconnect gives up after 2 s: the connection's thread sleeps through that backoff,
    /// and a shutdown (or a readiness probe) must not wait behind it. The services' loops retry
    /// for as long as the database is away (``ServiceLoop/retrying(_:logger:untilShutdown:initialDelay:maximumDelay:_:)``).
    public static func repository(
        _ configuration: SquallConfiguration, url: DatabaseURL, logger: Logger
    ) -> JobRepository {
        JobRepository(
            url: url, actor: configuration.nodeName,
            backoff: ReconnectBackoff(initial: .milliseconds(50), cap: .milliseconds(500), giveUpAfter: .seconds(2)),
            logger: logger)
    }

    /// Registers "broker connected" and, when given, "database connected" and "database schema
    /// current" (at least ``Migrations/latestVersion``) on `readiness`.
    public static func registerReadiness(
        _ readiness: ReadinessChecks, broker: Broker, repository: JobRepository?
    ) {
        readiness.register("broker connected") { broker.isReady }
        if let repository {
            readiness.register("database connected") { await repository.isReachable() }
            readiness.register("database schema current") {
                (try? await repository.schemaVersion()).map { $0 >= Migrations.latestVersion } ?? false
            }
        }
    }
}

extension JobRepository {
    /// Whether a trivial query answers now (the readiness check); reconnects if the connection broke.
    public func isReachable() async -> Bool {
        (try? await connection.execute(Self.ping, [], idempotent: true)) != nil
    }

    static let ping = PQStatement(name: "ping", sql: "SELECT 1")
}
