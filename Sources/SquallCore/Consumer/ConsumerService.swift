import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// What runs a job's transfer: the ``TransferEngine`` in production, a stand-in in unit tests.
public protocol JobTransferring: Sendable {
    func transfer(
        _ request: TransferRequest, events: @escaping @Sendable (TransferEvent) -> Void
    ) async throws(TransferError) -> TransferReport

    /// Where the Consumer's job tasks run: the engine's own thread, or the global pool (nil).
    var jobExecutor: (any TaskExecutor)? { get }
}

extension JobTransferring {
    public var jobExecutor: (any TaskExecutor)? { nil }
}

extension TransferEngine: JobTransferring {
    public var jobExecutor: (any TaskExecutor)? { taskExecutor }
}

/// The Consumer: takes jobs from `squall.jobs`, runs up to `concurrency` transfers at once, reports
/// progress and one result per job, and acks each job only after its result is confirmed.
///
/// Each delivery gets a ``JobLifecycle`` (kept in a `JobBook`); this type only performs the actions
/// the lifecycles return. Besides the job loop it runs a listener on `squall.control` (cancel orders
/// abort running and queued jobs), a ticker for the ack deadline (the hand-over to the database
/// lease, docs/services.md), and a publisher that batches progress packets. On graceful shutdown
/// it stops deliveries (keeping its channel so running jobs can still ack), requeues jobs not
/// started, lets running ones finish until ``ConsumerSettings/abortAfter``, then aborts and
/// requeues the rest. Loops survive broker reconnections: the ``Broker`` restarts the consumers and
/// deliveries of a dropped connection are redelivered by the broker. The job loop and every job
/// prefer the engine's executor (``JobTransferring/jobExecutor``): their code runs on its libcurl
/// thread, where their requests finish (docs/transfer.md, "Threads").
public final class ConsumerService: Service, Sendable {
    public let settings: ConsumerSettings
    public let node: String
    private let broker: Broker
    private let transfers: any JobTransferring
    private let metrics: SquallMetrics
    private let logger: Logger
    private let book: JobBook
    private let outbox: PacketOutbox
    private let startedAt = Timestamp.now()
    private let consumingJobs = Atomic<Bool>(false)
    private let shutdownSignal: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)

    public init(
        broker: Broker, transfers: any JobTransferring, settings: ConsumerSettings, node: String,
        metrics: SquallMetrics, logger: Logger, throttle: ProgressThrottle = ProgressThrottle()
    ) {
        self.broker = broker
        self.transfers = transfers
        self.settings = settings
        self.node = node
        self.metrics = metrics
        self.logger = logger
        book = JobBook(throttle: throttle, cancelRetention: .seconds(3600))
        outbox = PacketOutbox(
            broker: broker, queue: broker.topology.progress, hold: settings.progressHold, logger: logger)
        shutdownSignal = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Whether the job consumer is in place (for `/readyz`).
    public var isConsuming: Bool { consumingJobs.load(ordering: .relaxed) }

    /// This node's heartbeat, as a service to run beside this one (before it in the group, so it
    /// keeps beating while running jobs finish at shutdown).
    public var heartbeat: HeartbeatEmitter {
        let host = ProcessInfo.processInfo.hostName
        return HeartbeatEmitter(
            interval: settings.heartbeatInterval, logger: logger,
            makeHeartbeat: { [book, node, startedAt] in
                Heartbeat(
                    node: node, role: .consumer, host: host, startedAt: startedAt, timestamp: .now(),
                    currentJobs: await book.jobIDs, bytesMoved: await book.bytesMoved)
            },
            publish: { [broker] heartbeat in
                try await broker.publish(
                    MessageCodec.encode(heartbeat), to: .queue(broker.topology.progress), persistent: false)
            })
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { helpers in
                helpers.addTask { await self.outbox.run() }
                helpers.addTask { await self.listenForCancels() }
                helpers.addTask { await self.enforceAckDeadlines() }
                await self.consumeJobs()
                helpers.cancelAll()
            }
            await outbox.flush()
        } onGracefulShutdown: {
            self.shutdownSignal.continuation.yield()
        }
    }

    // MARK: Jobs

    private func consumeJobs() async {
        await withTaskExecutorPreference(transfers.jobExecutor) {
            await consumeJobsHere()
        }
    }

    private func consumeJobsHere() async {
        await withTaskGroup(of: Bool.self) { jobs in
            jobs.addTask {
                await self.shutDownWhenAsked()
                return false
            }
            var running = 0
            while !(await book.stopping), !Task.isCancelled {
                // Waiting here rather than inside consume() keeps a shutdown prompt while the broker is away.
                if !broker.isReady {
                    try? await Task.sleep(for: .milliseconds(100))
                    continue
                }
                let deliveries: Deliveries
                do {
                    deliveries = try await broker.consume(queue: broker.topology.jobs, prefetch: settings.concurrency)
                } catch {
                    if await book.stopping { break }
                    logger.info("cannot consume jobs yet; trying again", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                guard await book.consuming(deliveries) else {
                    await deliveries.stopDelivering()
                    break
                }
                consumingJobs.store(true, ordering: .relaxed)
                logger.info(
                    "consuming jobs",
                    metadata: [
                        "amqp.queue": "\(broker.topology.jobs)", "consumer.concurrency": "\(settings.concurrency)",
                    ])
                do {
                    for try await decoded in deliveries.decoding(JobMessage.self, logger: logger) {
                        metrics.jobConsumed()
                        let (key, early) = await book.receive(decoded.message, delivery: decoded.delivery, at: .now)
                        metrics.jobsInFlight(await book.count)
                        if !early.isEmpty {
                            // Cancelled before it started (or shutting down): settled without a slot.
                            jobs.addTask {
                                await self.perform(early, for: key)
                                return false
                            }
                            continue
                        }
                        while running >= settings.concurrency {
                            if let freedSlot = await jobs.next(), freedSlot { running -= 1 }
                        }
                        running += 1
                        jobs.addTask {
                            await self.runJob(key)
                            return true
                        }
                    }
                } catch {
                    logger.info("the job stream ended; consuming again", metadata: ["error": "\(error)"])
                }
                consumingJobs.store(false, ordering: .relaxed)
                if !(await book.stopping) { try? await Task.sleep(for: .milliseconds(500)) }
            }
            await jobs.waitForAll()
        }
    }

    /// One job from start to ack: the `starting` packet, the transfer with its progress, the result.
    private func runJob(_ key: JobBook.Key) async {
        let started = await book.handle(key, .started(at: .now))
        await perform(started, for: key, removingWhenFinal: false)
        guard await book.isRunning(key), let (job, delivery) = await book.held(key) else {
            await forgetIfFinal(key)
            return
        }
        var jobLogger = logger
        jobLogger[metadataKey: "job.id"] = "\(job.jobID)"
        jobLogger[metadataKey: "batch.id"] = "\(job.batchID)"
        jobLogger[metadataKey: "job.attempt"] = "\(job.attempt)"
        jobLogger.debug("job started", metadata: ["job.source": "\(job.source)"])

        let conclusion: JobConclusion
        do {
            let request = try job.transferRequest(redelivered: delivery.redelivered)
            conclusion = JobConclusion(await transfer(request, key: key, logger: jobLogger))
        } catch {
            conclusion = .error(error)
        }
        let (finished, newBytes) = await book.finish(key, conclusion, at: .now)
        if newBytes > 0 { metrics.bytesMoved(newBytes) }
        switch conclusion {
        case .report(let report):
            jobLogger.info(
                "transfer \(report.outcome.rawValue)", metadata: ["transfer.bytes": "\(report.bytes)"])
        case .error(let error):
            jobLogger.info(
                error == .cancelled ? "transfer stopped" : "transfer failed",
                metadata: ["error.code": "\(error.code)", "error.message": "\(error.message)"])
        }
        await perform(finished, for: key)
    }

    private func transfer(
        _ request: TransferRequest, key: JobBook.Key, logger: Logger
    ) async -> Result<TransferReport, TransferError> {
        let (events, sink) = AsyncStream<TransferEvent>.makeStream()
        let transfers = self.transfers
        let task = Task(executorPreference: transfers.jobExecutor) {
            () async -> Result<TransferReport, TransferError> in
            do throws(TransferError) {
                return .success(try await transfers.transfer(request) { sink.yield($0) })
            } catch {
                return .failure(error)
            }
        }
        await book.attach(key, task)
        return await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in events { await self.apply(event, to: key, logger: logger) }
            }
            let result = await withTaskCancellationHandler {
                await task.value
            } onCancel: {
                task.cancel()
            }
            sink.finish()
            await group.waitForAll()
            return result
        }
    }

    private func apply(_ event: TransferEvent, to key: JobBook.Key, logger: Logger) async {
        switch event {
        case .progress(let progress):
            let (actions, newBytes) = await book.progress(key, progress, at: .now)
            if newBytes > 0 { metrics.bytesMoved(newBytes) }
            await perform(actions, for: key, removingWhenFinal: false)
        case .retrying(let reason, let attempt):
            metrics.transferRetried(reason: reason)
            logger.debug("transfer retrying", metadata: ["retry.reason": "\(reason)", "retry.attempt": "\(attempt)"])
        }
    }

    // MARK: Actions

    /// Performs a lifecycle's actions in order; a result's confirm (or failure) feeds back its own.
    private func perform(
        _ actions: [JobLifecycle.Action], for key: JobBook.Key, removingWhenFinal: Bool = true
    ) async {
        for action in actions {
            switch action {
            case .publishProgress(let phase, let done, let total):
                if let packet = await book.progressPacket(
                    key, phase: phase, bytesDone: done, bytesTotal: total, node: node)
                {
                    outbox.send(packet)
                }
            case .publishResult(let outcome):
                guard let packet = await book.resultPacket(key, outcome: outcome, node: node, at: .now) else {
                    continue
                }
                // The result supersedes the progress packets still held for this attempt.
                outbox.withdraw(jobID: packet.jobID, attempt: packet.attempt)
                let next: [JobLifecycle.Action]
                do {
                    try await broker.publish(MessageCodec.encode(packet), to: .queue(broker.topology.results))
                    next = await book.handle(key, .resultConfirmed)
                } catch {
                    logger.info(
                        "result not confirmed; the job goes back",
                        metadata: ["job.id": "\(packet.jobID)", "error": "\(error)"])
                    next = await book.handle(key, .resultPublishFailed)
                }
                await perform(next, for: key, removingWhenFinal: false)
            case .ackJob:
                await settle(key, "ack") { (delivery) async throws(BrokerError) in try await delivery.ack() }
            case .nackRequeueJob:
                await settle(key, "nack") { (delivery) async throws(BrokerError) in
                    try await delivery.nack(requeue: true)
                }
            case .abortTransfer:
                await book.abort(key)
            }
        }
        if removingWhenFinal { await forgetIfFinal(key) }
    }

    private func settle(
        _ key: JobBook.Key, _ what: String, _ operation: (Delivery) async throws(BrokerError) -> Void
    ) async {
        guard let (job, delivery) = await book.held(key) else { return }
        do {
            try await operation(delivery)
        } catch {
            // A stale delivery (the connection dropped) is redelivered by the broker: nothing to do.
            logger.info("\(what) failed", metadata: ["job.id": "\(job.jobID)", "error": "\(error)"])
        }
    }

    private func forgetIfFinal(_ key: JobBook.Key) async {
        if await book.removeIfFinal(key) != nil {
            metrics.jobsInFlight(await book.count)
        }
    }

    // MARK: Control, deadlines, shutdown

    private func listenForCancels() async {
        while !Task.isCancelled {
            do {
                let control = try await broker.consumeControl()
                logger.info("listening for cancel orders", metadata: ["amqp.exchange": "\(broker.topology.control)"])
                for try await decoded in control.decoding(ControlMessage.self, logger: logger) {
                    let message = decoded.message
                    let affected = await book.cancel(message, at: .now)
                    logger.info(
                        "cancel order received",
                        metadata: ["control.command": "\(message.command)", "control.jobs_held": "\(affected.count)"])
                    try? await decoded.delivery.ack()
                    await withTaskGroup(of: Void.self) { group in
                        for (key, actions) in affected where !actions.isEmpty {
                            group.addTask { await self.perform(actions, for: key, removingWhenFinal: false) }
                        }
                    }
                    for (key, _) in affected { await forgetIfFinal(key) }
                }
            } catch {
                if Task.isCancelled { return }
                logger.info("control stream ended; listening again", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Once a second: progress for quiet running jobs (their lease), and the ack deadline.
    private func enforceAckDeadlines() async {
        let tick = min(.seconds(1), settings.ackDeadline / 10)
        while !Task.isCancelled {
            do { try await Task.sleep(for: tick) } catch { return }
            for (key, actions) in await book.keepAlive(quietFor: settings.keepAliveAfter, at: .now)
            where !actions.isEmpty {
                await perform(actions, for: key, removingWhenFinal: false)
            }
            for (key, actions) in await book.passAckDeadlines(olderThan: settings.ackDeadline, at: .now)
            where !actions.isEmpty {
                if let job = await book.job(key) {
                    logger.info(
                        actions.contains(.ackJob)
                            ? "ack deadline reached: the job's lease owns it now"
                            : "ack deadline reached before the job could start: requeued",
                        metadata: ["job.id": "\(job.jobID)", "job.attempt": "\(job.attempt)"])
                }
                await perform(actions, for: key)
            }
        }
    }

    /// Waits for the graceful-shutdown signal, then runs the shutdown sequence (docs/services.md).
    private func shutDownWhenAsked() async {
        for await _ in shutdownSignal.stream { break }
        guard !Task.isCancelled else { return }
        let begun = ContinuousClock.now
        let held = await book.count
        logger.info(
            "shutting down: no new jobs; running ones may finish",
            metadata: ["consumer.jobs_held": "\(held)", "consumer.abort_after": "\(settings.abortAfter)"])
        if let deliveries = await book.beginStopping() { await deliveries.stopDelivering() }
        for (key, actions) in await book.broadcast(.shutdownStarted) where !actions.isEmpty {
            await perform(actions, for: key)
        }
        while !(await book.isEmpty), ContinuousClock.now - begun < settings.abortAfter {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let left = await book.broadcast(.shutdownGraceExpired)
        if !left.isEmpty {
            logger.info(
                "grace period over: aborting the jobs still running", metadata: ["consumer.jobs": "\(left.count)"])
        }
        for (key, actions) in left where !actions.isEmpty {
            await perform(actions, for: key, removingWhenFinal: false)
        }
    }
}
