import ArgumentParser
import Foundation
import SquallCore

@main
struct CollectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squall-collector",
        abstract: "Settles jobs in PostgreSQL from result packets, writes the audit trail, and finishes batches.",
        discussion: """
            Every setting is an environment variable and a flag; the flag wins. SQUALL_DATABASE_URL and \
            SQUALL_AMQP_URL are required. SIGTERM or SIGINT stops the service gracefully: the batch in \
            hand is settled and acked first.
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(
        name: .customLong("batch-size"),
        help: "Most results settled in one transaction, default 500 (env SQUALL_BATCH_SIZE).")
    var batchSize: String?

    @Option(
        name: .customLong("batch-delay"),
        help: "Seconds a result may wait for its batch to fill, default 0.1 (env SQUALL_BATCH_DELAY_SECONDS).")
    var batchDelay: String?

    func run() async throws {
        // Metrics first: "starting" (logged by configure) is then only a moment before the signal
        // handlers are installed, which is what scripts and tests waiting for it rely on.
        let registry = ServiceLauncher.bootstrapMetrics()
        // Declares every Squall series now, so /metrics lists them (at 0) before the first job.
        let metrics = SquallMetrics()
        let readiness = ReadinessChecks()
        let (configuration, logger) = ServiceLauncher.configure(common, role: .collector)
        let settings = ServiceLauncher.require(role: .collector) { () throws(ConfigurationError) in
            let reader = SettingReader(environment: ProcessInfo.processInfo.environment)
            return CollectorService.Settings(
                batchSize: try reader.integer(
                    batchSize, "batch-size", "SQUALL_BATCH_SIZE", default: 500, range: 1...10_000),
                batchDelay: try reader.seconds(
                    batchDelay, "batch-delay", "SQUALL_BATCH_DELAY_SECONDS", default: .milliseconds(100)))
        }
        let databaseURL = ServiceLauncher.require(role: .collector, configuration.requireDatabaseURL)
        let amqpURL = ServiceLauncher.require(role: .collector, configuration.requireAMQPURL)
        let broker = ServiceLauncher.broker(configuration, url: amqpURL, logger: logger)
        let repository = ServiceLauncher.repository(configuration, url: databaseURL, logger: logger)
        ServiceLauncher.registerReadiness(readiness, broker: broker, repository: repository)
        let collector = CollectorService(
            repository: repository, broker: broker, settings: settings, metrics: metrics, logger: logger)
        let endpoint = ServiceLauncher.healthEndpoint(
            configuration, readiness: readiness, registry: registry, logger: logger)
        try await ServiceLauncher.run(endpoint + [collector], logger: logger)
    }
}
