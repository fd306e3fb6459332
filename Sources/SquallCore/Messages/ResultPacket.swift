/// How one attempt at a job ended, sent once by the Consumer to `squall.results`.
public struct ResultPacket: SquallMessage, Equatable {
    public static let kind = "result"

    /// The settled state the Collector moves the job to.
    public enum Outcome: String, Codable, Sendable, CaseIterable {
        /// Transferred and verified.
        case done
        /// The destination already held the same bytes.
        case skipped
        /// Retries exhausted, or a permanent error.
        case failed
        /// Stopped by `squallctl cancel`.
        case cancelled
    }

    public var jobID: Int64
    public var attempt: Int32
    public var node: String
    public var timestamp: Timestamp
    public var outcome: Outcome
    public var bytes: Int64
    public var etag: String?
    /// Lowercase hex SHA-256 of the object.
    public var sha256: String?
    /// A stable machine-readable code (`http_404`, `checksum_mismatch`, …) when failed.
    public var errorCode: String?
    public var errorMessage: String?
    public var durationMilliseconds: Int64

    public init(
        jobID: Int64, attempt: Int32, node: String, timestamp: Timestamp, outcome: Outcome, bytes: Int64,
        etag: String? = nil, sha256: String? = nil, errorCode: String? = nil, errorMessage: String? = nil,
        durationMilliseconds: Int64
    ) {
        self.jobID = jobID
        self.attempt = attempt
        self.node = node
        self.timestamp = timestamp
        self.outcome = outcome
        self.bytes = bytes
        self.etag = etag
        self.sha256 = sha256
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.durationMilliseconds = durationMilliseconds
    }

    enum CodingKeys: String, CodingKey {
        case jobID = "job_id"
        case attempt, node
        case timestamp = "ts"
        case outcome, bytes, etag, sha256
        case errorCode = "error_code"
        case errorMessage = "error_message"
        case durationMilliseconds = "duration_ms"
    }
}
