import Testing

@testable import SquallCore

@Suite("Broker connection state machine")
struct ConnectionStateMachineTests {
    let policy = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(2))

    @Test("starting connects generation 1, and success makes it ready")
    func startConnectsThenBecomesReady() {
        var machine = ConnectionStateMachine(policy: policy)
        #expect(machine.start() == .connect(generation: 1))
        #expect(!machine.isReady)
        #expect(machine.connectSucceeded() == .becomeReady(generation: 1))
        #expect(machine.isReady)
        #expect(machine.start() == .none)
    }

    @Test("failed attempts back off exponentially up to the cap, each with a new generation")
    func failedAttemptsBackOffExponentiallyToTheCap() {
        var machine = ConnectionStateMachine(policy: policy)
        _ = machine.start()
        var delays: [Duration] = []
        var generations: [UInt64] = []
        for _ in 0..<7 {
            guard case .retry(_, let delay) = machine.connectFailed(reason: "refused", jitter: 0.999_999) else {
                Issue.record("expected a retry")
                return
            }
            delays.append(delay)
            guard case .connect(let generation) = machine.backoffElapsed() else {
                Issue.record("expected a connect")
                return
            }
            generations.append(generation)
        }
        let milliseconds = delays.map { Int(($0 / .milliseconds(1)).rounded()) }
        #expect(milliseconds == [100, 200, 400, 800, 1600, 2000, 2000])
        #expect(generations == [2, 3, 4, 5, 6, 7, 8])
    }

    @Test("full jitter draws the delay between zero and the ceiling")
    func fullJitterScalesTheCeiling() {
        var machine = ConnectionStateMachine(policy: policy)
        _ = machine.start()
        #expect(machine.connectFailed(reason: "refused", jitter: 0) == .retry(reason: "refused", delay: .zero))
        _ = machine.backoffElapsed()
        #expect(
            machine.connectFailed(reason: "refused", jitter: 0.5)
                == .retry(reason: "refused", delay: .milliseconds(100)))
    }

    @Test("a drop fails calls in flight and reconnects with a fresh backoff")
    func dropReconnectsWithFreshBackoff() {
        var machine = ConnectionStateMachine(policy: policy)
        _ = machine.start()
        _ = machine.connectFailed(reason: "refused", jitter: 0.5)
        _ = machine.backoffElapsed()
        _ = machine.connectFailed(reason: "refused", jitter: 0.5)
        _ = machine.backoffElapsed()
        #expect(machine.connectSucceeded() == .becomeReady(generation: 3))
        #expect(
            machine.connectionLost(reason: "missed heartbeats", jitter: 1)
                == .dropAndReconnect(reason: "missed heartbeats", delay: .milliseconds(100)))
        #expect(!machine.isReady)
        #expect(machine.backoffElapsed() == .connect(generation: 4))
        #expect(machine.connectSucceeded() == .becomeReady(generation: 4))
    }

    @Test("shutdown closes an open connection politely, and ends at once otherwise")
    func shutdownClosesOrFinishes() {
        var open = ConnectionStateMachine(policy: policy)
        _ = open.start()
        _ = open.connectSucceeded()
        #expect(open.shutdownRequested() == .closeConnection)
        #expect(open.shutdownRequested() == .none)
        #expect(open.closed() == .finish)

        var waiting = ConnectionStateMachine(policy: policy)
        _ = waiting.start()
        _ = waiting.connectFailed(reason: "refused", jitter: 0.5)
        #expect(waiting.shutdownRequested() == .finish)
        #expect(waiting.backoffElapsed() == .none)
    }

    @Test("events that do not fit the state change nothing")
    func strayEventsAreIgnored() {
        var machine = ConnectionStateMachine(policy: policy)
        #expect(machine.connectSucceeded() == .none)
        #expect(machine.connectionLost(reason: "x", jitter: 0) == .none)
        #expect(machine.backoffElapsed() == .none)
        #expect(machine.state == .idle)
    }
}

@Suite("Publisher confirm tracking")
struct ConfirmTrackerTests {
    @Test("a single ack settles one publish; a multiple ack settles every one up to its tag")
    func acksSettleByTag() {
        var tracker = ConfirmTracker<String>()
        for name in ["a", "b", "c", "d"] { _ = tracker.published(name) }
        #expect(tracker.acked(2, multiple: false).map(\.0) == ["b"])
        let settled = tracker.acked(3, multiple: true)
        #expect(settled.map(\.0) == ["a", "c"])
        #expect(settled.allSatisfy { $0.1 == .confirmed })
        #expect(tracker.pendingCount == 1)
    }

    @Test("a nack settles as refused")
    func nackSettlesAsRefused() {
        var tracker = ConfirmTracker<Int>()
        _ = tracker.published(1)
        _ = tracker.published(2)
        let settled = tracker.nacked(2, multiple: true)
        #expect(settled.map(\.0) == [1, 2])
        #expect(settled.allSatisfy { $0.1 == .nacked })
    }

    @Test("a returned publish is settled as returned by the ack that follows it")
    func returnThenAckSettlesAsReturned() {
        var tracker = ConfirmTracker<String>()
        _ = tracker.published("routable")
        let sequence = tracker.published("unroutable")
        tracker.returned(sequence: sequence, replyCode: 312, replyText: "NO_ROUTE")
        let settled = tracker.acked(2, multiple: true)
        #expect(settled[0].1 == .confirmed)
        #expect(settled[1].1 == .returned(replyCode: 312, replyText: "NO_ROUTE"))
    }

    @Test("a reset hands back every pending publish in order and numbers from 1 again")
    func resetFailsPendingAndRenumbers() {
        var tracker = ConfirmTracker<String>()
        for name in ["a", "b", "c"] { _ = tracker.published(name) }
        _ = tracker.acked(2, multiple: false)
        #expect(tracker.reset() == ["a", "c"])
        #expect(tracker.published("d") == 1)
    }

    @Test("ten thousand publishes settled by scattered multiple acks all settle exactly once")
    func manyPublishesSettleOnce() {
        var tracker = ConfirmTracker<Int>()
        for index in 0..<10_000 { _ = tracker.published(index) }
        var seen: [Int] = []
        var tag: UInt64 = 0
        while tag < 10_000 {
            tag = min(tag + UInt64.random(in: 1...300), 10_000)
            seen += tracker.acked(tag, multiple: true).map(\.0)
        }
        #expect(seen == Array(0..<10_000))
        #expect(tracker.pendingCount == 0)
    }
}

@Suite("Topology")
struct TopologyTests {
    @Test("the default names are DESIGN.md's")
    func defaultNames() {
        let topology = Topology()
        #expect(topology.jobs == "squall.jobs")
        #expect(topology.progress == "squall.progress")
        #expect(topology.results == "squall.results")
        #expect(topology.control == "squall.control")
        #expect(topology.exchanges.contains(ExchangeDefinition(name: "squall.control", kind: .fanout)))
    }

    @Test("a prefix isolates every name")
    func prefixIsolatesEveryName() {
        let topology = Topology(prefix: "t-42.")
        let names = topology.queues.map(\.name) + topology.exchanges.map(\.name)
        #expect(names.allSatisfy { $0.hasPrefix("t-42.squall.") })
        #expect(Set(names).count == names.count)
    }

    @Test("work queues are quorum queues that dead-letter past a delivery limit")
    func workQueuesAreQuorumWithDeliveryLimit() throws {
        let topology = Topology(jobDeliveryLimit: 3)
        let jobs = try #require(topology.queues.first { $0.name == topology.jobs })
        #expect(jobs.arguments.map(\.key) == ["x-queue-type", "x-dead-letter-exchange", "x-delivery-limit"])
        #expect(jobs.arguments[0].value == .string("quorum"))
        #expect(jobs.arguments[1].value == .string(topology.deadLetterExchange))
        #expect(jobs.arguments[2].value == .integer(3))
        for name in [topology.progress, topology.results] {
            let queue = try #require(topology.queues.first { $0.name == name })
            #expect(queue.kind == .quorum && queue.deadLetterExchange == topology.deadLetterExchange)
            #expect(queue.deliveryLimit != nil)
        }
        #expect(
            topology.bindings == [
                Binding(queue: topology.deadLetters, exchange: topology.deadLetterExchange, routingKey: "")
            ])
    }

    @Test("the dead-letter queue is declared before the queues that dead-letter into it")
    func deadLetterQueueFirst() {
        let topology = Topology()
        #expect(topology.queues.first?.name == topology.deadLetters)
        #expect(topology.queues.first?.deadLetterExchange == nil)
    }
}
