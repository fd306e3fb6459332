import ArgumentParser
import SquallCore

@main
struct ProducerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squall-producer",
        abstract:
            "Claims pending jobs from PostgreSQL and publishes them to RabbitMQ, keeping a bounded window in the broker.",
        discussion: """
            Every setting is an environment variable and a flag; the flag wins. SIGTERM or SIGINT \
            stops the service gracefully.
            """
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        // Metrics first: "starting" (logged by configure) is then only a moment before the signal
        // handlers are installed, which is what scripts and tests waiting for it rely on.
        let registry = ServiceLauncher.bootstrapMetrics()
        // Declares every Squall series now, so /metrics lists them (at 0) before the first job.
        _ = SquallMetrics()
        let readiness = ReadinessChecks()
        let (configuration, logger) = ServiceLauncher.configure(common, role: .producer)
        let endpoint = ServiceLauncher.healthEndpoint(
            configuration, readiness: readiness, registry: registry, logger: logger)
        try await ServiceLauncher.run([IdleService()] + endpoint, logger: logger)
    }
}
