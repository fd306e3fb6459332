import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import SquallCore
@testable import SquallTestSupport

/// `squall-producer` against the real PostgreSQL and RabbitMQ; the test plays the Consumers.
@Suite(
    "Producer end to end",
    .enabled(
        if: ServicesHarness.enabled, "skipped: SQUALL_DATABASE_URL / SQUALL_AMQP_URL not set (scripts/services up)"))
struct ProducerEndToEndTests {
    @Test("the Producer fills squall.jobs up to its high-water mark, no further, and publishes every job exactly once")
    func highWaterMarkAndExactlyOnce() async throws {
        try await ServicesHarness.with { harness in
            let batch = try await harness.submit("window", count: 60)
            let port = try HealthEndpointEndToEndTests.freePort()
            let producer = try await harness.start(
                "squall-producer",
                [
                    "--queue-high-water", "20", "--queue-low-water", "10", "--poll-interval", "0.05", "--http-port",
                    "\(port)", "--http-host", "127.0.0.1",
                ])
            try await harness.eventually("20 jobs ready in the queue") {
                try await harness.broker.queueDepth(harness.topology.jobs) == 20
            }
            try await Task.sleep(for: .seconds(1))
            #expect(try await harness.broker.queueDepth(harness.topology.jobs) == 20, "the window grew past its mark")
            let early = try await harness.jobs("window")
            #expect(early.filter { $0.state == .queued }.count == 20)
            #expect(early.filter { $0.state == .pending }.count == 40)

            var seen: [Int64: Int] = [:]
            var deepest = 0
            let deliveries = try await harness.broker.consume(queue: harness.topology.jobs, prefetch: 4)
            for try await item in deliveries.decoding(JobMessage.self, logger: Logger(label: "test")) {
                seen[item.message.jobID, default: 0] += 1
                #expect(item.message.attempt == 1)
                #expect(item.message.batchID == batch.id)
                try await item.delivery.ack()
                deepest = max(deepest, try await harness.broker.queueDepth(harness.topology.jobs))
                if seen.values.reduce(0, +) == 60 { break }
            }
            #expect(seen.count == 60, "every job published")
            #expect(seen.values.allSatisfy { $0 == 1 }, "no job published twice: \(seen.filter { $0.value > 1 })")
            #expect(deepest <= 20, "the queue held \(deepest) ready jobs, above the high-water mark")
            try await Task.sleep(for: .milliseconds(500))
            #expect(
                try await harness.broker.queueDepth(harness.topology.jobs) == 0, "nothing published beyond the batch")
            #expect(try await harness.jobs("window").allSatisfy { $0.state == .queued && $0.attempt == 1 })
            let endpoint = HealthEndpointEndToEndTests()
            let ready = try await endpoint.get(port, "/readyz")
            #expect(ready.status == 200, "\(ready.body)")
            #expect(ready.body.contains("broker connected") && ready.body.contains("database connected"))
            let metrics = try await endpoint.get(port, "/metrics").body
            #expect(metrics.contains("squall_jobs_published_total 60"), "\(metrics)")
            #expect(metrics.contains(#"squall_queue_window{part="ready"} 0"#), "\(metrics)")
            try await harness.stop(producer)
            #expect(producer.output.contains("\"message\":\"published jobs\""))
        }
    }

    @Test("a job whose lease expires is rescued and published again as the next attempt")
    func rescueRequeuesExpiredLease() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("rescue", count: 1)
            let producer = try await harness.start(
                "squall-producer", ["--lease", "1", "--rescue-interval", "0.3", "--poll-interval", "0.05"])
            var attempts: [Int32] = []
            let deliveries = try await harness.broker.consume(queue: harness.topology.jobs, prefetch: 1)
            // The first copy is taken and acked by a "Consumer" that then dies without a word:
            // only the lease can bring the job back.
            for try await item in deliveries.decoding(JobMessage.self, logger: Logger(label: "test")) {
                attempts.append(item.message.attempt)
                try await item.delivery.ack()
                if attempts.count == 2 { break }
            }
            #expect(attempts == [1, 2])
            try await harness.stop(producer)
            #expect(producer.output.contains("rescued jobs with expired leases"))
            let job = try #require(try await harness.jobs("rescue").first)
            #expect(job.attempt >= 2)
        }
    }

    @Test("jobs whose publish the broker refuses go back to pending; the others stay queued")
    func refusedPublishReleasesJobs() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("refused", count: 10)
            let refusedIDs: Set<Int64> = [2, 5, 7]
            let refusals = RefusalCounter()
            let broker = harness.broker
            // The broker path is real; only the confirms of three jobs are turned into nacks, as a
            // full queue with reject-publish or a dropped connection would report them.
            let publish: ProducerService.Publish = { messages in
                var failures: [BrokerError.BatchFailure] = []
                var accepted: [OutgoingMessage] = []
                for (index, message) in messages.enumerated() {
                    let job = try? MessageCodec.decode(JobMessage.self, from: message.body)
                    if let job, refusedIDs.contains(job.jobID), refusals.take() {
                        failures.append(.init(index: index, error: .publishNacked(destination: "test")))
                    } else {
                        accepted.append(message)
                    }
                }
                try await broker.publishBatch(accepted)
                if !failures.isEmpty { throw BrokerError.batchFailed(failures) }
            }
            var logger = Logger(label: "test.producer")
            logger.logLevel = .info
            let producerBroker = Broker(
                configuration: Broker.Configuration(url: broker.configuration.url, topology: harness.topology),
                logger: logger)
            let database = try DatabaseURL(parsing: harness.environment["SQUALL_DATABASE_URL"]!)
            let service = ProducerService(
                repository: JobRepository(url: database, actor: "test-producer", logger: logger),
                broker: producerBroker,
                settings: .init(
                    window: try ProducerWindow(highWaterMark: 10, lowWaterMark: 0, maximumClaim: 10),
                    pollInterval: .milliseconds(50)),
                metrics: SquallMetrics(), logger: logger, publish: publish)
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(services: [.init(service: service)], logger: logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                // First round: 7 queued, 3 released. The window (7 ready) is above the low-water
                // mark 0, so nothing more is claimed until the test drains the queue.
                try await harness.eventually("three jobs released, seven queued") {
                    let jobs = try await harness.jobs("refused")
                    return jobs.filter { $0.state == .pending }.map(\.id).sorted() == refusedIDs.sorted()
                        && jobs.filter { $0.state == .queued }.count == 7
                }
                #expect(try await harness.broker.queueDepth(harness.topology.jobs) == 7)
                let released = try await harness.jobs("refused").filter { refusedIDs.contains($0.id) }
                #expect(released.allSatisfy { $0.attempt == 1 && $0.leaseExpiresAt == nil })

                // Drained, the window reopens: the released jobs are claimed again (attempt 2) and published.
                var received: [Int64: Int32] = [:]
                let deliveries = try await harness.broker.consume(queue: harness.topology.jobs, prefetch: 10)
                for try await item in deliveries.decoding(JobMessage.self, logger: logger) {
                    received[item.message.jobID] = item.message.attempt
                    try await item.delivery.ack()
                    if received.count == 10 { break }
                }
                #expect(received.count == 10)
                #expect(refusedIDs.allSatisfy { received[$0] == 2 })
                #expect(received.filter { !refusedIDs.contains($0.key) }.values.allSatisfy { $0 == 1 })
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
    }
}

/// Refuses the first three publishes it is asked about, then accepts everything.
final class RefusalCounter: Sendable {
    private let remaining = Mutex(3)

    func take() -> Bool {
        remaining.withLock { remaining in
            guard remaining > 0 else { return false }
            remaining -= 1
            return true
        }
    }
}
