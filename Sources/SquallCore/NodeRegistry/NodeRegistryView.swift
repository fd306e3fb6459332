/// The swarm as the Observer sees it: the newest heartbeat of each node, and which nodes are lost.
///
/// Nodes never talk to each other, so a node that dies simply stops sending heartbeats. One missed
/// heartbeat is noise (a busy broker, a GC pause elsewhere); three in a row means the node is gone,
/// and its jobs will come back through the Producer's lease rescue.
public struct NodeRegistryView: Sendable {
    /// What a node is doing, as shown by `squallctl nodes` and counted by the `squall_nodes` gauge.
    public enum NodeState: String, Sendable, CaseIterable, Codable {
        /// Heard from recently and working on jobs.
        case busy
        /// Heard from recently, holding no jobs.
        case idle
        /// Not heard from for ``NodeRegistryView/lostAfterPeriods`` heartbeat periods.
        case lost
    }

    public struct Node: Sendable, Equatable {
        public var heartbeat: Heartbeat
        public var state: NodeState
    }

    public var heartbeatPeriod: Duration
    public var lostAfterPeriods: Int
    private var latest: [String: Heartbeat] = [:]

    public init(heartbeatPeriod: Duration = .seconds(5), lostAfterPeriods: Int = 3) {
        self.heartbeatPeriod = heartbeatPeriod
        self.lostAfterPeriods = lostAfterPeriods
    }

    /// Keeps `heartbeat` if it is the node's newest; an older one (redelivered, reordered) changes nothing.
    public mutating func record(_ heartbeat: Heartbeat) {
        if let known = latest[heartbeat.node], known.timestamp >= heartbeat.timestamp { return }
        latest[heartbeat.node] = heartbeat
    }

    /// A node's state at `now` given when it was last heard from and how many jobs it held then.
    public func state(lastHeard: Timestamp, currentJobs: Int, at now: Timestamp) -> NodeState {
        let silence = now.milliseconds - lastHeard.milliseconds
        if silence >= Self.milliseconds(heartbeatPeriod) * Int64(lostAfterPeriods) { return .lost }
        return currentJobs > 0 ? .busy : .idle
    }

    /// Every node known, sorted by name, with its state at `now`.
    public func nodes(at now: Timestamp) -> [Node] {
        latest.values.sorted { $0.node < $1.node }.map {
            Node(heartbeat: $0, state: state(lastHeard: $0.timestamp, currentJobs: $0.currentJobs.count, at: now))
        }
    }

    /// How many nodes are in each state at `now` (every state present, zero included, for the gauge).
    public func counts(at now: Timestamp) -> [NodeState: Int] {
        var counts = Dictionary(uniqueKeysWithValues: NodeState.allCases.map { ($0, 0) })
        for node in nodes(at: now) { counts[node.state, default: 0] += 1 }
        return counts
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
