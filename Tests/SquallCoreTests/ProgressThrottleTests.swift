import Testing

@testable import SquallCore

@Suite("Progress throttle")
struct ProgressThrottleTests {
    let t0 = ContinuousClock.now

    @Test("the first packet is starting")
    func firstIsStarting() {
        var throttle = ProgressThrottle()
        let r1 = throttle.start(at: t0)
        #expect(r1 == .starting)
    }

    @Test("with an unknown total, a packet goes every 2 s and not between")
    func everyTwoSeconds() {
        var throttle = ProgressThrottle()
        _ = throttle.start(at: t0)
        let r2 = throttle.shouldSend(bytesDone: 1_000_000, bytesTotal: nil, at: t0 + .seconds(1))
        #expect(!r2)
        let r3 = throttle.shouldSend(bytesDone: 9_000_000, bytesTotal: nil, at: t0 + .milliseconds(1999))
        #expect(!r3)
        let r4 = throttle.shouldSend(bytesDone: 9_500_000, bytesTotal: nil, at: t0 + .seconds(2))
        #expect(r4)
        let r5 = throttle.shouldSend(bytesDone: 9_600_000, bytesTotal: nil, at: t0 + .seconds(3))
        #expect(!r5)
        let r6 = throttle.shouldSend(bytesDone: 9_700_000, bytesTotal: nil, at: t0 + .seconds(4))
        #expect(r6)
    }

    @Test("with a known total, 5 % of it earns a packet before 2 s have passed")
    func fivePercent() {
        var throttle = ProgressThrottle()
        _ = throttle.start(at: t0)
        let r7 = throttle.shouldSend(bytesDone: 4, bytesTotal: 100, at: t0 + .milliseconds(500))
        #expect(!r7)
        let r8 = throttle.shouldSend(bytesDone: 5, bytesTotal: 100, at: t0 + .milliseconds(600))
        #expect(r8)
        // 5 % counts from the last packet sent, not from zero.
        let r9 = throttle.shouldSend(bytesDone: 9, bytesTotal: 100, at: t0 + .milliseconds(1000))
        #expect(!r9)
        let r10 = throttle.shouldSend(bytesDone: 10, bytesTotal: 100, at: t0 + .milliseconds(1100))
        #expect(r10)
    }

    @Test("a fast object still waits the minimum spacing between packets")
    func minimumSpacing() {
        var throttle = ProgressThrottle()
        _ = throttle.start(at: t0)
        let r11 = throttle.shouldSend(bytesDone: 50, bytesTotal: 100, at: t0 + .milliseconds(10))
        #expect(!r11)
        let r12 = throttle.shouldSend(bytesDone: 90, bytesTotal: 100, at: t0 + .milliseconds(249))
        #expect(!r12)
        let r13 = throttle.shouldSend(bytesDone: 90, bytesTotal: 100, at: t0 + .milliseconds(250))
        #expect(r13)
    }

    @Test("a 100-step transfer over 10 s sends at most one packet per 5 % or per 2 s")
    func boundedCount() {
        var throttle = ProgressThrottle()
        _ = throttle.start(at: t0)
        var sent = 0
        for step in 1...100 {
            if throttle.shouldSend(bytesDone: Int64(step), bytesTotal: 100, at: t0 + .milliseconds(step * 100)) {
                sent += 1
            }
        }
        #expect(sent == 20)
    }
}
