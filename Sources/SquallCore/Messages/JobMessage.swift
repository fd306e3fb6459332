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
    /// When the job was claimed, no job had finished (done or skipped) into its destination. A hint,
    /// not a promise: a first delivery of a first attempt then skips the destination HEAD, and the
    /// create-only write finds an object put there meanwhile (docs/services.md). Absent on the wire
    /// (an older Producer) reads as false: the Consumer asks first, as it always did.
    public var freshDestination: Bool

    public init(
        jobID: Int64, batchID: Int64, attempt: Int32, source: String, destination: String, priority: Int32 = 0,
        expectedSHA256: String? = nil, enqueuedAt: Timestamp, freshDestination: Bool = false
    ) {
        self.jobID = jobID
        self.batchID = batchID
        self.attempt = attempt
        self.source = source
        self.destination = destination
        self.priority = priority
        self.expectedSHA256 = expectedSHA256
        self.enqueuedAt = enqueuedAt
        self.freshDestination = freshDestination
    }

    enum CodingKeys: String, CodingKey {
        case jobID = "job_id"
        case batchID = "batch_id"
        case attempt, source, destination, priority
        case expectedSHA256 = "expected_sha256"
        case enqueuedAt = "enqueued_at"
        case freshDestination = "fresh_destination"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            jobID: try container.decode(Int64.self, forKey: .jobID),
            batchID: try container.decode(Int64.self, forKey: .batchID),
            attempt: try container.decode(Int32.self, forKey: .attempt),
            source: try container.decode(String.self, forKey: .source),
            destination: try container.decode(String.self, forKey: .destination),
            priority: try container.decode(Int32.self, forKey: .priority),
            expectedSHA256: try container.decodeIfPresent(String.self, forKey: .expectedSHA256),
            enqueuedAt: try container.decode(Timestamp.self, forKey: .enqueuedAt),
            freshDestination: try container.decodeIfPresent(Bool.self, forKey: .freshDestination) ?? false)
    }
}

extension JobMessage {
    /// Whether this delivery may leave out the destination HEAD: the destination was fresh at claim
    /// time, this is the job's first attempt, and the broker has not delivered it before. Any other
    /// job may have put its object there already, and a HEAD is cheaper than fetching it again.
    public func mayWriteWithoutAsking(redelivered: Bool) -> Bool {
        freshDestination && attempt == 1 && !redelivered
    }
}
