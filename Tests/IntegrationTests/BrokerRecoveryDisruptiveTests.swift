import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The transport when the broker goes away: restarted, or frozen. These tests disturb everyone
/// using the shared broker, so `scripts/test` runs them alone, one at a time.
@Suite("Broker recovery (disruptive)", .serialized, .needs("SQUALL_AMQP_URL"))
struct BrokerRecoveryDisruptiveTests {
    @Test(
        "a broker frozen with SIGSTOP is noticed dead within about two heartbeat intervals; no call blocks forever",
        .timeLimit(.minutes(3)))
    func frozenBrokerNoticedWithinTwoHeartbeats() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology, heartbeat: 5, readyTimeout: .seconds(2))
        defer { Task { await broker.shutdown() } }
        var deliveries = try await broker.consume(queue: topology.jobs, prefetch: 1).makeAsyncIterator()
        try await broker.publish(Data(text: "before"), to: .queue(topology.jobs))
        let held = try #require(try await deliveries.next())

        let pid = try #require(pid_t(try await BrokerFixture.services("pid", "rabbitmq")), "no broker pid")
        #expect(kill(pid, SIGSTOP) == 0)
        var resumed = false
        defer { if !resumed { kill(pid, SIGCONT) } }

        // A publish in flight when the broker froze: its confirm never comes.
        let started = ContinuousClock.now
        let outcome: BrokerError?
        do {
            try await broker.publish(Data(text: "during"), to: .queue(topology.jobs))
            outcome = nil
        } catch {
            outcome = error
        }
        let noticed = started.duration(to: .now)
        #expect(outcome?.isRetryable == true, "expected a retryable failure, got \(String(describing: outcome))")
        #expect(noticed < .seconds(14), "the frozen broker went unnoticed for \(noticed)")
        #expect(!broker.isReady)
        // Calls made while it stays frozen fail too, after their ready timeout, instead of hanging.
        await #expect(throws: BrokerError.self) { _ = try await broker.queueDepth(topology.jobs) }

        kill(pid, SIGCONT)
        resumed = true
        try await broker.waitUntilReady(timeout: .seconds(90))
        #expect(broker.connectionsOpened >= 2)
        // The held delivery belonged to the dead connection; the message comes again, redelivered.
        await #expect(throws: BrokerError.deliveryStale(deliveryTag: held.deliveryTag)) { try await held.ack() }
        let again = try #require(try await deliveries.next())
        #expect(again.body.text == "before" && again.redelivered)
        try await again.ack()
        await broker.shutdown()
    }

    @Test(
        "RabbitMQ restarted mid-stream: publisher and consumer recover by themselves and nothing confirmed is lost",
        .timeLimit(.minutes(5)))
    func brokerRestartMidStreamLosesNothingConfirmed() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        // A short ready timeout: while the broker is down, publishes fail (retryable) and are retried.
        let publisher = try await BrokerFixture.broker(topology: topology, readyTimeout: .seconds(2))
        let consumer = try await BrokerFixture.broker(topology: topology, readyTimeout: .seconds(120))
        let confirmed = Collected<String>()
        let consumed = Collected<String>()
        let retried = Collected<String>()

        let consuming = Task {
            for try await delivery in try await consumer.consume(queue: topology.jobs, prefetch: 50) {
                consumed.append(delivery.body.text)
                try? await delivery.ack()
            }
        }
        defer { consuming.cancel() }

        let total = 3_000
        let publishing = Task {
            var next = 0
            while next < total {
                let ids = (next..<min(next + 10, total)).map { "msg-\($0)" }
                do {
                    try await publisher.publishBatch(
                        ids.map { OutgoingMessage(body: Data(text: $0), destination: .queue(topology.jobs)) })
                    ids.forEach(confirmed.append)
                    next += ids.count
                } catch let error as BrokerError where error.isRetryable {
                    // The caller's job: publish again (at least once; duplicates are fine).
                    retried.append("\(error)")
                    try await Task.sleep(for: .milliseconds(200))
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        let monitor = Task {
            while !Task.isCancelled {
                print(
                    "monitor: confirmed \(confirmed.count) consumed \(consumed.count) retried \(retried.count) missing \(Set(confirmed.all).subtracting(consumed.all).count) ready \(publisher.isReady)/\(consumer.isReady) last \(retried.all.last ?? "-")"
                )
                try await Task.sleep(for: .seconds(5))
            }
        }
        defer { monitor.cancel() }
        #expect(await eventually(timeout: .seconds(60)) { confirmed.count >= 500 })
        try await BrokerFixture.services("restart", "rabbitmq")
        try await publishing.value

        #expect(confirmed.count == total)
        let allConsumed = await eventually(timeout: .seconds(120)) {
            Set(consumed.all).isSuperset(of: confirmed.all)
        }
        let missing = Set(confirmed.all).subtracting(consumed.all)
        #expect(allConsumed, "\(missing.count) confirmed messages never consumed, e.g. \(missing.sorted().prefix(5))")
        #expect(publisher.connectionsOpened >= 2 && consumer.connectionsOpened >= 2)
        #expect(publisher.isReady && consumer.isReady)
        consuming.cancel()
        print("monitor: shutting down publisher")
        await publisher.shutdown()
        print("monitor: shutting down consumer")
        await consumer.shutdown()
        print("monitor: done")
    }
}
