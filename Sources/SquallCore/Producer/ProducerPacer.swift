/// How long the Producer waits before it looks at the queue depth again while the window is full:
/// as long as the jobs above the low-water mark last at the rate Consumers are taking them, between
/// ``shortest`` and ``longest`` (`--poll-interval`).
///
/// Why not a fixed pause: Consumers that take 2,000 jobs a second drain 500 in 250 ms, the whole
/// span between the default marks, so with a fixed 250 ms pause the queue was empty at about a
/// third of the looks and the Consumers waited on the Producer (docs/benchmarks.md, 2026-12-05 17:17).
/// A look is one passive `queue.declare`, cheap for the broker, so looking sooner costs little;
/// an idle swarm is still asked only every ``longest``.
///
/// A value type with the time passed in, so the rule is tested without waiting. The drain rate is
/// measured between two looks at least ``shortestSample`` apart, counting the jobs published in
/// between: the look right after a publish comes within milliseconds and would measure noise.
public struct ProducerPacer: Sendable {
    /// The longest pause: the whole wait when Consumers take nothing (`--poll-interval`).
    public let longest: Duration
    /// The shortest pause, so a fast drain never turns the loop into a busy one.
    public let shortest: Duration
    /// The shortest span a drain rate is measured over.
    public let shortestSample: Duration

    /// The jobs the queue held at the last look that started a measurement, plus those published since.
    private var reference: (depth: Int, at: ContinuousClock.Instant)?
    /// Jobs a second the Consumers took between the last two measured looks (0 before the first).
    public private(set) var drainPerSecond: Double = 0

    public init(
        longest: Duration, shortest: Duration = .milliseconds(10), shortestSample: Duration = .milliseconds(20)
    ) {
        self.longest = longest
        self.shortest = min(shortest, longest)
        self.shortestSample = shortestSample
    }

    /// Records a look at the queue: `depth` messages ready at `now`.
    public mutating func looked(depth: Int, at now: ContinuousClock.Instant) {
        guard let reference else {
            self.reference = (max(0, depth), now)
            return
        }
        let elapsed = now - reference.at
        guard elapsed >= shortestSample else { return }
        let drained = max(0, reference.depth - max(0, depth))
        drainPerSecond = Double(drained) / elapsed.inSeconds
        self.reference = (max(0, depth), now)
    }

    /// Records `count` jobs published into the queue since the last look.
    public mutating func published(_ count: Int) {
        guard count > 0, let reference else { return }
        self.reference = (reference.depth + count, reference.at)
    }

    /// How long to wait with `depth` messages ready: until the queue is expected down to
    /// `lowWaterMark` at the measured rate, between ``shortest`` and ``longest``.
    public func pause(depth: Int, lowWaterMark: Int) -> Duration {
        guard drainPerSecond > 0 else { return longest }
        let above = Double(max(0, depth - lowWaterMark))
        let expected = Duration.seconds(above / drainPerSecond)
        return min(longest, max(shortest, expected))
    }
}

extension Duration {
    fileprivate var inSeconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}
