extension BatchSnapshot {
    /// The snapshot of `status` at `now`, as `squallctl watch` and `wait` poll it.
    ///
    /// The total size is known only once no job waits unstarted (a job's size is learnt when its
    /// transfer starts), so before that ``bytesTotal`` is nil and the ETA is counted in jobs.
    /// Elapsed time runs from submission to the batch's finish, or to `now` while it runs.
    public init(_ status: BatchStatus, at now: Timestamp) {
        let unstarted = status.count(.pending) + status.count(.queued)
        let end = status.finishedAt ?? now
        self.init(
            batch: status.name, pending: Int(status.count(.pending)), queued: Int(status.count(.queued)),
            running: Int(status.count(.running)), done: Int(status.count(.done)),
            skipped: Int(status.count(.skipped)), failed: Int(status.count(.failed)),
            cancelled: Int(status.count(.cancelled)), bytesDone: status.bytesDone,
            bytesTotal: unstarted == 0 && status.bytesTotal > 0 ? status.bytesTotal : nil,
            elapsed: .milliseconds(max(0, end.milliseconds - status.createdAt.milliseconds)))
    }
}
