import Testing

@testable import SquallCore

@Suite("Node registry view")
struct NodeRegistryViewTests {
    func heartbeat(_ node: String, at ms: Int64, jobs: [Int64] = []) -> Heartbeat {
        Heartbeat(
            node: node, role: .consumer, host: "host-\(node)", startedAt: Timestamp(milliseconds: 0),
            timestamp: Timestamp(milliseconds: ms), currentJobs: jobs, bytesMoved: 0)
    }

    func at(_ ms: Int64) -> Timestamp { Timestamp(milliseconds: ms) }

    @Test("a node is lost once 3 heartbeat periods pass without a heartbeat, not before")
    func lostAfterThreePeriods() {
        var view = NodeRegistryView(heartbeatPeriod: .seconds(5))
        view.record(heartbeat("a", at: 10_000))
        #expect(view.nodes(at: at(10_000)).map(\.state) == [.idle])
        #expect(view.nodes(at: at(24_999)).map(\.state) == [.idle])
        #expect(view.nodes(at: at(25_000)).map(\.state) == [.lost])
    }

    @Test("a lost node that sends a heartbeat again is back")
    func comesBack() {
        var view = NodeRegistryView(heartbeatPeriod: .seconds(5))
        view.record(heartbeat("a", at: 0))
        #expect(view.nodes(at: at(60_000)).first?.state == .lost)
        view.record(heartbeat("a", at: 60_000, jobs: [7]))
        #expect(view.nodes(at: at(61_000)).first?.state == .busy)
    }

    @Test("an older heartbeat (redelivered) does not replace a newer one")
    func olderIgnored() {
        var view = NodeRegistryView(heartbeatPeriod: .seconds(5))
        view.record(heartbeat("a", at: 20_000, jobs: [1, 2]))
        view.record(heartbeat("a", at: 5_000))
        let node = view.nodes(at: at(21_000)).first
        #expect(node?.heartbeat.timestamp == at(20_000))
        #expect(node?.state == .busy)
    }

    @Test("nodes are listed by name and counted per state, zeros included")
    func countsAndOrder() {
        var view = NodeRegistryView(heartbeatPeriod: .seconds(2))
        view.record(heartbeat("c", at: 10_000, jobs: [1]))
        view.record(heartbeat("a", at: 10_000))
        view.record(heartbeat("b", at: 1_000))
        #expect(view.nodes(at: at(10_500)).map(\.heartbeat.node) == ["a", "b", "c"])
        #expect(view.counts(at: at(10_500)) == [.busy: 1, .idle: 1, .lost: 1])
        #expect(NodeRegistryView().counts(at: at(0)) == [.busy: 0, .idle: 0, .lost: 0])
    }

    @Test("the number of periods is configurable")
    func configurablePeriods() {
        let view = NodeRegistryView(heartbeatPeriod: .milliseconds(500), lostAfterPeriods: 5)
        #expect(view.state(lastHeard: at(0), currentJobs: 0, at: at(2_499)) == .idle)
        #expect(view.state(lastHeard: at(0), currentJobs: 0, at: at(2_500)) == .lost)
    }
}
