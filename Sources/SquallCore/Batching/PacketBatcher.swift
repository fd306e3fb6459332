/// Gathers deliveries into batches of up to ``maximumCount`` or ``maximumDelay``, whichever comes first.
///
/// The Observer and the Collector write to PostgreSQL in one transaction per batch and ack every
/// delivery of the batch after it commits: batches make that fast, the delay bounds how stale the
/// database can be when traffic is light. A value type: time is passed in, the actions say when to
/// arm the timer and when to flush, so it is tested with a fake clock.
public struct PacketBatcher<Item: Sendable>: Sendable {
    public enum Action: Sendable {
        /// Nothing to do yet.
        case none
        /// The first item of a new batch arrived: flush at `deadline` unless the batch fills first.
        case armTimer(deadline: ContinuousClock.Instant)
        /// Write these items now (in arrival order); the timer, if armed, no longer matters.
        case flush([Item])
    }

    public let maximumCount: Int
    public let maximumDelay: Duration
    public private(set) var pending: [Item] = []
    /// When the current batch must be flushed; nil when empty.
    public private(set) var deadline: ContinuousClock.Instant?

    public init(maximumCount: Int, maximumDelay: Duration) {
        precondition(maximumCount > 0, "a batch holds at least one item")
        self.maximumCount = maximumCount
        self.maximumDelay = maximumDelay
        pending.reserveCapacity(maximumCount)
    }

    public mutating func append(_ item: Item, at now: ContinuousClock.Instant) -> Action {
        pending.append(item)
        if pending.count >= maximumCount { return .flush(take()) }
        if deadline == nil {
            let due = now + maximumDelay
            deadline = due
            return .armTimer(deadline: due)
        }
        return .none
    }

    /// The timer armed by ``Action/armTimer(deadline:)`` fired; a stale timer (its batch was already
    /// flushed by size, or a newer batch is not due yet) flushes nothing.
    public mutating func timerFired(at now: ContinuousClock.Instant) -> Action {
        guard let deadline, now >= deadline, !pending.isEmpty else { return .none }
        return .flush(take())
    }

    /// Everything pending, for shutdown: the last batch is written before the service stops.
    public mutating func drain() -> [Item] {
        take()
    }

    private mutating func take() -> [Item] {
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        deadline = nil
        return batch
    }
}

extension ProgressPacket {
    /// The newest packet per (job, attempt) of `packets`, in the order of first appearance.
    ///
    /// Only the newest one can change a row (the version guard ignores older ones), so writing the
    /// others is wasted work. Newest means the latest timestamp; on a tie the later packet wins,
    /// as the broker delivered them in the order one node sent them.
    public static func newestPerAttempt(_ packets: [ProgressPacket]) -> [ProgressPacket] {
        struct Key: Hashable {
            var jobID: Int64
            var attempt: Int32
        }
        var newest: [Key: Int] = [:]
        var result: [ProgressPacket] = []
        result.reserveCapacity(packets.count)
        for packet in packets {
            let key = Key(jobID: packet.jobID, attempt: packet.attempt)
            if let index = newest[key] {
                if packet.timestamp >= result[index].timestamp { result[index] = packet }
            } else {
                newest[key] = result.count
                result.append(packet)
            }
        }
        return result
    }
}
