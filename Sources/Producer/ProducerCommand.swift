import ArgumentParser
import Foundation
import SquallCore

@main
struct ProducerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squall-producer",
        abstract:
            "Claims pending jobs from PostgreSQL and publishes them to RabbitMQ, keeping a bounded window in the broker.",
        discussion: """
            Every setting is an environment variable and a flag; the flag wins. SQUALL_DATABASE_URL and \
            SQUALL_AMQP_URL are required. Several Producers may run at once. SIGTERM or SIGINT stops the \
            service gracefully: the publish round in progress ends, and unconfirmed jobs go back to pending.
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(
        name: .customLong("queue-high-water"),
        help:
            "Jobs the broker may hold (ready plus being published); topped up to this, default 1000 (env SQUALL_QUEUE_HIGH_WATER)."
    )
    var highWater: String?

    @Option(
        name: .customLong("queue-low-water"),
        help:
            "Top up again once the queue holds this many or fewer, default half the high-water mark (env SQUALL_QUEUE_LOW_WATER)."
    )
    var lowWater: String?

    @Option(
        name: .customLong("max-claim"),
        help: "Most jobs claimed and published in one round, default 500 (env SQUALL_MAX_CLAIM).")
    var maxClaim: String?

    @Option(
        name: .customLong("lease"),
        help:
            "Seconds a claimed job may stay queued before it is rescued and published again, default 900 (env SQUALL_QUEUED_LEASE_SECONDS)."
    )
    var lease: String?

    @Option(
        name: .customLong("poll-interval"),
        help:
            "Longest wait in seconds between queue-depth checks while the window is full (sooner when Consumers drain it fast), and the wait when no job is pending, default 0.25 (env SQUALL_POLL_INTERVAL_SECONDS)."
    )
    var pollInterval: String?

    @Option(
        name: .customLong("rescue-interval"),
        help: "Seconds between rescues of expired leases, default 30 (env SQUALL_RESCUE_INTERVAL_SECONDS).")
    var rescueInterval: String?

    @Flag(
        name: .customLong("migrate"),
        help: "Bring the database schema up to date before producing (env SQUALL_MIGRATE=1).")
    var migrate = false

    func run() async throws {
        // Metrics first: "starting" (logged by configure) is then only a moment before the signal
        // handlers are installed, which is what scripts and tests waiting for it rely on.
        let registry = ServiceLauncher.bootstrapMetrics()
        // Declares every Squall series now, so /metrics lists them (at 0) before the first job.
        let metrics = SquallMetrics()
        let readiness = ReadinessChecks()
        let (configuration, logger) = ServiceLauncher.configure(common, role: .producer)
        let settings = ServiceLauncher.require(role: .producer) { () throws(ConfigurationError) in
            try resolveSettings(environment: ProcessInfo.processInfo.environment)
        }
        let databaseURL = ServiceLauncher.require(role: .producer, configuration.requireDatabaseURL)
        let amqpURL = ServiceLauncher.require(role: .producer, configuration.requireAMQPURL)
        let broker = ServiceLauncher.broker(configuration, url: amqpURL, logger: logger)
        let repository = ServiceLauncher.repository(configuration, url: databaseURL, logger: logger)
        ServiceLauncher.registerReadiness(readiness, broker: broker, repository: repository)
        let producer = ProducerService(
            repository: repository, broker: broker, settings: settings, metrics: metrics, logger: logger)
        let endpoint = ServiceLauncher.healthEndpoint(
            configuration, readiness: readiness, registry: registry, logger: logger)
        try await ServiceLauncher.run(endpoint + [producer], logger: logger)
    }

    func resolveSettings(environment: [String: String]) throws(ConfigurationError) -> ProducerService.Settings {
        let reader = SettingReader(environment: environment)
        let high = try reader.integer(
            highWater, "queue-high-water", "SQUALL_QUEUE_HIGH_WATER", default: 1000, range: 1...1_000_000)
        let low = try reader.integer(
            lowWater, "queue-low-water", "SQUALL_QUEUE_LOW_WATER", default: high / 2, range: 0...1_000_000)
        let claim = try reader.integer(maxClaim, "max-claim", "SQUALL_MAX_CLAIM", default: 500, range: 1...100_000)
        let window: ProducerWindow
        do {
            window = try ProducerWindow(highWaterMark: high, lowWaterMark: low, maximumClaim: claim)
        } catch {
            throw ConfigurationError(setting: "--queue-low-water", reason: error.description)
        }
        let migrateFromEnvironment = try reader.flag(nil, "migrate", "SQUALL_MIGRATE", default: false)
        return ProducerService.Settings(
            window: window,
            lease: try reader.seconds(lease, "lease", "SQUALL_QUEUED_LEASE_SECONDS", default: .seconds(900)),
            pollInterval: try reader.seconds(
                pollInterval, "poll-interval", "SQUALL_POLL_INTERVAL_SECONDS", default: .milliseconds(250)),
            rescueInterval: try reader.seconds(
                rescueInterval, "rescue-interval", "SQUALL_RESCUE_INTERVAL_SECONDS", default: .seconds(30)),
            migrate: migrate || migrateFromEnvironment)
    }
}
