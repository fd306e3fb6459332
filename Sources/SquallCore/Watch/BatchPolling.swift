/// The loop behind `squallctl watch` and `wait`: poll the batch's status until it settles or time runs out.
///
/// The status comes from the caller (the repository's status aggregate, later), so the loop is
/// tested with a scripted sequence of snapshots. A failed poll (the database restarting) is not
/// the batch's failure: it is retried at the next interval, and only the timeout ends the wait.
public enum BatchPolling {
    /// Polls `snapshot` every `interval`, hands each result to `show` (watch renders it), and returns
    /// the verdict once the batch is complete, or `.timedOut` when `timeout` has passed first.
    public static func wait(
        every interval: Duration, timeout: Duration?,
        snapshot: () async throws -> BatchSnapshot,
        show: (BatchSnapshot) -> Void = { _ in },
        pollFailed: (any Error) -> Void = { _ in }
    ) async throws -> WaitVerdict {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            let timeoutPassed = deadline.map { ContinuousClock.now >= $0 } ?? false
            do {
                let current = try await snapshot()
                show(current)
                let verdict = WaitVerdict(current, timeoutPassed: timeoutPassed)
                if verdict != .keepWaiting { return verdict }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                pollFailed(error)
                if timeoutPassed { return .timedOut }
            }
            var next = ContinuousClock.now + interval
            if let deadline, deadline < next, deadline > ContinuousClock.now { next = deadline }
            try await Task.sleep(until: next, clock: .continuous)
        }
    }
}
