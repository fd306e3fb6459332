import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// `Deliveries.stopDelivering()`: how a Consumer stops taking jobs at shutdown while still settling
/// the ones it runs (closing the channel instead would requeue those too).
@Suite("Broker: stopping deliveries but keeping the channel", .needs("SQUALL_AMQP_URL"))
struct BrokerStopDeliveringTests {
    @Test("after stopDelivering, nothing new is delivered, yet a delivery in hand can still be acked")
    func stopKeepsSettling() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = try await BrokerFixture.broker(topology: topology)

        let deliveries = try await broker.consume(queue: topology.jobs, prefetch: 2)
        try await broker.publish(Data(text: "in-hand"), to: .queue(topology.jobs))
        var iterator = deliveries.makeAsyncIterator()
        let inHand = try #require(try await iterator.next())
        #expect(inHand.body.text == "in-hand")

        await deliveries.stopDelivering()
        #expect(try await iterator.next() == nil, "the sequence ends")
        try await broker.publish(Data(text: "later"), to: .queue(topology.jobs))
        // The consumer is gone but its channel is not: "later" waits in the queue, the ack works.
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await broker.queueDepth(topology.jobs) == 1)
        try await inHand.ack()
        await broker.shutdown()

        // Acked, not requeued: only "later" is left for the next consumer.
        let next = try await BrokerFixture.broker(topology: topology)
        #expect(try await next.queueDepth(topology.jobs) == 1)
        var again = try await next.consume(queue: topology.jobs, prefetch: 1).makeAsyncIterator()
        let later = try #require(try await again.next())
        #expect(later.body.text == "later")
        #expect(!later.redelivered)
        try await later.ack()
        await next.shutdown()
    }
}
