/// How many pending jobs the Producer claims now, so `squall.jobs` holds a window of work, not the whole backlog.
///
/// The database is the truth and the broker only a window the Producer can always rebuild: keeping
/// that window small bounds what a broker restart must redeliver and lets priorities take effect
/// soon. The window is what the broker holds (`queueDepth`, messages ready) plus what the Producer
/// has claimed and not yet seen confirmed (`inFlight`). Between the low- and high-water marks the
/// Producer waits, so it claims in a few large rounds rather than many one-job trickles.
public struct ProducerWindow: Sendable, Equatable {
    /// The window size the Producer tops up to.
    public var highWaterMark: Int
    /// The window size at or below which the Producer tops up again.
    public var lowWaterMark: Int
    /// The most jobs one claim takes, so one round never holds a long transaction or floods the broker.
    public var maximumClaim: Int

    /// Fails when the marks are not `0 ≤ low < high` or `maximumClaim` is not positive, naming the value.
    public init(
        highWaterMark: Int = 1000, lowWaterMark: Int = 500, maximumClaim: Int = 500
    ) throws(ProducerWindowError) {
        guard highWaterMark > 0 else { throw ProducerWindowError("high-water mark \(highWaterMark) must be > 0") }
        guard lowWaterMark >= 0, lowWaterMark < highWaterMark else {
            throw ProducerWindowError(
                "low-water mark \(lowWaterMark) must be ≥ 0 and below the high-water mark \(highWaterMark)")
        }
        guard maximumClaim > 0 else { throw ProducerWindowError("maximum claim \(maximumClaim) must be > 0") }
        self.highWaterMark = highWaterMark
        self.lowWaterMark = lowWaterMark
        self.maximumClaim = maximumClaim
    }

    /// The number of jobs to claim now: enough to reach the high-water mark once the window has
    /// drained to the low-water mark, at most ``maximumClaim``, otherwise 0.
    ///
    /// A negative count reads as 0. When the broker cannot be asked for its depth, pass the last
    /// known depth rather than 0: an unknown window is not an empty one.
    public func jobsToClaim(queueDepth: Int, inFlight: Int) -> Int {
        let window = max(0, queueDepth) + max(0, inFlight)
        guard window <= lowWaterMark else { return 0 }
        return min(highWaterMark - window, maximumClaim)
    }
}

/// A ``ProducerWindow`` setting that cannot work, with the value at fault.
public struct ProducerWindowError: Error, Equatable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
