import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The Observer's work: write progress packets and heartbeats from `squall.progress` to PostgreSQL
/// in batches, ack them after the commit, and keep the node registry.
///
/// Progress is version-guarded by the repository (attempt, then millisecond timestamp), so a
/// redelivered or stale packet changes nothing: a crash between commit and ack only costs a
/// second, harmless write. Each progress write renews the job's lease by ``Settings/lease``.
public final class ObserverService: Service, Sendable {
    public struct Settings: Sendable {
        /// The lease a progress packet gives its job: a running job not heard of for this long is
        /// rescued by the Producer.
        public var lease: Duration
        /// The Consumers' heartbeat period: a node silent for 3 periods is lost.
        public var heartbeatPeriod: Duration
        public var batchSize: Int
        public var batchDelay: Duration

        public init(
            lease: Duration = .seconds(120), heartbeatPeriod: Duration = .seconds(5), batchSize: Int = 500,
            batchDelay: Duration = .milliseconds(100)
        ) {
            self.lease = lease
            self.heartbeatPeriod = heartbeatPeriod
            self.batchSize = batchSize
            self.batchDelay = batchDelay
        }
    }

    let repository: JobRepository
    let broker: Broker
    let settings: Settings
    let metrics: SquallMetrics
    let logger: Logger
    let registry: Mutex<NodeRegistryView>

    public init(
        repository: JobRepository, broker: Broker, settings: Settings, metrics: SquallMetrics, logger: Logger
    ) {
        self.repository = repository
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        registry = Mutex(NodeRegistryView(heartbeatPeriod: settings.heartbeatPeriod))
    }

    public func run() async throws {
        defer { logger.info("observer stopped") }
        guard await ServiceLoop.connect(broker, logger: logger) else { return await close() }
        guard await ServiceLoop.awaitSchema(repository, logger: logger) else { return await close() }
        await seedRegistry()
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await self.watchNodes() }
                try await consume()
                group.cancelAll()
            }
        } catch is CancellationError {
        } catch {
            logger.info("observer ended by an error", metadata: ["error": "\(error)"])
            await close()
            throw error
        }
        await close()
    }

    private func consume() async throws {
        // Twice the batch size, so the next batch arrives while one is being written.
        let deliveries = try await ServiceLoop.retrying("consume", logger: logger, untilShutdown: true) {
            try await broker.consume(queue: broker.topology.progress, prefetch: settings.batchSize * 2)
        }
        logger.info("observing", metadata: ["amqp.queue": "\(broker.topology.progress)"])
        let decoded = deliveries.decodingProgressStream(logger: logger)
        try await ServiceLoop.untilShutdown(decoded) { items in
            try await BatchingLoop.run(items, maximumCount: settings.batchSize, maximumDelay: settings.batchDelay) {
                batch in
                await apply(batch)
            }
        }
    }

    /// Writes one batch and acks it after the commit. A batch the database refuses for good is
    /// handed back to the queue (its delivery limit dead-letters a packet that can never apply).
    func apply(_ batch: [DecodedDelivery<ProgressStreamMessage>]) async {
        var progress: [ProgressPacket] = []
        var heartbeats: [Heartbeat] = []
        for item in batch {
            switch item.message {
            case .progress(let packet): progress.append(packet)
            case .heartbeat(let heartbeat): heartbeats.append(heartbeat)
            }
        }
        do {
            if !progress.isEmpty {
                let newest = ProgressPacket.newestPerAttempt(progress)
                let started = ContinuousClock.now
                let moved = try await ServiceLoop.retrying("apply progress", logger: logger) {
                    try await repository.applyProgress(newest, lease: settings.lease)
                }
                metrics.packetsApplied(kind: .progress, duration: ContinuousClock.now - started)
                logger.debug(
                    "applied progress", metadata: ["packets": "\(progress.count)", "jobs.moved": "\(moved)"])
            }
            if !heartbeats.isEmpty {
                let started = ContinuousClock.now
                try await ServiceLoop.retrying("record heartbeats", logger: logger) {
                    try await repository.upsertNodes(heartbeats)
                }
                metrics.packetsApplied(kind: .heartbeat, duration: ContinuousClock.now - started)
                let newNodes = registry.withLock { view in
                    let known = Set(view.nodes(at: .now()).map(\.heartbeat.node))
                    for heartbeat in heartbeats { view.record(heartbeat) }
                    return Set(heartbeats.map(\.node)).subtracting(known).sorted()
                }
                for node in newNodes {
                    logger.info("node joined", metadata: ["node.name": "\(node)"])
                }
            }
        } catch {
            logger.info(
                "could not write a batch; handing it back to the queue",
                metadata: ["packets": "\(batch.count)", "error": "\(error)"])
            for item in batch { try? await item.delivery.nack(requeue: true) }
            return
        }
        await ServiceLoop.ackCommitted(batch.map(\.delivery))
    }

    /// Loads the registry from the nodes table, so a restarted Observer counts known nodes at once.
    private func seedRegistry() async {
        guard let nodes = try? await repository.nodes() else { return }
        registry.withLock { view in
            for node in nodes {
                view.record(
                    Heartbeat(
                        node: node.name, role: node.role, host: node.host, startedAt: node.startedAt,
                        timestamp: node.lastSeen, currentJobs: node.currentJobs, bytesMoved: node.bytesMoved))
            }
        }
    }

    /// Every heartbeat period: refresh the `squall_nodes` gauge, and log nodes that became lost.
    private func watchNodes() async {
        var lost: Set<String> = []
        while !Task.isCancelled {
            let nodes = registry.withLock { $0.nodes(at: .now()) }
            var counts = Dictionary(uniqueKeysWithValues: NodeRegistryView.NodeState.allCases.map { ($0, 0) })
            for node in nodes { counts[node.state, default: 0] += 1 }
            metrics.nodes(counts)
            let nowLost = Set(nodes.filter { $0.state == .lost }.map(\.heartbeat.node))
            for node in nowLost.subtracting(lost).sorted() {
                let last = nodes.first { $0.heartbeat.node == node }?.heartbeat
                logger.info(
                    "node lost: no heartbeat for 3 periods",
                    metadata: [
                        "node.name": "\(node)", "node.last_seen": "\(last.map { "\($0.timestamp)" } ?? "")",
                        "node.jobs": "\(last?.currentJobs ?? [])",
                    ])
            }
            lost = nowLost
            do { try await Task.sleep(for: settings.heartbeatPeriod) } catch { return }
        }
    }

    private func close() async {
        await broker.shutdown()
        await repository.close()
    }
}
