/// How long to wait before each reconnection attempt: capped exponential backoff with full jitter.
///
/// Full jitter (a uniformly random delay between zero and the capped exponential) spreads the
/// reconnections of a whole swarm after a broker restart instead of having every node knock at once.
public struct ReconnectPolicy: Sendable, Equatable {
    /// The ceiling of the first retry's delay.
    public var initialDelay: Duration
    /// No delay is ever longer than this.
    public var maximumDelay: Duration

    public init(initialDelay: Duration = .milliseconds(200), maximumDelay: Duration = .seconds(10)) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// The ceiling for the `attempt`-th consecutive failure (1-based): initial × 2^(attempt-1), capped.
    public func ceiling(attempt: Int) -> Duration {
        let doublings = min(max(attempt - 1, 0), 30)
        let ceiling = initialDelay * (1 << doublings)
        return min(ceiling, maximumDelay)
    }

    /// A delay drawn uniformly from zero to the ceiling; `unit` is a random number in 0..<1.
    public func delay(attempt: Int, unit: Double) -> Duration {
        ceiling(attempt: attempt) * min(max(unit, 0), 1)
    }
}
