/// The cancel orders a Consumer has heard on `squall.control`, remembered so that jobs delivered
/// *after* the order (still queued in the broker when it was broadcast) are cancelled too.
///
/// An order covers a job only if the job was enqueued no later than the order was issued: a batch
/// that is reset or resubmitted after a cancel gets new job messages with a later `enqueuedAt`,
/// and those run. Orders are forgotten after ``retention`` so the list stays small; by then the
/// database has settled the batch and the Producer no longer publishes its jobs.
public struct CancellationList: Sendable {
    public var retention: Duration

    private var batches: [Int64: Order] = [:]
    private var jobs: [Int64: Order] = [:]

    private struct Order: Sendable {
        var issuedAt: Timestamp
        var heardAt: ContinuousClock.Instant
    }

    public init(retention: Duration = .seconds(3600)) {
        self.retention = retention
    }

    /// Remembers `message` (heard at `now`), and forgets orders older than the retention.
    public mutating func record(_ message: ControlMessage, at now: ContinuousClock.Instant) {
        prune(at: now)
        let order = Order(issuedAt: message.issuedAt, heardAt: now)
        switch message.command {
        case .cancelBatch(let batchID): batches[batchID] = newer(batches[batchID], order)
        case .cancelJob(let jobID): jobs[jobID] = newer(jobs[jobID], order)
        }
    }

    /// Whether a remembered order cancels `job`.
    public func covers(_ job: JobMessage) -> Bool {
        for order in [batches[job.batchID], jobs[job.jobID]] {
            if let order, job.enqueuedAt <= order.issuedAt { return true }
        }
        return false
    }

    /// Whether `message` itself cancels `job` (the same rule as ``covers(_:)``).
    public static func cancels(_ message: ControlMessage, _ job: JobMessage) -> Bool {
        guard job.enqueuedAt <= message.issuedAt else { return false }
        switch message.command {
        case .cancelBatch(let batchID): return job.batchID == batchID
        case .cancelJob(let jobID): return job.jobID == jobID
        }
    }

    /// How many orders are remembered.
    public var count: Int { batches.count + jobs.count }

    private mutating func prune(at now: ContinuousClock.Instant) {
        let retention = retention
        batches = batches.filter { now - $0.value.heardAt < retention }
        jobs = jobs.filter { now - $0.value.heardAt < retention }
    }

    private func newer(_ old: Order?, _ new: Order) -> Order {
        guard let old else { return new }
        return Order(issuedAt: max(old.issuedAt, new.issuedAt), heardAt: new.heardAt)
    }
}
