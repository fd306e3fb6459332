import Foundation
import Logging
import ServiceLifecycle

/// The Producer's work: keep `squall.jobs` topped up from the pending jobs in PostgreSQL, and
/// bring back jobs whose lease expired.
///
/// Each round asks the broker how many jobs wait in the queue, lets ``ProducerWindow`` say how
/// many to claim, claims them (`FOR UPDATE SKIP LOCKED`, so several Producers can run), publishes
/// them as one confirmed batch, and puts every job the broker did not confirm back to pending.
/// While the window is full, ``ProducerPacer`` says when to look again, from how fast it drains.
/// Every ``Settings/rescueInterval`` it rescues expired leases. A database or broker that goes
/// away pauses the rounds; it never ends the service.
public struct ProducerService: Service {
    public struct Settings: Sendable {
        public var window: ProducerWindow
        /// The lease a claimed job gets: how long it may sit queued before a rescue re-queues it.
        /// Longer than a job waits in the window, or jobs are published twice (harmlessly, but wastefully).
        public var lease: Duration
        /// The longest wait between queue-depth checks while the window is full (sooner when the
        /// Consumers drain it faster), and the wait when nothing is pending.
        public var pollInterval: Duration
        /// How often expired leases are rescued.
        public var rescueInterval: Duration
        /// Whether to bring the schema up to date before the first round.
        public var migrate: Bool

        public init(
            window: ProducerWindow, lease: Duration = .seconds(900), pollInterval: Duration = .milliseconds(250),
            rescueInterval: Duration = .seconds(30), migrate: Bool = false
        ) {
            self.window = window
            self.lease = lease
            self.pollInterval = pollInterval
            self.rescueInterval = rescueInterval
            self.migrate = migrate
        }
    }

    /// Publishes one batch of job messages with confirms; the default is the broker's `publishBatch`.
    /// Throws ``BrokerError/batchFailed(_:)`` naming the messages that were not confirmed.
    public typealias Publish = @Sendable ([OutgoingMessage]) async throws -> Void

    let repository: JobRepository
    let broker: Broker
    let settings: Settings
    let metrics: SquallMetrics
    let logger: Logger
    let publish: Publish

    public init(
        repository: JobRepository, broker: Broker, settings: Settings, metrics: SquallMetrics, logger: Logger,
        publish: Publish? = nil
    ) {
        self.repository = repository
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        if let publish {
            self.publish = publish
        } else {
            self.publish = { messages in try await broker.publishBatch(messages) }
        }
    }

    public func run() async throws {
        defer { logger.info("producer stopped") }
        if settings.migrate {
            let applied = try? await ServiceLoop.retrying("migrate", logger: logger, untilShutdown: true) {
                try await repository.migrate()
            }
            guard let applied else { return await close() }
            logger.info("schema up to date", metadata: ["db.migrations_applied": "\(applied)"])
        }
        guard await ServiceLoop.connect(broker, logger: logger) else { return await close() }
        guard await ServiceLoop.awaitSchema(repository, logger: logger) else { return await close() }
        logger.info(
            "producing",
            metadata: [
                "amqp.queue": "\(broker.topology.jobs)", "window.high": "\(settings.window.highWaterMark)",
                "window.low": "\(settings.window.lowWaterMark)", "lease": "\(settings.lease)",
            ])
        var nextRescue = ContinuousClock.now
        var pacer = ProducerPacer(longest: settings.pollInterval)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if ContinuousClock.now >= nextRescue {
                await rescue()
                nextRescue = ContinuousClock.now + settings.rescueInterval
            }
            let depth: Int
            do {
                depth = try await broker.queueDepth(broker.topology.jobs)
            } catch {
                // An unknown window is not an empty one: wait for the broker rather than flood it.
                logger.info("queue depth unknown; waiting", metadata: ["error": "\(error)"])
                guard await ServiceLoop.pause(settings.pollInterval * 4) else { break }
                continue
            }
            pacer.looked(depth: depth, at: .now)
            metrics.queueWindow(ready: depth, inFlight: 0)
            let wanted = settings.window.jobsToClaim(queueDepth: depth, inFlight: 0)
            let pause: Duration
            if wanted > 0 {
                let published = await produce(wanted, depth: depth)
                // A round that published goes straight on: the next depth check says whether to wait.
                // One that found nothing pending (or failed) waits the whole interval.
                guard published == 0 else {
                    pacer.published(published)
                    continue
                }
                pause = settings.pollInterval
            } else {
                // A full window: look again about when the Consumers will have drained it to the low-water mark.
                pause = pacer.pause(depth: depth, lowWaterMark: settings.window.lowWaterMark)
            }
            guard await ServiceLoop.pause(pause) else { break }
        }
        await close()
    }

    /// One round: claims up to `count` jobs, publishes them, releases what failed. Returns how
    /// many were published (0 when nothing was pending or the round failed: the caller pauses).
    func produce(_ count: Int, depth: Int) async -> Int {
        let jobs: [JobMessage]
        do {
            jobs = try await repository.claim(limit: count, lease: settings.lease)
        } catch {
            // A claim cut off by a broken connection may have committed: its jobs stay queued
            // until their lease expires and the rescue brings them back. Nothing is lost.
            logger.info("claim failed; retrying after a pause", metadata: ["error": "\(error)"])
            return 0
        }
        guard !jobs.isEmpty else { return 0 }
        metrics.queueWindow(ready: depth, inFlight: jobs.count)
        let messages = jobs.map {
            OutgoingMessage(body: MessageCodec.encode($0), destination: .queue(broker.topology.jobs))
        }
        var failed: [Int: any Error] = [:]
        do {
            try await publish(messages)
        } catch BrokerError.batchFailed(let failures) {
            for failure in failures { failed[failure.index] = failure.error }
        } catch {
            for index in jobs.indices { failed[index] = error }
        }
        let published = jobs.count - failed.count
        metrics.jobsPublished(published)
        metrics.queueWindow(ready: depth + published, inFlight: 0)
        if failed.isEmpty {
            logger.info(
                "published jobs",
                metadata: ["jobs.published": "\(published)", "window.before": "\(depth)"])
            return published
        }
        let unpublished = failed.keys.sorted().map { jobs[$0] }
        let released: Int
        do {
            // Not bounded by shutdown: a claimed job left queued would wait for its whole lease.
            released = try await ServiceLoop.retrying("release", logger: logger) {
                try await repository.release(unpublished)
            }
        } catch {
            logger.info(
                "could not release unpublished jobs; their lease will bring them back",
                metadata: ["jobs.unpublished": "\(unpublished.count)", "error": "\(error)"])
            return 0
        }
        logger.info(
            "publish failed for some jobs; released them to pending",
            metadata: [
                "jobs.published": "\(published)", "jobs.released": "\(released)",
                "error": "\(failed.values.first.map(String.init(describing:)) ?? "")",
                "job.ids": "\(unpublished.prefix(10).map(\.jobID))",
            ])
        return 0
    }

    /// Brings back jobs whose lease expired; a failure is logged and tried again next time.
    func rescue() async {
        do {
            let rescued = try await repository.rescueExpired()
            guard rescued.requeued + rescued.exhausted > 0 else { return }
            logger.info(
                "rescued jobs with expired leases",
                metadata: [
                    "jobs.requeued": "\(rescued.requeued)", "jobs.exhausted": "\(rescued.exhausted)",
                    "batches.finished": "\(rescued.finishedBatches.map(\.name))",
                ])
        } catch {
            logger.info("rescue failed; trying again later", metadata: ["error": "\(error)"])
        }
    }

    private func close() async {
        await broker.shutdown()
        await repository.close()
    }
}
