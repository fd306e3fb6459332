/// Where a job is in its life: `pending → queued → running → done | skipped | failed | cancelled`.
public enum JobState: String, Sendable, Codable, CaseIterable, Comparable {
    case pending, queued, running, done, skipped, failed, cancelled

    /// Settled for the current attempt: no packet moves it any more.
    public var isTerminal: Bool {
        switch self {
        case .pending, .queued, .running: false
        case .done, .skipped, .failed, .cancelled: true
        }
    }

    public static func < (lhs: JobState, rhs: JobState) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// A batch just written by ``JobRepository/submit(batchName:manifest:)``.
public struct SubmittedBatch: Sendable, Equatable, Codable {
    public init(id: Int64, name: String, jobCount: Int64) {
        self.id = id
        self.name = name
        self.jobCount = jobCount
    }

    public var id: Int64
    public var name: String
    public var jobCount: Int64

    enum CodingKeys: String, CodingKey {
        case id, name
        case jobCount = "job_count"
    }
}

/// A job a result settled, as ``JobRepository/applyResults(_:)`` reports it.
public struct SettledJob: Sendable, Equatable {
    public init(jobID: Int64, batchID: Int64, attempt: Int32, state: JobState) {
        self.jobID = jobID
        self.batchID = batchID
        self.attempt = attempt
        self.state = state
    }

    public var jobID: Int64
    public var batchID: Int64
    public var attempt: Int32
    public var state: JobState
}

/// A batch whose every job is now terminal.
public struct FinishedBatch: Sendable, Equatable {
    public init(id: Int64, name: String) {
        self.id = id
        self.name = name
    }

    public var id: Int64
    public var name: String
}

/// What applying a set of results changed.
public struct AppliedResults: Sendable, Equatable {
    public init(settled: [SettledJob], finishedBatches: [FinishedBatch]) {
        self.settled = settled
        self.finishedBatches = finishedBatches
    }

    /// The jobs that settled; packets that were stale or repeated are absent.
    public var settled: [SettledJob]
    /// The batches these results finished.
    public var finishedBatches: [FinishedBatch]
}

/// What a rescue of expired leases did.
public struct RescuedJobs: Sendable, Equatable {
    public init(requeued: Int, exhausted: Int, finishedBatches: [FinishedBatch]) {
        self.requeued = requeued
        self.exhausted = exhausted
        self.finishedBatches = finishedBatches
    }

    /// Jobs put back to pending for another attempt.
    public var requeued: Int
    /// Jobs failed with `attempts_exhausted`.
    public var exhausted: Int
    public var finishedBatches: [FinishedBatch]
}

/// A batch `cancel` stopped; the id is what a control message names.
public struct CancelledBatch: Sendable, Equatable {
    public init(id: Int64, name: String, cancelledJobs: Int) {
        self.id = id
        self.name = name
        self.cancelledJobs = cancelledJobs
    }

    public var id: Int64
    public var name: String
    public var cancelledJobs: Int
}

/// A batch's progress: jobs per state and bytes.
public struct BatchStatus: Sendable, Equatable, Codable {
    public var id: Int64
    public var name: String
    public var jobCount: Int64
    /// Jobs in each state; every state is present, zero included.
    public var counts: [JobState: Int64]
    public var bytesDone: Int64
    /// Sum of the known sizes (a job's size is known once its transfer started).
    public var bytesTotal: Int64
    public var createdAt: Timestamp
    public var finishedAt: Timestamp?
    public var cancelledAt: Timestamp?

    public func count(_ state: JobState) -> Int64 { counts[state] ?? 0 }

    enum CodingKeys: String, CodingKey {
        case id, name, counts
        case jobCount = "job_count"
        case bytesDone = "bytes_done"
        case bytesTotal = "bytes_total"
        case createdAt = "created_at"
        case finishedAt = "finished_at"
        case cancelledAt = "cancelled_at"
    }

    public init(
        id: Int64, name: String, jobCount: Int64, counts: [JobState: Int64], bytesDone: Int64, bytesTotal: Int64,
        createdAt: Timestamp, finishedAt: Timestamp?, cancelledAt: Timestamp?
    ) {
        self.id = id
        self.name = name
        self.jobCount = jobCount
        self.counts = counts
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.cancelledAt = cancelledAt
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(Int64.self, forKey: .id)
        name = try container.decode(String.self, forKey: .name)
        jobCount = try container.decode(Int64.self, forKey: .jobCount)
        let named = try container.decode([String: Int64].self, forKey: .counts)
        counts = Dictionary(
            uniqueKeysWithValues: named.compactMap { key, value in JobState(rawValue: key).map { ($0, value) } })
        bytesDone = try container.decode(Int64.self, forKey: .bytesDone)
        bytesTotal = try container.decode(Int64.self, forKey: .bytesTotal)
        createdAt = try container.decode(Timestamp.self, forKey: .createdAt)
        finishedAt = try container.decodeIfPresent(Timestamp.self, forKey: .finishedAt)
        cancelledAt = try container.decodeIfPresent(Timestamp.self, forKey: .cancelledAt)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(jobCount, forKey: .jobCount)
        try container.encode(
            Dictionary(uniqueKeysWithValues: JobState.allCases.map { ($0.rawValue, count($0)) }), forKey: .counts)
        try container.encode(bytesDone, forKey: .bytesDone)
        try container.encode(bytesTotal, forKey: .bytesTotal)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(finishedAt, forKey: .finishedAt)
        try container.encode(cancelledAt, forKey: .cancelledAt)
    }
}

/// One job's row, as `squallctl jobs` lists it.
public struct JobRecord: Sendable, Equatable, Codable {
    public var id: Int64
    public var batchID: Int64
    public var state: JobState
    public var attempt: Int32
    public var maxAttempts: Int32
    public var priority: Int32
    public var source: String
    public var destination: String
    public var expectedSHA256: String?
    public var size: Int64?
    public var bytesDone: Int64
    public var sha256: String?
    public var etag: String?
    public var errorCode: String?
    public var errorMessage: String?
    public var node: String?
    public var progressTimestamp: Timestamp
    public var resultTimestamp: Timestamp
    public var leaseExpiresAt: Timestamp?
    public var updatedAt: Timestamp

    enum CodingKeys: String, CodingKey {
        case id
        case batchID = "batch_id"
        case state, attempt
        case maxAttempts = "max_attempts"
        case priority, source, destination
        case expectedSHA256 = "expected_sha256"
        case size
        case bytesDone = "bytes_done"
        case sha256, etag
        case errorCode = "error_code"
        case errorMessage = "error_message"
        case node
        case progressTimestamp = "progress_ts"
        case resultTimestamp = "result_ts"
        case leaseExpiresAt = "lease_expires_at"
        case updatedAt = "updated_at"
    }
}

/// A node of the swarm as the registry last heard of it.
public struct NodeRecord: Sendable, Equatable, Codable {
    public var name: String
    public var role: Heartbeat.Role
    public var host: String
    public var startedAt: Timestamp
    public var lastSeen: Timestamp
    public var currentJobs: [Int64]
    public var bytesMoved: Int64

    enum CodingKeys: String, CodingKey {
        case name, role, host
        case startedAt = "started_at"
        case lastSeen = "last_seen"
        case currentJobs = "current_jobs"
        case bytesMoved = "bytes_moved"
    }
}

/// A repository operation refused for a reason of the domain, not of the database.
public enum JobRepositoryError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownBatch(String)
    case batchExists(String)

    public var description: String {
        switch self {
        case .unknownBatch(let name): "batch \"\(name)\" does not exist"
        case .batchExists(let name): "batch \"\(name)\" already exists; choose another name"
        }
    }
}
