import Foundation
import Logging
import Synchronization

/// Progress packets waiting to be published, each held for a while so that one its job's result
/// makes moot by then is never sent.
///
/// Why: a small object is fetched and stored in a few milliseconds, and its `starting` packet would
/// cost the broker a persistent message, the Observer a decode and the database an UPDATE with an
/// audit row, only to be overtaken by the result a moment later. Held for ``hold``, the packets of
/// a job that ends sooner are withdrawn when its result is published: such a job's row goes from
/// `queued` to its outcome in one step. A longer job's packets go out at most `hold` late (twice
/// that under load), which its lease (minutes, renewed by these packets) does not notice.
///
/// A value type with the time passed in, so the rule is tested without waiting; ``PacketOutbox``
/// runs it, holding packets unencoded (most are withdrawn, and encoding is most of their cost).
struct HeldPackets<Packet: Sendable>: Sendable {
    struct Entry: Sendable {
        var message: Packet
        var jobID: Int64
        var attempt: Int32
        var heldSince: ContinuousClock.Instant
    }

    let hold: Duration
    private var entries: [Entry] = []

    init(hold: Duration) {
        self.hold = hold
    }

    var isEmpty: Bool { entries.isEmpty }

    /// When the oldest packet is due, if any is held.
    var nextDue: ContinuousClock.Instant? { entries.first.map { $0.heldSince + hold } }

    mutating func add(_ message: Packet, jobID: Int64, attempt: Int32, at now: ContinuousClock.Instant) {
        entries.append(Entry(message: message, jobID: jobID, attempt: attempt, heldSince: now))
    }

    /// Drops the packets of one attempt at a job (its result is on its way); returns how many.
    @discardableResult
    mutating func withdraw(jobID: Int64, attempt: Int32) -> Int {
        let before = entries.count
        entries.removeAll { $0.jobID == jobID && $0.attempt == attempt }
        return before - entries.count
    }

    /// Takes the packets held for `hold` or longer at `now`, oldest first.
    mutating func takeDue(at now: ContinuousClock.Instant) -> [Packet] {
        // Entries are in the order they were added, so the due ones are a prefix.
        let due = entries.prefix { now - $0.heldSince >= hold }
        entries.removeFirst(due.count)
        return due.map(\.message)
    }

    /// Takes every packet, due or not (shutdown).
    mutating func takeAll() -> [Packet] {
        defer { entries.removeAll() }
        return entries.map(\.message)
    }
}

/// Progress packets on their way to `squall.progress`: held by ``HeldPackets``, then published in
/// batches by one task. A best-effort stream (a lost packet is superseded by the next, the lease
/// covers a silent job), so nothing waits for its confirm.
final class PacketOutbox: Sendable {
    private let broker: Broker
    private let queue: String
    private let logger: Logger
    private let held: Mutex<HeldPackets<ProgressPacket>>
    private let signal: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)

    init(broker: Broker, queue: String, hold: Duration, logger: Logger) {
        self.broker = broker
        self.queue = queue
        self.logger = logger
        held = Mutex(HeldPackets(hold: hold))
        signal = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    func send(_ packet: ProgressPacket) {
        let wasEmpty = held.withLock { held in
            defer { held.add(packet, jobID: packet.jobID, attempt: packet.attempt, at: .now) }
            return held.isEmpty
        }
        if wasEmpty { signal.continuation.yield() }
    }

    /// Forgets the packets still held for this attempt: its result says more, and is on its way.
    func withdraw(jobID: Int64, attempt: Int32) {
        held.withLock { _ = $0.withdraw(jobID: jobID, attempt: attempt) }
    }

    func run() async {
        for await _ in signal.stream {
            // Publish what is due, then sleep until the next packet is, until none is held.
            while let due = held.withLock({ $0.nextDue }) {
                do { try await Task.sleep(until: due, clock: .continuous) } catch { return }
                await publish(held.withLock { $0.takeDue(at: .now) })
            }
        }
    }

    /// Publishes every packet held now, due or not (at shutdown).
    func flush() async {
        await publish(held.withLock { $0.takeAll() })
    }

    private func publish(_ packets: [ProgressPacket]) async {
        guard !packets.isEmpty else { return }
        let batch = packets.map { OutgoingMessage(body: MessageCodec.encode($0), destination: .queue(queue)) }
        do {
            try await broker.publishBatch(batch)
        } catch {
            logger.debug("progress packets not all sent", metadata: ["error": "\(error)"])
        }
    }
}
