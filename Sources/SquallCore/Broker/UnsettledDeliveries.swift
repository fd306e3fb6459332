/// The deliveries of one consuming channel that are not settled yet, so that acks asked for together
/// which settle the oldest open deliveries go to the broker as one `multiple` ack instead of one frame each.
///
/// A quorum queue turns every ack frame into a command of its Raft log, so a Consumer acking one job at
/// a time costs the broker a log entry per job. The connection thread gathers the acks of one pass over
/// its commands; when they include the channel's oldest open delivery, every ack that continues that
/// run becomes one frame. A `multiple` ack never covers a delivery nobody asked to ack: one still being
/// processed, or one settled otherwise (nack, reject) stays out of it. Acks that cannot join the run go
/// alone, as before.
///
/// Delivery tags on a channel start at 1 and grow by one per delivery (AMQP 0-9-1), so the open ones
/// are those from ``oldestOpen`` to the newest delivered, less those settled out of order.
struct UnsettledDeliveries: Sendable {
    /// An ack frame to send: `tag` alone, or with `multiple` every open delivery up to it.
    struct AckFrame: Sendable, Equatable {
        var tag: UInt64
        var multiple: Bool
    }

    /// Every delivery below this tag is settled.
    private(set) var oldestOpen: UInt64 = 1
    private var newest: UInt64 = 0
    /// Settled while an older delivery was still open.
    private var settledOutOfOrder: Set<UInt64> = []

    /// How many deliveries are open (delivered, not settled).
    var openCount: Int { newest >= oldestOpen ? Int(newest - oldestOpen + 1) - settledOutOfOrder.count : 0 }

    mutating func delivered(_ tag: UInt64) {
        newest = max(newest, tag)
    }

    /// The frames that ack `tags` (asked for together, each alone), which are settled from now on: one
    /// (`multiple` when it covers more than one) for the run that starts at the oldest open delivery,
    /// then one per ack outside it, in tag order.
    mutating func ackFrames(for tags: some Sequence<UInt64>) -> [AckFrame] {
        var asked = Set(tags)
        var frames: [AckFrame] = []
        var run = 0
        // The frame names the run's last asked tag, never one settled before: the broker refuses an ack
        // of a tag it no longer holds (406, and the channel closes).
        var lastAsked: UInt64 = 0
        while oldestOpen <= newest {
            if settledOutOfOrder.remove(oldestOpen) != nil {
                oldestOpen += 1
            } else if asked.remove(oldestOpen) != nil {
                run += 1
                lastAsked = oldestOpen
                oldestOpen += 1
            } else {
                break
            }
        }
        if run > 0 { frames.append(AckFrame(tag: lastAsked, multiple: run > 1)) }
        for tag in asked.sorted() {
            frames.append(AckFrame(tag: tag, multiple: false))
            if tag > oldestOpen && tag <= newest { settledOutOfOrder.insert(tag) }
        }
        return frames
    }

    /// A settlement sent as the caller asked (a nack, a reject, an ack with `multiple`): what it settles
    /// is no longer open. Acks asked for before it must have their frames first, so the frames keep their order.
    mutating func settledDirectly(_ tag: UInt64, multiple: Bool) {
        if multiple {
            guard tag >= oldestOpen else { return }
            oldestOpen = tag + 1
            settledOutOfOrder = settledOutOfOrder.filter { $0 > tag }
        } else if tag == oldestOpen {
            oldestOpen += 1
        } else if tag > oldestOpen && tag <= newest {
            settledOutOfOrder.insert(tag)
            return
        } else {
            return
        }
        while settledOutOfOrder.remove(oldestOpen) != nil { oldestOpen += 1 }
    }
}
