/// How long to wait between attempts to reach the server again, and when to give up for now.
///
/// Delays double from ``initial`` up to ``cap``; after ``giveUpAfter`` of waiting the operation in
/// flight fails with a retryable ``PostgresError`` and the next operation starts a fresh round.
/// A value type without I/O, so the schedule is tested without a server.
public struct ReconnectBackoff: Sendable, Equatable {
    public var initial: Duration
    public var cap: Duration
    public var giveUpAfter: Duration
    private var next: Duration
    private var waited: Duration = .zero

    public init(
        initial: Duration = .milliseconds(50), cap: Duration = .seconds(2), giveUpAfter: Duration = .seconds(30)
    ) {
        self.initial = initial
        self.cap = cap
        self.giveUpAfter = giveUpAfter
        self.next = initial
    }

    /// The wait before the next attempt, or nil when the time budget is spent.
    public mutating func nextDelay() -> Duration? {
        guard waited < giveUpAfter else { return nil }
        let delay = min(next, cap, giveUpAfter - waited)
        waited += delay
        next = min(next * 2, cap)
        return delay
    }

    /// Starts a fresh round after a successful connection.
    public mutating func reset() {
        next = initial
        waited = .zero
    }
}
