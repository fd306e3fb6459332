/// What `squallctl wait` concludes from a snapshot: keep waiting, or exit with the code scripts rely on.
///
/// It waits for the whole batch to settle even after a first failure, so that exit 1 means "the
/// batch is complete and `reset-failed` may run now", never "some jobs are still moving".
public enum WaitVerdict: Sendable, Equatable {
    case keepWaiting
    /// Every job is done or skipped: exit 0.
    case succeeded
    /// Every job settled and at least one failed or was cancelled: exit 1.
    case failed
    /// The timeout passed before every job settled: exit 2.
    case timedOut

    /// Judges `snapshot`; `timeoutPassed` only matters while the batch is not complete.
    public init(_ snapshot: BatchSnapshot, timeoutPassed: Bool) {
        if snapshot.isComplete {
            self = snapshot.failed + snapshot.cancelled > 0 ? .failed : .succeeded
        } else {
            self = timeoutPassed ? .timedOut : .keepWaiting
        }
    }

    /// The process exit status, or nil while waiting goes on.
    public var exitCode: Int32? {
        switch self {
        case .keepWaiting: nil
        case .succeeded: 0
        case .failed: 1
        case .timedOut: 2
        }
    }
}
