import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// The RabbitMQ transport against the real broker: confirms, acks, dead-lettering, refusals.
@Suite("Broker: confirmed publishing and acked consuming", .needs("SQUALL_AMQP_URL"))
struct BrokerTests {
    @Test("a publish returns once confirmed, and the consumer gets it once, first-time")
    func publishConfirmRoundTrip() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)
        defer { Task { await broker.shutdown() } }

        let deliveries = try await broker.consume(queue: topology.jobs, prefetch: 10)
        try await broker.publish(Data(text: "hello"), to: .queue(topology.jobs))
        var iterator = deliveries.makeAsyncIterator()
        let delivery = try #require(try await iterator.next())
        #expect(delivery.body.text == "hello")
        #expect(!delivery.redelivered)
        #expect(delivery.deliveryCount == 0)
        #expect(delivery.queue == topology.jobs)
        try await delivery.ack()
        #expect(try await eventually(timeout: .seconds(5)) { try await broker.queueDepth(topology.jobs) == 0 })
        await broker.shutdown()
    }

    @Test("10,000 messages published in one batch are all confirmed and consumed exactly once")
    func tenThousandBatchedExactlyOnce() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)
        let count = 10_000
        let messages = (0..<count).map {
            OutgoingMessage(body: Data(text: "m-\($0)"), destination: .queue(topology.jobs))
        }
        try await broker.publishBatch(messages)
        #expect(try await broker.queueDepth(topology.jobs) == count)

        var seen: [String: Int] = [:]
        let deliveries = try await broker.consume(queue: topology.jobs, prefetch: 200)
        var received = 0
        for try await delivery in deliveries {
            seen[delivery.body.text, default: 0] += 1
            received += 1
            if received % 100 == 0 { try await delivery.ack(multiple: true) }
            if received == count { break }
        }
        #expect(seen.count == count)
        #expect(seen.values.allSatisfy { $0 == 1 })
        #expect(Set(seen.keys) == Set((0..<count).map { "m-\($0)" }))
        #expect(try await broker.queueDepth(topology.jobs) == 0)
        await broker.shutdown()
    }

    @Test(
        "acks asked one at a time by concurrent tasks go in fewer frames, and settle exactly what was asked"
    )
    func concurrentAcksFoldIntoFewerFrames() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)
        let count = 300
        try await broker.publishBatch(
            (0..<count).map { OutgoingMessage(body: Data(text: "m-\($0)"), destination: .queue(topology.jobs)) })
        // Iterated by hand and kept: leaving a `for` loop would cancel the consumer and close its channel.
        let deliveries = try await broker.consume(queue: topology.jobs, prefetch: count)
        var iterator = deliveries.makeAsyncIterator()
        var taken: [Delivery] = []
        while taken.count < count, let delivery = try await iterator.next() { taken.append(delivery) }
        // Every one acked from a task of its own, as a Consumer acks its jobs, but one in the middle
        // rejected: no multiple ack may cover it.
        let framesBefore = broker.ackFramesSent
        try await withThrowingTaskGroup(of: Void.self) { group in
            for delivery in taken {
                group.addTask {
                    if delivery.body.text == "m-150" { try await delivery.reject() } else { try await delivery.ack() }
                }
            }
            try await group.waitForAll()
        }
        let frames = broker.ackFramesSent - framesBefore
        #expect(frames >= 1 && frames < count / 2, "\(count - 1) acks took \(frames) frames")
        var deadLetters = try await broker.consume(queue: topology.deadLetters, prefetch: 10).makeAsyncIterator()
        let dead = try #require(try await deadLetters.next())
        #expect(dead.body.text == "m-150")
        try await dead.ack()
        #expect(broker.connectionsOpened == 1, "the broker closed the connection or a channel over an ack")
        withExtendedLifetime(iterator) {}
        await broker.shutdown()

        // Nothing was left unacked: with the connection closed, an unacked message would be ready again.
        let again = try await BrokerFixture.broker(topology: topology)
        #expect(try await again.queueDepth(topology.jobs) == 0)
        #expect(try await again.queueDepth(topology.deadLetters) == 0)
        await again.shutdown()
    }

    @Test("a message taken but not acked before the connection closes goes to another consumer, redelivered")
    func unackedMessageRedeliveredToAnotherConsumer() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let first = try await BrokerFixture.broker(topology: topology)
        let firstDeliveries = try await first.consume(queue: topology.jobs, prefetch: 1)
        try await first.publish(Data(text: "job-1"), to: .queue(topology.jobs))
        var firstIterator = firstDeliveries.makeAsyncIterator()
        let taken = try #require(try await firstIterator.next())
        #expect(taken.body.text == "job-1" && !taken.redelivered)
        await first.shutdown()
        await #expect(throws: BrokerError.shutDown) { try await taken.ack() }

        let second = try await BrokerFixture.broker(topology: topology)
        var secondIterator = try await second.consume(queue: topology.jobs, prefetch: 1).makeAsyncIterator()
        let again = try #require(try await secondIterator.next())
        #expect(again.body.text == "job-1")
        #expect(again.redelivered)
        #expect((again.deliveryCount ?? 0) >= 1)
        try await again.ack()
        await second.shutdown()
    }

    @Test("a malformed body is rejected to the dead-letter queue and consuming carries on")
    func malformedBodyDeadLetteredAndConsumingCarriesOn() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)
        let job = JobMessage(
            jobID: 1, batchID: 2, attempt: 1, source: "https://example.com/a", destination: "s3://b/a",
            enqueuedAt: .now())
        try await broker.publish(Data(text: "{not json"), to: .queue(topology.jobs))
        try await broker.publish(MessageCodec.encode(job), to: .queue(topology.jobs))

        let jobs = try await broker.consume(queue: topology.jobs, prefetch: 10)
            .decoding(JobMessage.self, logger: BrokerFixture.logger)
        var iterator = jobs.makeAsyncIterator()
        let decoded = try #require(try await iterator.next())
        #expect(decoded.message == job)
        try await decoded.delivery.ack()

        var deadLetters = try await broker.consume(queue: topology.deadLetters, prefetch: 10).makeAsyncIterator()
        let dead = try #require(try await deadLetters.next())
        #expect(dead.body.text == "{not json")
        try await dead.ack()
        await broker.shutdown()
    }

    @Test("a message handed back more often than the delivery limit is dead-lettered, not looped forever")
    func deliveryLimitDeadLetters() async throws {
        let topology = BrokerFixture.topology(jobDeliveryLimit: 2)
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)
        try await broker.publish(Data(text: "poison"), to: .queue(topology.jobs))

        let deliveries = try await broker.consume(queue: topology.jobs, prefetch: 1)
        let counts = Collected<Int?>()
        let consumer = Task {
            for try await delivery in deliveries {
                counts.append(delivery.deliveryCount)
                try await delivery.nack(requeue: true)
            }
        }
        defer { consumer.cancel() }
        var deadLetters = try await broker.consume(queue: topology.deadLetters, prefetch: 1).makeAsyncIterator()
        let dead = try #require(try await deadLetters.next())
        #expect(dead.body.text == "poison")
        try await dead.ack()
        #expect(counts.all == [0, 1, 2])
        #expect(try await broker.queueDepth(topology.jobs) == 0)
        await broker.shutdown()
    }

    @Test("an unroutable publish comes back as an error, never silently dropped")
    func unroutablePublishIsReturned() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)
        let nowhere = topology.prefix + "no-such-queue"
        await #expect(
            throws: BrokerError.publishReturned(
                destination: "queue \"\(nowhere)\"", replyCode: 312, replyText: "NO_ROUTE")
        ) {
            try await broker.publish(Data(text: "lost?"), to: .queue(nowhere))
        }
        // The channel is still good.
        try await broker.publish(Data(text: "fine"), to: .queue(topology.jobs))
        await broker.shutdown()
    }

    @Test("a publish the broker nacks is an error, and a batch names exactly the refused messages")
    func nackedPublishIsAnError() async throws {
        let topology = BrokerFixture.topology(extraQueues: [
            "full": { QueueDefinition(name: $0 + "full", kind: .classic, maxLength: 1, overflow: .rejectPublish) }
        ])
        defer { BrokerFixture.delete(topology) }
        let full = topology.prefix + "full"
        let broker = try await BrokerFixture.broker(topology: topology)
        let messages = (0..<3).map { OutgoingMessage(body: Data(text: "m\($0)"), destination: .queue(full)) }
        do {
            try await broker.publishBatch(messages)
            Issue.record("a batch into a full queue was confirmed")
        } catch {
            guard case .batchFailed(let failures) = error else { throw error }
            #expect(failures.map(\.index) == [1, 2])
            #expect(failures.allSatisfy { $0.error == .publishNacked(destination: "queue \"\(full)\"") })
        }
        await #expect(throws: BrokerError.publishNacked(destination: "queue \"\(full)\"")) {
            try await broker.publish(Data(text: "one more"), to: .queue(full))
        }
        #expect(try await broker.queueDepth(full) == 1)
        await broker.shutdown()
    }

    @Test("a publish to a missing exchange fails with the broker's 404, and publishing goes on")
    func publishToMissingExchangeFails() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)
        do {
            try await broker.publish(Data(text: "x"), to: .exchange(topology.prefix + "missing"))
            Issue.record("publish to a missing exchange was confirmed")
        } catch {
            guard case .channelClosed(_, let code, _) = error else { throw error }
            #expect(code == 404)
        }
        try await broker.publish(Data(text: "fine"), to: .queue(topology.jobs))
        #expect(try await broker.queueDepth(topology.jobs) == 1)
        await broker.shutdown()
    }

    @Test("queue depth counts ready messages, and a missing queue is a 404 that does not hurt the connection")
    func queueDepthIsPassiveDeclare() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)
        try await broker.publishBatch(
            (0..<3).map { OutgoingMessage(body: Data(text: "\($0)"), destination: .queue(topology.results)) })
        #expect(try await broker.queueDepth(topology.results) == 3)
        do {
            _ = try await broker.queueDepth(topology.prefix + "missing")
            Issue.record("a missing queue had a depth")
        } catch {
            guard case .channelClosed(_, let code, _) = error else { throw error }
            #expect(code == 404)
        }
        #expect(try await broker.queueDepth(topology.results) == 3)
        #expect(broker.connectionsOpened == 1)
        await broker.shutdown()
    }

    @Test("a control message reaches every consumer through its own exclusive queue")
    func controlFanoutReachesEveryConsumer() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let one = try await BrokerFixture.broker(topology: topology)
        let two = try await BrokerFixture.broker(topology: topology)
        var first = try await one.consumeControl().makeAsyncIterator()
        var second = try await two.consumeControl().makeAsyncIterator()
        try await one.publish(Data(text: "cancel batch 7"), to: .exchange(topology.control))
        let a = try #require(try await first.next())
        let b = try #require(try await second.next())
        #expect(a.body.text == "cancel batch 7" && b.body.text == "cancel batch 7")
        try await a.ack()
        try await b.ack()
        await one.shutdown()
        await two.shutdown()
    }

    @Test(
        "with a 5 s heartbeat, a connection whose owner does nothing with it for 30 s is still open",
        .timeLimit(.minutes(2)))
    func heartbeatsKeepAnIdleOwnersConnectionOpen() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology, heartbeat: 5)
        #expect(broker.negotiatedHeartbeatSeconds == 5)
        var deliveries = try await broker.consume(queue: topology.jobs, prefetch: 1).makeAsyncIterator()
        try await broker.publish(Data(text: "long transfer"), to: .queue(topology.jobs))
        let job = try #require(try await deliveries.next())

        // The owner is busy transferring: it neither reads nor writes anything to the broker.
        try await Task.sleep(for: .seconds(30))

        #expect(broker.connectionsOpened == 1, "the connection dropped while its owner was busy")
        try await job.ack()
        try await broker.publish(Data(text: "result"), to: .queue(topology.results))
        #expect(broker.connectionsOpened == 1)
        await broker.shutdown()
    }
}
