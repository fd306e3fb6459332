/// A job as the Producer publishes it to `squall.jobs`: one target to fetch into one destination.
public struct JobMessage: SquallMessage, Equatable {
    public static let kind = "job"

    public var jobID: Int64
    public var batchID: Int64
    /// The attempt number: the fencing token every packet about this job carries back.
    public var attempt: Int32
    /// `http(s)://…`, `s3://bucket/key` or a local path.
    public var source: String
    /// `s3://bucket/key` or a local path.
    public var destination: String
    public var priority: Int32
    /// Lowercase hex SHA-256 the fetched bytes must have, when the manifest gave one.
    public var expectedSHA256: String?
    public var enqueuedAt: Timestamp

    public init(
        jobID: Int64, batchID: Int64, attempt: Int32, source: String, destination: String, priority: Int32 = 0,
        expectedSHA256: String? = nil, enqueuedAt: Timestamp
    ) {
        self.jobID = jobID
        self.batchID = batchID
        self.attempt = attempt
        self.source = source
        self.destination = destination
        self.priority = priority
        self.expectedSHA256 = expectedSHA256
        self.enqueuedAt = enqueuedAt
    }

    enum CodingKeys: String, CodingKey {
        case jobID = "job_id"
        case batchID = "batch_id"
        case attempt, source, destination, priority
        case expectedSHA256 = "expected_sha256"
        case enqueuedAt = "enqueued_at"
    }
}
