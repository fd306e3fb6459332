import ArgumentParser
import Foundation
import SquallCore

@main
struct ConsumerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squall-consumer",
        abstract:
            "Takes jobs from RabbitMQ and streams each target into S3, reporting progress and one result per job.",
        discussion: """
            Every setting is an environment variable and a flag; the flag wins. SIGTERM or SIGINT \
            stops the service gracefully: no new jobs, jobs not started go back to the queue, running \
            ones may finish within the grace period, then are aborted and requeued; the exit status is 0.
            """
    )

    @OptionGroup var common: CommonOptions
    @OptionGroup var consumer: ConsumerOptions

    func run() async throws {
        // Metrics first: "starting" (logged by configure) is then only a moment before the signal
        // handlers are installed, which is what scripts and tests waiting for it rely on.
        let registry = ServiceLauncher.bootstrapMetrics()
        // Declares every Squall series now, so /metrics lists them (at 0) before the first job.
        let metrics = SquallMetrics()
        let readiness = ReadinessChecks()
        let (configuration, logger) = ServiceLauncher.configure(common, role: .consumer)
        let settings: ConsumerSettings
        let amqpURL: AMQPURL
        do {
            settings = try consumer.resolve(environment: ProcessInfo.processInfo.environment)
            amqpURL = try configuration.requireAMQPURL()
        } catch {
            FileHandle.standardError.write(Data("squall-consumer: \(error)\n".utf8))
            throw ExitCode(64)
        }
        logger.info(
            "consumer settings",
            metadata: [
                "consumer.concurrency": "\(settings.concurrency)", "consumer.grace_period": "\(settings.gracePeriod)",
                "consumer.ack_deadline": "\(settings.ackDeadline)", "transfer.part_size": "\(settings.partSize)",
                "transfer.max_s3_requests": "\(settings.maxS3Requests)",
            ])

        let broker = ServiceLauncher.broker(configuration, url: amqpURL, logger: logger)
        let engine = TransferEngine(
            s3: configuration.s3,
            options: TransferOptions(
                partSize: settings.partSize, allowPrivateSources: configuration.allowPrivateSources, createOnly: true,
                maxS3Requests: settings.maxS3Requests),
            logger: logger)
        let service = ConsumerService(
            broker: broker, transfers: engine, settings: settings, node: configuration.nodeName, metrics: metrics,
            logger: logger)
        ServiceLauncher.registerReadiness(readiness, broker: broker, repository: nil)
        readiness.register("consuming jobs") { service.isConsuming }
        let endpoint = ServiceLauncher.healthEndpoint(
            configuration, readiness: readiness, registry: registry, logger: logger)
        // Shut down in reverse: the endpoint, then the Consumer (draining its jobs while the
        // heartbeat still beats), then the heartbeat, then the broker connection.
        try await ServiceLauncher.run(
            [broker, service.heartbeat, service] + endpoint, gracePeriod: settings.gracePeriod, logger: logger)
    }
}
