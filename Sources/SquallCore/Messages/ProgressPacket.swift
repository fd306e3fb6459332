/// How far one attempt at a job has got, sent by the Consumer doing it to `squall.progress`.
public struct ProgressPacket: SquallMessage, Equatable {
    public static let kind = "progress"

    /// What the transfer is doing now.
    public enum Phase: String, Codable, Sendable, CaseIterable {
        /// Taken by a Consumer, checking the destination.
        case starting
        /// Bytes are moving.
        case transferring
        /// All bytes sent; completing the upload.
        case completing
    }

    public var jobID: Int64
    public var attempt: Int32
    public var node: String
    public var timestamp: Timestamp
    public var bytesDone: Int64
    /// Unknown for a source without a length.
    public var bytesTotal: Int64?
    /// Bytes per second over the recent past.
    public var bytesPerSecond: Double
    public var phase: Phase

    public init(
        jobID: Int64, attempt: Int32, node: String, timestamp: Timestamp, bytesDone: Int64, bytesTotal: Int64?,
        bytesPerSecond: Double, phase: Phase
    ) {
        self.jobID = jobID
        self.attempt = attempt
        self.node = node
        self.timestamp = timestamp
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.bytesPerSecond = bytesPerSecond
        self.phase = phase
    }

    enum CodingKeys: String, CodingKey {
        case jobID = "job_id"
        case attempt, node
        case timestamp = "ts"
        case bytesDone = "bytes_done"
        case bytesTotal = "bytes_total"
        case bytesPerSecond = "rate"
        case phase
    }
}
