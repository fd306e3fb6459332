/// Decides when a Consumer sends a progress packet for one transfer, so packets stay few however fast bytes move.
///
/// The first packet is always `starting`; then one is sent when ``interval`` has passed since the
/// last, or when the transfer has advanced by ``step`` of a known total, whichever comes first —
/// but never sooner than ``minimumSpacing`` after the last, so a fast small object costs a handful
/// of packets, not one per 5 %. There is no final packet: the result says the rest. Time is passed
/// in (a monotonic instant), so the rule is tested without waiting. (The Consumer's outbox then
/// holds each packet for a second, so a job that ends sooner sends none: `PacketOutbox`.)
public struct ProgressThrottle: Sendable {
    public var interval: Duration
    /// The fraction of a known total (0.05 = 5 %) that earns a packet before ``interval`` has passed.
    public var step: Double
    public var minimumSpacing: Duration

    private var lastSent: ContinuousClock.Instant?
    private var lastSentBytes: Int64 = 0

    public init(
        interval: Duration = .seconds(2), step: Double = 0.05, minimumSpacing: Duration = .milliseconds(250)
    ) {
        self.interval = interval
        self.step = step
        self.minimumSpacing = minimumSpacing
    }

    /// The phase of the first packet, sent at once when the job starts.
    public mutating func start(at now: ContinuousClock.Instant) -> ProgressPacket.Phase {
        lastSent = now
        lastSentBytes = 0
        return .starting
    }

    /// Whether to send a `transferring` packet for `bytesDone` now; when it says yes, it counts as sent.
    public mutating func shouldSend(bytesDone: Int64, bytesTotal: Int64?, at now: ContinuousClock.Instant) -> Bool {
        guard let last = lastSent else {
            lastSent = now
            lastSentBytes = bytesDone
            return true
        }
        let elapsed = now - last
        var due = elapsed >= interval
        if !due, elapsed >= minimumSpacing, let bytesTotal, bytesTotal > 0 {
            due = Double(bytesDone - lastSentBytes) >= step * Double(bytesTotal)
        }
        if due {
            lastSent = now
            lastSentBytes = bytesDone
        }
        return due
    }
}
