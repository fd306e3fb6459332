import Testing

@testable import SquallCore

@Suite("Packet batcher")
struct PacketBatcherTests {
    /// A clock the test moves by hand.
    struct FakeClock {
        var now = ContinuousClock.now
        mutating func advance(_ duration: Duration) { now = now + duration }
    }

    func items(_ action: PacketBatcher<Int>.Action) -> [Int]? {
        if case .flush(let items) = action { return items }
        return nil
    }

    @Test("a batch flushes as soon as it holds N items")
    func flushOnCount() {
        let clock = FakeClock()
        var batcher = PacketBatcher<Int>(maximumCount: 3, maximumDelay: .milliseconds(100))
        guard case .armTimer(let deadline) = batcher.append(1, at: clock.now) else {
            Issue.record("the first item should arm the timer")
            return
        }
        #expect(deadline == clock.now + .milliseconds(100))
        let r1 = batcher.append(2, at: clock.now)
        #expect(items(r1) == nil)
        let r2 = batcher.append(3, at: clock.now)
        #expect(items(r2) == [1, 2, 3])
        #expect(batcher.pending.isEmpty)
        #expect(batcher.deadline == nil)
    }

    @Test("a batch that does not fill flushes when T has passed")
    func flushOnTime() {
        var clock = FakeClock()
        var batcher = PacketBatcher<Int>(maximumCount: 100, maximumDelay: .milliseconds(50))
        _ = batcher.append(1, at: clock.now)
        clock.advance(.milliseconds(20))
        _ = batcher.append(2, at: clock.now)
        let r3 = batcher.timerFired(at: clock.now)
        #expect(items(r3) == nil, "not due yet")
        clock.advance(.milliseconds(30))
        let r4 = batcher.timerFired(at: clock.now)
        #expect(items(r4) == [1, 2])
    }

    @Test("the deadline is the first item's arrival plus T, not the latest's")
    func deadlineFromFirst() {
        var clock = FakeClock()
        let start = clock.now
        var batcher = PacketBatcher<Int>(maximumCount: 100, maximumDelay: .milliseconds(50))
        _ = batcher.append(1, at: clock.now)
        clock.advance(.milliseconds(40))
        guard case .none = batcher.append(2, at: clock.now) else {
            Issue.record("a second item must not re-arm the timer")
            return
        }
        #expect(batcher.deadline == start + .milliseconds(50))
    }

    @Test("a timer left over from a batch flushed by size flushes nothing")
    func staleTimer() {
        var clock = FakeClock()
        var batcher = PacketBatcher<Int>(maximumCount: 2, maximumDelay: .milliseconds(50))
        _ = batcher.append(1, at: clock.now)
        _ = batcher.append(2, at: clock.now)  // flushed by size
        clock.advance(.milliseconds(10))
        _ = batcher.append(3, at: clock.now)  // new batch, due at +60 ms
        clock.advance(.milliseconds(40))  // the first batch's timer fires at +50 ms
        let r5 = batcher.timerFired(at: clock.now)
        #expect(items(r5) == nil)
        clock.advance(.milliseconds(10))
        let r6 = batcher.timerFired(at: clock.now)
        #expect(items(r6) == [3])
    }

    @Test("a timer firing on an empty batcher flushes nothing")
    func emptyTimer() {
        var batcher = PacketBatcher<Int>(maximumCount: 2, maximumDelay: .milliseconds(50))
        let r7 = batcher.timerFired(at: ContinuousClock.now + .seconds(1))
        #expect(items(r7) == nil)
    }

    @Test("drain hands over what is pending, for shutdown")
    func drain() {
        var batcher = PacketBatcher<Int>(maximumCount: 10, maximumDelay: .seconds(1))
        _ = batcher.append(7, at: .now)
        _ = batcher.append(8, at: .now)
        let r8 = batcher.drain()
        #expect(r8 == [7, 8])
        let r9 = batcher.drain()
        #expect(r9 == [])
        #expect(batcher.deadline == nil)
    }

    func packet(job: Int64, attempt: Int32, ts: Int64, bytes: Int64) -> ProgressPacket {
        ProgressPacket(
            jobID: job, attempt: attempt, node: "n1", timestamp: Timestamp(milliseconds: ts), bytesDone: bytes,
            bytesTotal: 100, bytesPerSecond: 0, phase: .transferring)
    }

    @Test("progress is deduplicated to the newest packet per job and attempt")
    func dedupe() {
        let packets = [
            packet(job: 1, attempt: 1, ts: 100, bytes: 10),
            packet(job: 2, attempt: 1, ts: 100, bytes: 5),
            packet(job: 1, attempt: 1, ts: 300, bytes: 30),
            packet(job: 1, attempt: 1, ts: 200, bytes: 20),  // older, arrived later: loses
            packet(job: 1, attempt: 2, ts: 50, bytes: 1),  // another attempt is another key
            packet(job: 2, attempt: 1, ts: 100, bytes: 6),  // same timestamp: the later one wins
        ]
        let newest = ProgressPacket.newestPerAttempt(packets)
        #expect(newest.map(\.bytesDone) == [30, 6, 1])
        #expect(newest.map(\.jobID) == [1, 2, 1])
        #expect(newest.map(\.attempt) == [1, 1, 2])
    }
}
