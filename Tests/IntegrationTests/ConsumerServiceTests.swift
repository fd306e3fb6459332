import Foundation
import Logging
import ServiceLifecycle
import SquallCore
import Synchronization
import Testing

@testable import SquallTestSupport

/// `ConsumerService` on the real broker with a stand-in for the engine whose timing the test sets
/// (`http://stand-in/MILLISECONDS`): the Consumer's own decisions — progress throttling, cancels of
/// running and queued jobs, graceful shutdown within and past the grace period — without the
/// engine's network work.
@Suite("Consumer service with a stand-in engine", .needs("SQUALL_AMQP_URL"))
struct ConsumerServiceTests {
    /// Takes the milliseconds in the source's last path component, reports progress 20 times, and
    /// throws `cancelled` when its task is cancelled, as the engine does.
    struct StandInTransfers: JobTransferring {
        static let size: Int64 = 1_000_000

        func transfer(
            _ request: TransferRequest, events: @escaping @Sendable (TransferEvent) -> Void
        ) async throws(TransferError) -> TransferReport {
            guard case .http(let url) = request.source, let milliseconds = Int(url.split(separator: "/").last ?? "")
            else { throw TransferError(code: "http_404", message: "\(request.source): not found", isPermanent: true) }
            if url.contains("/stall/") {
                // A source that sends nothing for a while: no progress events at all.
                do {
                    try await Task.sleep(for: .milliseconds(milliseconds))
                } catch {
                    throw .cancelled
                }
            }
            for step in 1...20 {
                do {
                    try await Task.sleep(for: .milliseconds(milliseconds / 20))
                } catch {
                    throw .cancelled
                }
                events(
                    .progress(
                        TransferProgress(
                            bytesDone: Self.size * Int64(step) / 20, bytesTotal: Self.size, bytesPerSecond: 1)))
                if step == 10 { events(.retrying(reason: "http_503", attempt: 2)) }
            }
            return TransferReport(
                outcome: .done, bytes: Self.size, etag: "\"e\"", sha256: "ab", bytesFetched: Self.size)
        }
    }

    /// A running Consumer service in a service group of its own, and the test's view of the queues.
    final class Running: Sendable {
        let topology = BrokerFixture.topology()
        let consumerBroker: Broker
        let testBroker: Broker
        let group: ServiceGroup
        let finished: Task<Void, any Error>
        let progress = Mutex<[ProgressPacket]>([])
        let results = Mutex<[ResultPacket]>([])

        init(settings: ConsumerSettings, throttle: ProgressThrottle = ProgressThrottle()) async throws {
            testBroker = try await BrokerFixture.broker(topology: topology)
            consumerBroker = Broker(
                configuration: Broker.Configuration(url: try BrokerFixture.url(), topology: topology),
                logger: BrokerFixture.logger)
            let service = ConsumerService(
                broker: consumerBroker, transfers: StandInTransfers(), settings: settings, node: "test-node",
                metrics: SquallMetrics(), logger: BrokerFixture.logger, throttle: throttle)
            group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: consumerBroker), .init(service: service)], logger: BrokerFixture.logger))
            let group = self.group
            finished = Task { try await group.run() }
            let progressDeliveries = try await testBroker.consume(queue: topology.progress, prefetch: 100)
            let resultDeliveries = try await testBroker.consume(queue: topology.results, prefetch: 100)
            Task { [self] in
                for try await delivery in progressDeliveries {
                    if case .progress(let packet)? = try? MessageCodec.decodeProgressStream(delivery.body) {
                        progress.withLock { $0.append(packet) }
                    }
                    try? await delivery.ack()
                }
            }
            Task { [self] in
                for try await delivery in resultDeliveries {
                    if let packet = try? MessageCodec.decode(ResultPacket.self, from: delivery.body) {
                        results.withLock { $0.append(packet) }
                    }
                    try? await delivery.ack()
                }
            }
            #expect(await eventually(timeout: .seconds(20)) { service.isConsuming })
        }

        func publish(_ jobs: [(id: Int64, milliseconds: Int)], batch: Int64 = 1, stall: Bool = false) async throws {
            try await testBroker.publishBatch(
                jobs.map {
                    OutgoingMessage(
                        body: MessageCodec.encode(
                            JobMessage(
                                jobID: $0.id, batchID: batch, attempt: 1,
                                source: "http://stand-in/\(stall ? "stall/" : "")\($0.milliseconds)",
                                destination: "/tmp/unused", enqueuedAt: .now())),
                        destination: .queue(topology.jobs))
                })
        }

        var resultPackets: [ResultPacket] { results.withLock { $0 } }
        var progressPackets: [ProgressPacket] { progress.withLock { $0 } }

        func stopConsumer() async {
            await group.triggerGracefulShutdown()
            _ = try? await finished.value
        }

        func close() async {
            await stopConsumer()
            await testBroker.shutdown()
            BrokerFixture.delete(topology)
        }
    }

    @Test("progress goes through the throttle and the hold: starting, a packet per 50 % here, then one done result")
    func throttledProgress() async throws {
        // Time plays no part in the throttle (a loaded machine stretches the stand-in's 3 s): only the
        // 50 % step sends. The packet at 100 % comes just before the result, inside the hold: withdrawn.
        let throttle = ProgressThrottle(interval: .seconds(3600), step: 0.5, minimumSpacing: .zero)
        var settings = ConsumerSettings()
        settings.progressHold = .milliseconds(200)
        let running = try await Running(settings: settings, throttle: throttle)
        try await running.publish([(1, 3_000)])
        #expect(await eventually(timeout: .seconds(20)) { !running.resultPackets.isEmpty })
        let phases = running.progressPackets.map(\.phase)
        #expect(phases == [.starting, .transferring], "\(phases)")
        #expect(running.progressPackets.map(\.bytesDone) == [0, 500_000])
        let stamps =
            running.progressPackets.map(\.timestamp.milliseconds) + running.resultPackets.map(\.timestamp.milliseconds)
        #expect(stamps == stamps.sorted() && Set(stamps).count == stamps.count, "timestamps strictly increase")
        #expect(running.resultPackets.map(\.outcome) == [.done])
        #expect(running.resultPackets.first?.bytes == StandInTransfers.size)
        #expect(running.resultPackets.first?.node == "test-node")
        await running.stopConsumer()
        #expect(try await running.testBroker.queueDepth(running.topology.jobs) == 0, "every job acked")
        await running.close()
    }

    @Test("a job that ends within the hold sends its result and not one progress packet")
    func shortJobSendsOnlyItsResult() async throws {
        var settings = ConsumerSettings()
        settings.progressHold = .seconds(5)
        let running = try await Running(settings: settings)
        try await running.publish([(1, 100), (2, 100), (3, 100)])
        #expect(await eventually(timeout: .seconds(20)) { running.resultPackets.count == 3 })
        // Longer than the hold: anything still held would have been published by now.
        try await Task.sleep(for: .seconds(6))
        #expect(running.progressPackets.isEmpty, "\(running.progressPackets.map { ($0.jobID, $0.phase) })")
        #expect(running.resultPackets.map(\.outcome) == [.done, .done, .done])
        await running.close()
    }

    @Test("a running job whose source sends nothing still reports progress, which keeps its lease alive")
    func keepAliveDuringStall() async throws {
        var settings = ConsumerSettings()
        settings.keepAliveAfter = .milliseconds(500)
        settings.progressHold = .milliseconds(100)
        let running = try await Running(settings: settings)
        try await running.publish([(1, 6_000)], stall: true)
        #expect(await eventually(timeout: .seconds(20)) { !running.resultPackets.isEmpty })
        let stalled = running.progressPackets.filter { $0.phase == .transferring && $0.bytesDone == 0 }
        // 6 s of silence, a packet at most every 2 s (the throttle's interval): two at least.
        #expect(stalled.count >= 2, "\(running.progressPackets.map(\.phase))")
        await running.close()
    }

    @Test("past the ack deadline a running job is acked early and still reports one result; nothing comes back")
    func ackDeadlineHandsOver() async throws {
        var settings = ConsumerSettings()
        settings.concurrency = 1
        settings.ackDeadline = .seconds(1)
        let running = try await Running(settings: settings)
        try await running.publish([(1, 3_000), (2, 200)])
        #expect(await eventually(timeout: .seconds(20)) { running.resultPackets.count == 2 })
        try await Task.sleep(for: .seconds(1))
        #expect(running.resultPackets.map(\.jobID).sorted() == [1, 2], "one result per job")
        #expect(running.resultPackets.allSatisfy { $0.outcome == .done })
        #expect(running.progressPackets.filter { $0.jobID == 1 && $0.phase == .starting }.count == 1)
        await running.stopConsumer()
        #expect(try await running.testBroker.queueDepth(running.topology.jobs) == 0)
        await running.close()
    }

    @Test("a cancel order stops a running job at once and cancels the queued ones of its batch; others go on")
    func cancelRunningAndQueued() async throws {
        var settings = ConsumerSettings()
        settings.concurrency = 1
        let running = try await Running(settings: settings)
        try await running.publish([(1, 60_000), (2, 60_000), (3, 60_000)], batch: 5)
        try await running.publish([(4, 200)], batch: 6)
        #expect(await eventually(timeout: .seconds(10)) { running.progressPackets.contains { $0.jobID == 1 } })
        let ordered = ContinuousClock.now
        try await running.testBroker.publish(
            MessageCodec.encode(ControlMessage(command: .cancelBatch(batchID: 5), issuedAt: .now())),
            to: .exchange(running.topology.control))
        #expect(await eventually(timeout: .seconds(10)) { running.resultPackets.count == 4 })
        #expect(ContinuousClock.now - ordered < .seconds(5))
        let outcomes = Dictionary(uniqueKeysWithValues: running.resultPackets.map { ($0.jobID, $0.outcome) })
        #expect(outcomes == [1: .cancelled, 2: .cancelled, 3: .cancelled, 4: .done])
        #expect(!running.progressPackets.contains { $0.jobID == 2 || $0.jobID == 3 }, "queued jobs never started")
        await running.stopConsumer()
        #expect(try await running.testBroker.queueDepth(running.topology.jobs) == 0, "every job acked")
        await running.close()
    }

    @Test("graceful shutdown: running jobs finish and are acked, jobs not started stay in the queue")
    func shutdownLetsRunningFinish() async throws {
        var settings = ConsumerSettings()
        settings.concurrency = 2
        settings.progressHold = .milliseconds(100)
        let running = try await Running(settings: settings)
        try await running.publish([(1, 1_500), (2, 1_500), (3, 1_500), (4, 1_500)])
        #expect(await eventually(timeout: .seconds(10)) { Set(running.progressPackets.map(\.jobID)).count == 2 })
        await running.group.triggerGracefulShutdown()
        _ = try await running.finished.value
        #expect(Set(running.resultPackets.map(\.jobID)) == Set(running.progressPackets.map(\.jobID)))
        #expect(running.resultPackets.allSatisfy { $0.outcome == .done })
        #expect(running.resultPackets.count == 2)
        #expect(try await running.testBroker.queueDepth(running.topology.jobs) == 2)
        await running.close()
    }

    @Test("graceful shutdown past the grace period: the running job is aborted and requeued, without a result")
    func shutdownAbortsPastGrace() async throws {
        var settings = ConsumerSettings()
        settings.gracePeriod = .seconds(2)
        let running = try await Running(settings: settings)
        try await running.publish([(1, 60_000)])
        #expect(await eventually(timeout: .seconds(10)) { running.progressPackets.contains { $0.jobID == 1 } })
        let stopped = ContinuousClock.now
        await running.group.triggerGracefulShutdown()
        _ = try await running.finished.value
        #expect(ContinuousClock.now - stopped < .seconds(2))
        #expect(running.resultPackets.isEmpty)
        #expect(
            try await eventually(timeout: .seconds(5)) {
                try await running.testBroker.queueDepth(running.topology.jobs) == 1
            })
        await running.close()
    }
}
