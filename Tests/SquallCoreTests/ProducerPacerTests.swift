import Testing

@testable import SquallCore

@Suite("Producer pacer")
struct ProducerPacerTests {
    let start = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    @Test("before any drain is measured it waits the whole poll interval")
    func unmeasuredWaitsLongest() {
        var pacer = ProducerPacer(longest: .milliseconds(250))
        #expect(pacer.pause(depth: 900, lowWaterMark: 500) == .milliseconds(250))
        pacer.looked(depth: 900, at: at(0))
        #expect(pacer.drainPerSecond == 0)
        #expect(pacer.pause(depth: 900, lowWaterMark: 500) == .milliseconds(250))
    }

    @Test("it waits as long as the jobs above the low-water mark last at the measured rate")
    func waitsForTheDrain() {
        var pacer = ProducerPacer(longest: .milliseconds(250))
        pacer.looked(depth: 1000, at: at(0))
        pacer.looked(depth: 800, at: at(100))  // 200 jobs in 100 ms: 2,000 a second
        #expect(pacer.drainPerSecond == 2000)
        // 300 above the mark at 2,000 a second: 150 ms, not the fixed 250 that let the queue run dry.
        #expect(pacer.pause(depth: 800, lowWaterMark: 500) == .milliseconds(150))
    }

    @Test("jobs published between two looks count as drained only once they leave the queue")
    func publishedJobsAreCounted() {
        var pacer = ProducerPacer(longest: .milliseconds(250))
        pacer.looked(depth: 400, at: at(0))
        pacer.published(500)  // the queue held 900 right after
        pacer.looked(depth: 700, at: at(100))
        #expect(pacer.drainPerSecond == 2000)
    }

    @Test("a look too soon after the last measures nothing and keeps the reference")
    func shortSpansAreNotSamples() {
        var pacer = ProducerPacer(longest: .milliseconds(250))
        pacer.looked(depth: 1000, at: at(0))
        pacer.looked(depth: 1000, at: at(5))  // the look right after a publish
        #expect(pacer.drainPerSecond == 0)
        pacer.looked(depth: 600, at: at(200))  // measured from the look at 0
        #expect(pacer.drainPerSecond == 2000)
    }

    @Test("the pause stays between the shortest and the longest")
    func bounded() {
        var fast = ProducerPacer(longest: .milliseconds(250), shortest: .milliseconds(10))
        fast.looked(depth: 100_000, at: at(0))
        fast.looked(depth: 0, at: at(100))  // a million a second
        #expect(fast.pause(depth: 501, lowWaterMark: 500) == .milliseconds(10))

        var slow = ProducerPacer(longest: .milliseconds(250))
        slow.looked(depth: 1000, at: at(0))
        slow.looked(depth: 990, at: at(1000))  // 10 a second
        #expect(slow.pause(depth: 990, lowWaterMark: 500) == .milliseconds(250))
    }

    @Test("when the Consumers stop taking jobs the pacer falls back to the longest wait")
    func stalledDrain() {
        var pacer = ProducerPacer(longest: .milliseconds(250))
        pacer.looked(depth: 1000, at: at(0))
        pacer.looked(depth: 600, at: at(100))
        #expect(pacer.pause(depth: 600, lowWaterMark: 500) == .milliseconds(25))
        pacer.looked(depth: 600, at: at(400))  // nothing taken for 300 ms
        #expect(pacer.drainPerSecond == 0)
        #expect(pacer.pause(depth: 600, lowWaterMark: 500) == .milliseconds(250))
    }

    @Test("negative depths read as 0, and a queue that grew (another Producer) measures no drain")
    func oddDepths() {
        var pacer = ProducerPacer(longest: .milliseconds(250))
        pacer.looked(depth: -5, at: at(0))
        pacer.looked(depth: 800, at: at(100))
        #expect(pacer.drainPerSecond == 0)
        #expect(pacer.pause(depth: -1, lowWaterMark: 500) == .milliseconds(250))
    }
}
