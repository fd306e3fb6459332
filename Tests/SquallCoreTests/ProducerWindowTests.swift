import Testing

@testable import SquallCore

@Suite("Producer window")
struct ProducerWindowTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var depth: Int
        var inFlight: Int
        var claim: Int
        var why: String
        var testDescription: String { "depth \(depth), in flight \(inFlight) → claim \(claim): \(why)" }
    }

    // high 1000, low 500, at most 300 per claim
    static let table: [Case] = [
        Case(depth: 0, inFlight: 0, claim: 300, why: "an empty queue is topped up, one bounded claim at a time"),
        Case(depth: 800, inFlight: 0, claim: 0, why: "above the low-water mark the Producer waits"),
        Case(depth: 501, inFlight: 0, claim: 0, why: "just above the low-water mark still waits"),
        Case(depth: 500, inFlight: 0, claim: 300, why: "at the low-water mark it tops up (capped)"),
        Case(depth: 400, inFlight: 100, claim: 300, why: "jobs being published count toward the window"),
        Case(depth: 300, inFlight: 300, claim: 0, why: "a window above low through in-flight jobs waits"),
        Case(depth: 900, inFlight: 900, claim: 0, why: "an overfull window never claims (never negative)"),
        Case(depth: -1, inFlight: 0, claim: 300, why: "a negative count reads as 0"),
    ]

    @Test("claims top the window up to the high-water mark, never past it", arguments: table)
    func claims(_ row: Case) throws {
        let window = try ProducerWindow(highWaterMark: 1000, lowWaterMark: 500, maximumClaim: 300)
        #expect(window.jobsToClaim(queueDepth: row.depth, inFlight: row.inFlight) == row.claim)
    }

    @Test("without a claim cap, one claim fills exactly to the high-water mark")
    func fillsExactly() throws {
        let window = try ProducerWindow(highWaterMark: 1000, lowWaterMark: 500, maximumClaim: 10_000)
        #expect(window.jobsToClaim(queueDepth: 120, inFlight: 30) == 850)
        #expect(window.jobsToClaim(queueDepth: 120, inFlight: 30) + 150 == window.highWaterMark)
    }

    @Test("repeated rounds converge on the high-water mark and stop")
    func converges() throws {
        let window = try ProducerWindow(highWaterMark: 1000, lowWaterMark: 500, maximumClaim: 300)
        var depth = 0
        var rounds = 0
        while case let claim = window.jobsToClaim(queueDepth: depth, inFlight: 0), claim > 0 {
            depth += claim
            rounds += 1
        }
        #expect(depth == 600)  // 300 + 300: above low, so it waits until consumers drain it
        #expect(rounds == 2)
        #expect(depth <= window.highWaterMark)
    }

    @Test("settings that cannot work are refused, naming the value")
    func invalidSettings() {
        #expect(throws: ProducerWindowError.self) { try ProducerWindow(highWaterMark: 0) }
        #expect(throws: ProducerWindowError.self) { try ProducerWindow(highWaterMark: 100, lowWaterMark: 100) }
        #expect(throws: ProducerWindowError.self) { try ProducerWindow(highWaterMark: 100, lowWaterMark: -1) }
        #expect(throws: ProducerWindowError.self) {
            try ProducerWindow(highWaterMark: 100, lowWaterMark: 10, maximumClaim: 0)
        }
        do {
            _ = try ProducerWindow(highWaterMark: 100, lowWaterMark: 200)
        } catch {
            #expect(error.description.contains("low-water mark 200"))
        }
    }
}
