import ArgumentParser
import Foundation
import SquallCore

@main
struct ObserverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squall-observer",
        abstract: "Records progress packets and node heartbeats in PostgreSQL; serves the status API and dashboard.",
        discussion: """
            Every setting is an environment variable and a flag; the flag wins. SQUALL_DATABASE_URL and \
            SQUALL_AMQP_URL are required. SIGTERM or SIGINT stops the service gracefully: the batch in \
            hand is written and acked first.
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(
        name: .customLong("lease"),
        help:
            "Seconds of lease each progress packet gives its job; a running job silent this long is rescued, default 120 (env SQUALL_RUNNING_LEASE_SECONDS)."
    )
    var lease: String?

    @Option(
        name: .customLong("heartbeat-period"),
        help:
            "The nodes' heartbeat period in seconds; a node silent for 3 periods is lost, default 5 (env SQUALL_HEARTBEAT_SECONDS)."
    )
    var heartbeatPeriod: String?

    @Option(
        name: .customLong("batch-size"),
        help: "Most packets written in one transaction, default 500 (env SQUALL_BATCH_SIZE).")
    var batchSize: String?

    @Option(
        name: .customLong("batch-delay"),
        help: "Seconds a packet may wait for its batch to fill, default 0.1 (env SQUALL_BATCH_DELAY_SECONDS).")
    var batchDelay: String?

    func run() async throws {
        // Metrics first: "starting" (logged by configure) is then only a moment before the signal
        // handlers are installed, which is what scripts and tests waiting for it rely on.
        let registry = ServiceLauncher.bootstrapMetrics()
        // Declares every Squall series now, so /metrics lists them (at 0) before the first job.
        let metrics = SquallMetrics()
        let readiness = ReadinessChecks()
        let (configuration, logger) = ServiceLauncher.configure(common, role: .observer)
        let settings = ServiceLauncher.require(role: .observer) { () throws(ConfigurationError) in
            let reader = SettingReader(environment: ProcessInfo.processInfo.environment)
            return ObserverService.Settings(
                lease: try reader.seconds(lease, "lease", "SQUALL_RUNNING_LEASE_SECONDS", default: .seconds(120)),
                heartbeatPeriod: try reader.seconds(
                    heartbeatPeriod, "heartbeat-period", "SQUALL_HEARTBEAT_SECONDS", default: .seconds(5)),
                batchSize: try reader.integer(
                    batchSize, "batch-size", "SQUALL_BATCH_SIZE", default: 500, range: 1...10_000),
                batchDelay: try reader.seconds(
                    batchDelay, "batch-delay", "SQUALL_BATCH_DELAY_SECONDS", default: .milliseconds(100)))
        }
        let databaseURL = ServiceLauncher.require(role: .observer, configuration.requireDatabaseURL)
        let amqpURL = ServiceLauncher.require(role: .observer, configuration.requireAMQPURL)
        let broker = ServiceLauncher.broker(configuration, url: amqpURL, logger: logger)
        let repository = ServiceLauncher.repository(configuration, url: databaseURL, logger: logger)
        ServiceLauncher.registerReadiness(readiness, broker: broker, repository: repository)
        let observer = ObserverService(
            repository: repository, broker: broker, settings: settings, metrics: metrics, logger: logger)
        let endpoint = ServiceLauncher.healthEndpoint(
            configuration, readiness: readiness, registry: registry, logger: logger)
        try await ServiceLauncher.run(endpoint + [observer], logger: logger)
    }
}
