import Foundation
import Testing

@testable import SquallCore

@Suite("Held progress packets")
struct HeldPacketsTests {
    let t0 = ContinuousClock.now

    /// A message whose body names the job and a sequence number, to tell which were taken.
    func message(_ text: String) -> OutgoingMessage {
        OutgoingMessage(body: Data(text.utf8), destination: .queue("progress"))
    }

    func bodies(_ messages: [OutgoingMessage]) -> [String] {
        messages.map { String(decoding: $0.body, as: UTF8.self) }
    }

    @Test("a packet is held for the hold, then taken; one added later waits its own turn")
    func heldThenDue() {
        var held = HeldPackets<OutgoingMessage>(hold: .seconds(1))
        held.add(message("1a"), jobID: 1, attempt: 1, at: t0)
        held.add(message("2a"), jobID: 2, attempt: 1, at: t0 + .milliseconds(600))
        #expect(held.nextDue == t0 + .seconds(1))
        #expect(held.takeDue(at: t0 + .milliseconds(999)).isEmpty)
        #expect(bodies(held.takeDue(at: t0 + .seconds(1))) == ["1a"])
        #expect(held.nextDue == t0 + .milliseconds(1600))
        #expect(held.takeDue(at: t0 + .milliseconds(1599)).isEmpty)
        #expect(bodies(held.takeDue(at: t0 + .seconds(3))) == ["2a"])
        #expect(held.isEmpty && held.nextDue == nil)
    }

    @Test("a result withdraws its attempt's held packets, and no other job's or attempt's")
    func withdrawOneAttempt() {
        var held = HeldPackets<OutgoingMessage>(hold: .seconds(1))
        held.add(message("1a"), jobID: 1, attempt: 1, at: t0)
        held.add(message("2a"), jobID: 2, attempt: 1, at: t0)
        held.add(message("1b"), jobID: 1, attempt: 1, at: t0 + .milliseconds(10))
        held.add(message("1-attempt2"), jobID: 1, attempt: 2, at: t0 + .milliseconds(20))
        #expect(held.withdraw(jobID: 1, attempt: 1) == 2)
        #expect(held.withdraw(jobID: 3, attempt: 1) == 0)
        #expect(bodies(held.takeDue(at: t0 + .seconds(2))) == ["2a", "1-attempt2"])
    }

    @Test("packets already taken are not withdrawn: only what is still held")
    func withdrawAfterTaken() {
        var held = HeldPackets<OutgoingMessage>(hold: .milliseconds(100))
        held.add(message("1a"), jobID: 1, attempt: 1, at: t0)
        #expect(bodies(held.takeDue(at: t0 + .milliseconds(100))) == ["1a"])
        held.add(message("1b"), jobID: 1, attempt: 1, at: t0 + .milliseconds(150))
        #expect(held.withdraw(jobID: 1, attempt: 1) == 1)
        #expect(held.isEmpty)
    }

    @Test("at shutdown everything held is taken, due or not, in order")
    func takeAllAtShutdown() {
        var held = HeldPackets<OutgoingMessage>(hold: .seconds(1))
        held.add(message("1a"), jobID: 1, attempt: 1, at: t0)
        held.add(message("2a"), jobID: 2, attempt: 1, at: t0 + .milliseconds(900))
        #expect(bodies(held.takeAll()) == ["1a", "2a"])
        #expect(held.isEmpty)
    }
}
