/// Publisher confirms on one channel, as a value: which publish each basic.ack, basic.nack and
/// basic.return settles.
///
/// The broker numbers publishes on a confirm channel 1, 2, 3…; `multiple` acks settle every
/// pending number up to the tag. A mandatory publish that is unroutable comes back as
/// basic.return *before* its ack; the return names the publish by the message id the publisher set
/// (its sequence number), so the ack that follows settles it as returned, not confirmed.
struct ConfirmTracker<Token> {
    enum Outcome: Equatable {
        case confirmed
        case nacked
        case returned(replyCode: Int, replyText: String)
    }

    private struct Entry {
        var token: Token
        var returned: (replyCode: Int, replyText: String)?
    }

    /// The number the next publish will get.
    private(set) var nextSequence: UInt64 = 1
    private var pending: [UInt64: Entry] = [:]
    /// Sequence numbers in publish order; entries already settled are skipped lazily.
    private var order: [UInt64] = []
    private var orderStart = 0

    var pendingCount: Int { pending.count }

    /// Records a publish; returns its sequence number.
    mutating func published(_ token: Token) -> UInt64 {
        let sequence = nextSequence
        nextSequence += 1
        pending[sequence] = Entry(token: token)
        order.append(sequence)
        return sequence
    }

    /// A basic.return for the publish numbered `sequence` (from its message id); its ack follows.
    mutating func returned(sequence: UInt64, replyCode: Int, replyText: String) {
        pending[sequence]?.returned = (replyCode, replyText)
    }

    mutating func acked(_ tag: UInt64, multiple: Bool) -> [(Token, Outcome)] {
        settle(tag, multiple: multiple) { entry in
            entry.returned.map { .returned(replyCode: $0.replyCode, replyText: $0.replyText) } ?? .confirmed
        }
    }

    mutating func nacked(_ tag: UInt64, multiple: Bool) -> [(Token, Outcome)] {
        settle(tag, multiple: multiple) { _ in .nacked }
    }

    /// Every pending publish, in order, for failing them when the channel or connection dies;
    /// numbering starts again at 1 (a new channel).
    mutating func reset() -> [Token] {
        let tokens = order[orderStart...].compactMap { pending[$0]?.token }
        pending = [:]
        order = []
        orderStart = 0
        nextSequence = 1
        return tokens
    }

    private mutating func settle(
        _ tag: UInt64, multiple: Bool, outcome: (Entry) -> Outcome
    ) -> [(Token, Outcome)] {
        var settled: [(Token, Outcome)] = []
        if multiple {
            while orderStart < order.count, order[orderStart] <= tag {
                if let entry = pending.removeValue(forKey: order[orderStart]) {
                    settled.append((entry.token, outcome(entry)))
                }
                orderStart += 1
            }
        } else if let entry = pending.removeValue(forKey: tag) {
            settled.append((entry.token, outcome(entry)))
        }
        // Drop the settled prefix now and then so the order array does not grow forever.
        while orderStart < order.count, pending[order[orderStart]] == nil { orderStart += 1 }
        if orderStart > 4096, orderStart * 2 > order.count {
            order.removeFirst(orderStart)
            orderStart = 0
        }
        return settled
    }
}
