import Foundation
import Logging
import ServiceLifecycle

/// The Collector's work: settle jobs from the result packets of `squall.results` in batches, ack
/// them after the commit, and report each batch that finishes.
///
/// The repository writes a batch of results, their audit events and the batches they finish in
/// one transaction, guarded by attempt: a stale or repeated result changes nothing, so a crash
/// between commit and ack (the results come again) settles nothing twice.
public struct CollectorService: Service {
    public struct Settings: Sendable {
        public var batchSize: Int
        public var batchDelay: Duration

        public init(batchSize: Int = 500, batchDelay: Duration = .milliseconds(100)) {
            self.batchSize = batchSize
            self.batchDelay = batchDelay
        }
    }

    let repository: JobRepository
    let broker: Broker
    let settings: Settings
    let metrics: SquallMetrics
    let logger: Logger

    public init(
        repository: JobRepository, broker: Broker, settings: Settings, metrics: SquallMetrics, logger: Logger
    ) {
        self.repository = repository
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
    }

    public func run() async throws {
        defer { logger.info("collector stopped") }
        guard await ServiceLoop.connect(broker, logger: logger) else { return await close() }
        guard await ServiceLoop.awaitSchema(repository, logger: logger) else { return await close() }
        do {
            let deliveries = try await ServiceLoop.retrying("consume", logger: logger, untilShutdown: true) {
                try await broker.consume(queue: broker.topology.results, prefetch: settings.batchSize * 2)
            }
            logger.info("collecting", metadata: ["amqp.queue": "\(broker.topology.results)"])
            let decoded = deliveries.decoding(ResultPacket.self, logger: logger)
            try await ServiceLoop.untilShutdown(decoded) { items in
                try await BatchingLoop.run(
                    items, maximumCount: settings.batchSize, maximumDelay: settings.batchDelay
                ) { batch in
                    await settle(batch)
                }
            }
        } catch is CancellationError {
        } catch {
            logger.info("collector ended by an error", metadata: ["error": "\(error)"])
            await close()
            throw error
        }
        await close()
    }

    /// Settles one batch and acks it after the commit; a batch the database refuses for good goes
    /// back to the queue (its delivery limit dead-letters a result that can never apply).
    func settle(_ batch: [DecodedDelivery<ResultPacket>]) async {
        let packets = batch.map(\.message)
        let started = ContinuousClock.now
        let applied: AppliedResults
        do {
            applied = try await ServiceLoop.retrying("apply results", logger: logger) {
                try await repository.applyResults(packets)
            }
        } catch {
            logger.info(
                "could not settle a batch; handing it back to the queue",
                metadata: ["results": "\(batch.count)", "error": "\(error)"])
            for item in batch { try? await item.delivery.nack(requeue: true) }
            return
        }
        metrics.packetsApplied(kind: .result, duration: ContinuousClock.now - started)
        var perOutcome: [ResultPacket.Outcome: Int] = [:]
        for job in applied.settled {
            if let outcome = ResultPacket.Outcome(rawValue: job.state.rawValue) { perOutcome[outcome, default: 0] += 1 }
        }
        for (outcome, count) in perOutcome { metrics.jobsSettled(outcome, count: count) }
        await ServiceLoop.ackCommitted(batch.map(\.delivery))
        let ignored = packets.count - applied.settled.count
        logger.debug(
            "settled results",
            metadata: ["jobs.settled": "\(applied.settled.count)", "results.ignored": "\(ignored)"])
        if ignored > 0 {
            logger.info(
                "ignored stale or repeated results",
                metadata: [
                    "results.ignored": "\(ignored)",
                    "job.ids":
                        "\(Set(packets.map(\.jobID)).subtracting(applied.settled.map(\.jobID)).sorted().prefix(10))",
                ])
        }
        for finished in applied.finishedBatches { await summarize(finished) }
    }

    /// Logs the one-line summary of a batch whose last job just settled.
    func summarize(_ finished: FinishedBatch) async {
        guard let status = try? await repository.status(batch: finished.name).first else {
            logger.info("batch finished", metadata: ["batch.id": "\(finished.id)", "batch.name": "\(finished.name)"])
            return
        }
        logger.info(
            "\(Self.summary(status))",
            metadata: [
                "batch.id": "\(status.id)", "batch.name": "\(status.name)", "event": "batch finished",
            ])
    }

    /// `batch nightly finished: 300 jobs, done 290, skipped 0, failed 10, cancelled 0, 1.2 GiB in 4m05s`.
    public static func summary(_ status: BatchStatus) -> String {
        let counts = [JobState.done, .skipped, .failed, .cancelled].map { "\($0.rawValue) \(status.count($0))" }
        let end = status.finishedAt ?? Timestamp.now()
        let seconds = Double(max(0, end.milliseconds - status.createdAt.milliseconds)) / 1000
        return "batch \(status.name) finished: \(status.jobCount) jobs, " + counts.joined(separator: ", ")
            + ", \(BatchWatchView.bytes(status.bytesDone)) in \(BatchWatchView.duration(seconds: seconds))"
    }

    private func close() async {
        await broker.shutdown()
        await repository.close()
    }
}
