/// A batch's progress at one instant, as `squallctl watch` and `wait` read it from the status query.
public struct BatchSnapshot: Sendable, Equatable {
    public var batch: String
    public var pending: Int
    public var queued: Int
    public var running: Int
    public var done: Int
    public var skipped: Int
    public var failed: Int
    public var cancelled: Int
    public var bytesDone: Int64
    /// Unknown while some sources have not reported a length.
    public var bytesTotal: Int64?
    /// Time since the batch was submitted: rates and the ETA are averages over this span, so a
    /// watch started mid-batch does not count earlier bytes as moved in its first second.
    public var elapsed: Duration

    public init(
        batch: String, pending: Int = 0, queued: Int = 0, running: Int = 0, done: Int = 0, skipped: Int = 0,
        failed: Int = 0, cancelled: Int = 0, bytesDone: Int64 = 0, bytesTotal: Int64? = nil, elapsed: Duration = .zero
    ) {
        self.batch = batch
        self.pending = pending
        self.queued = queued
        self.running = running
        self.done = done
        self.skipped = skipped
        self.failed = failed
        self.cancelled = cancelled
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.elapsed = elapsed
    }

    public var total: Int { pending + queued + running + settled }
    /// Jobs in a final state: done, skipped, failed or cancelled.
    public var settled: Int { done + skipped + failed + cancelled }
    public var isComplete: Bool { settled == total }
}
