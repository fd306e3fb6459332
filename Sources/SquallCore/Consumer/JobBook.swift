import Foundation

/// Every job message a Consumer holds (prefetched or running), each with its ``JobLifecycle``.
///
/// The one place the lifecycles live: the job loop, the transfer callbacks, the control listener,
/// the ack-deadline ticker and the shutdown sequence all feed events through it, and each gets back
/// the actions to perform. An actor, so two sources of events never race on one lifecycle.
actor JobBook {
    /// A local key: the same job may be held twice (a redelivery after a reconnect while the first runs).
    typealias Key = Int

    struct Entry {
        let job: JobMessage
        let delivery: Delivery
        var lifecycle: JobLifecycle
        let receivedAt: ContinuousClock.Instant
        var startedAt: ContinuousClock.Instant?
        var transfer: Task<Result<TransferReport, TransferError>, Never>?
        var abortRequested = false
        var ackDeadlinePassed = false
        var conclusion: JobConclusion?
        var bytesDone: Int64 = 0
        var bytesTotal: Int64?
        var bytesPerSecond: Double = 0
        var lastPacketAt: ContinuousClock.Instant?
        var lastTimestamp: Int64 = 0
    }

    private var entries: [Key: Entry] = [:]
    private var nextKey = 0
    private var cancellations: CancellationList
    private let throttle: ProgressThrottle
    private(set) var bytesMoved: Int64 = 0
    private var deliveries: Deliveries?
    private(set) var stopping = false

    init(throttle: ProgressThrottle, cancelRetention: Duration) {
        self.throttle = throttle
        cancellations = CancellationList(retention: cancelRetention)
    }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
    /// Ids of the jobs held, for the heartbeat.
    var jobIDs: [Int64] { entries.values.map(\.job.jobID).sorted() }

    func job(_ key: Key) -> JobMessage? { entries[key]?.job }
    /// The job and the delivery that brought it, in one visit to the actor.
    func held(_ key: Key) -> (job: JobMessage, delivery: Delivery)? {
        entries[key].map { ($0.job, $0.delivery) }
    }

    /// Takes a new delivery; when a remembered cancel covers it, it is cancelled before it starts.
    func receive(_ job: JobMessage, delivery: Delivery, at now: ContinuousClock.Instant) -> (Key, [JobLifecycle.Action])
    {
        let key = nextKey
        nextKey += 1
        entries[key] = Entry(
            job: job, delivery: delivery, lifecycle: JobLifecycle(throttle: throttle), receivedAt: now)
        if stopping { return (key, handle(key, .shutdownStarted)) }
        if cancellations.covers(job) { return (key, handle(key, .cancelRequested)) }
        return (key, [])
    }

    /// Feeds `event` to the job's lifecycle; a job already gone gets no actions.
    func handle(_ key: Key, _ event: JobLifecycle.Event) -> [JobLifecycle.Action] {
        guard var entry = entries[key] else { return [] }
        if case .started(let now) = event { entry.startedAt = now }
        let actions = entry.lifecycle.handle(event)
        entries[key] = entry
        return actions
    }

    /// Whether the job is started and its transfer should run.
    func isRunning(_ key: Key) -> Bool {
        switch entries[key]?.lifecycle.state {
        case .running?, .transferring?: true
        default: false
        }
    }

    /// Records the transfer's task so a cancel or shutdown can abort it; cancels it at once if an
    /// abort was asked for before it existed.
    func attach(_ key: Key, _ transfer: Task<Result<TransferReport, TransferError>, Never>) {
        guard entries[key] != nil else {
            transfer.cancel()
            return
        }
        entries[key]?.transfer = transfer
        if entries[key]?.abortRequested == true { transfer.cancel() }
    }

    func abort(_ key: Key) {
        entries[key]?.abortRequested = true
        entries[key]?.transfer?.cancel()
    }

    /// A progress report: bytes moved are counted here; returns the lifecycle's actions and the new bytes.
    func progress(
        _ key: Key, _ progress: TransferProgress, at now: ContinuousClock.Instant
    ) -> (
        [JobLifecycle.Action], newBytes: Int64
    ) {
        guard let entry = entries[key] else { return ([], 0) }
        let newBytes = max(0, progress.bytesDone - entry.bytesDone)
        entries[key]?.bytesDone = max(entry.bytesDone, progress.bytesDone)
        entries[key]?.bytesPerSecond = progress.bytesPerSecond
        entries[key]?.bytesTotal = progress.bytesTotal
        bytesMoved += newBytes
        let actions = handle(key, .progress(bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal, at: now))
        return (actions, newBytes)
    }

    /// The transfer returned: counts the last bytes of a copy, and feeds `transferFinished`.
    func finish(
        _ key: Key, _ conclusion: JobConclusion, at now: ContinuousClock.Instant
    ) -> (
        [JobLifecycle.Action], newBytes: Int64
    ) {
        guard let entry = entries[key] else { return ([], 0) }
        entries[key]?.conclusion = conclusion
        entries[key]?.transfer = nil
        var newBytes: Int64 = 0
        if case .report(let report) = conclusion, report.outcome == .done {
            newBytes = max(0, report.bytesFetched - entry.bytesDone)
            bytesMoved += newBytes
        }
        let actions = handle(key, .transferFinished(conclusion.outcome, bytes: conclusion.bytes, at: now))
        return (actions, newBytes)
    }

    /// A timestamp for the job's next packet: now, but always after its previous packet's, so the
    /// Observer's and Collector's `ts` guards see them in the order they were sent.
    func nextTimestamp(_ key: Key) -> Timestamp {
        let now = Timestamp.now().milliseconds
        let last = entries[key]?.lastTimestamp ?? 0
        let stamp = max(now, last + 1)
        entries[key]?.lastTimestamp = stamp
        return Timestamp(milliseconds: stamp)
    }

    func progressPacket(
        _ key: Key, phase: ProgressPacket.Phase, bytesDone: Int64, bytesTotal: Int64?, node: String
    ) -> ProgressPacket? {
        guard let entry = entries[key] else { return nil }
        entries[key]?.lastPacketAt = .now
        return ProgressPacket(
            jobID: entry.job.jobID, attempt: entry.job.attempt, node: node, timestamp: nextTimestamp(key),
            bytesDone: bytesDone, bytesTotal: bytesTotal, bytesPerSecond: entry.bytesPerSecond, phase: phase)
    }

    func resultPacket(
        _ key: Key, outcome: ResultPacket.Outcome, node: String, at now: ContinuousClock.Instant
    )
        -> ResultPacket?
    {
        guard let entry = entries[key] else { return nil }
        let duration = entry.startedAt.map { now - $0 } ?? .zero
        return JobConclusion.resultPacket(
            for: entry.job, node: node, outcome: outcome, conclusion: entry.conclusion, duration: duration,
            timestamp: nextTimestamp(key))
    }

    /// Forgets the job once nothing more will happen to it here.
    func removeIfFinal(_ key: Key) -> JobLifecycle.State? {
        guard let entry = entries[key], entry.lifecycle.state.isFinal else { return nil }
        entries[key] = nil
        return entry.lifecycle.state
    }

    /// Remembers a cancel order and returns the actions for each held job it covers.
    func cancel(_ message: ControlMessage, at now: ContinuousClock.Instant) -> [(Key, [JobLifecycle.Action])] {
        cancellations.record(message, at: now)
        let keys = entries.filter { CancellationList.cancels(message, $0.value.job) }.keys.sorted()
        return keys.map { ($0, handle($0, .cancelRequested)) }
    }

    /// Jobs held past the ack deadline, each told once.
    func passAckDeadlines(
        olderThan deadline: Duration, at now: ContinuousClock.Instant
    ) -> [(
        Key, [JobLifecycle.Action]
    )] {
        let due = entries.filter { !$0.value.ackDeadlinePassed && now - $0.value.receivedAt >= deadline }.keys.sorted()
        return due.map { key in
            entries[key]?.ackDeadlinePassed = true
            return (key, handle(key, .ackDeadlineReached))
        }
    }

    /// Running jobs whose last progress packet is older than `quiet` (a stalled or slow source): each
    /// gets a progress event at its current count, which the throttle turns into a packet. The packet
    /// is what renews the job's database lease, so a long stall is not mistaken for a dead node.
    func keepAlive(quietFor quiet: Duration, at now: ContinuousClock.Instant) -> [(Key, [JobLifecycle.Action])] {
        let quietKeys = entries.filter { _, entry in
            guard let last = entry.lastPacketAt else { return false }
            switch entry.lifecycle.state {
            case .running, .transferring: return now - last >= quiet
            default: return false
            }
        }.keys.sorted()
        return quietKeys.map { key in
            let entry = entries[key]!
            return (key, handle(key, .progress(bytesDone: entry.bytesDone, bytesTotal: entry.bytesTotal, at: now)))
        }
    }

    /// Sends `event` to every job held (shutdown).
    func broadcast(_ event: JobLifecycle.Event) -> [(Key, [JobLifecycle.Action])] {
        entries.keys.sorted().map { ($0, handle($0, event)) }
    }

    /// The job stream to stop at shutdown; returns false when shutdown has already begun (stop it now).
    func consuming(_ deliveries: Deliveries) -> Bool {
        self.deliveries = deliveries
        return !stopping
    }

    /// Marks the start of shutdown and hands back the job stream to stop.
    func beginStopping() -> Deliveries? {
        stopping = true
        defer { deliveries = nil }
        return deliveries
    }
}
