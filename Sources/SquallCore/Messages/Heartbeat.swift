/// A node saying it is alive and what it holds, sent every few seconds to `squall.progress`.
public struct Heartbeat: SquallMessage, Equatable {
    public static let kind = "heartbeat"

    /// Which of the four services a node runs.
    public enum Role: String, Codable, Sendable, CaseIterable {
        case producer, consumer, observer, collector
    }

    public var node: String
    public var role: Role
    public var host: String
    public var startedAt: Timestamp
    public var timestamp: Timestamp
    /// Ids of the jobs this node is working on now.
    public var currentJobs: [Int64]
    /// Bytes this node has moved since it started.
    public var bytesMoved: Int64

    public init(
        node: String, role: Role, host: String, startedAt: Timestamp, timestamp: Timestamp, currentJobs: [Int64],
        bytesMoved: Int64
    ) {
        self.node = node
        self.role = role
        self.host = host
        self.startedAt = startedAt
        self.timestamp = timestamp
        self.currentJobs = currentJobs
        self.bytesMoved = bytesMoved
    }

    enum CodingKeys: String, CodingKey {
        case node, role, host
        case startedAt = "started_at"
        case timestamp = "ts"
        case currentJobs = "current_jobs"
        case bytesMoved = "bytes_moved"
    }
}
