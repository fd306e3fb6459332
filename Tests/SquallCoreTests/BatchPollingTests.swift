import Synchronization
import Testing

@testable import SquallCore

@Suite("squallctl wait and watch polling")
struct BatchPollingTests {
    /// Hands out the given snapshots (or errors) in order, repeating the last.
    final class Script: Sendable {
        private let steps: Mutex<[Result<BatchSnapshot, TestError>]>
        private let polls = Mutex(0)
        init(_ steps: [Result<BatchSnapshot, TestError>]) { self.steps = Mutex(steps) }
        func next() throws -> BatchSnapshot {
            polls.withLock { $0 += 1 }
            return try steps.withLock { $0.count > 1 ? $0.removeFirst() : $0[0] }.get()
        }
        var pollCount: Int { polls.withLock { $0 } }
    }

    struct TestError: Error {}

    static let running = BatchSnapshot(batch: "b", running: 2, done: 1)
    static let allDone = BatchSnapshot(batch: "b", done: 2, skipped: 1)
    static let someFailed = BatchSnapshot(batch: "b", done: 2, failed: 1)

    @Test("wait polls until the batch settles and shows every snapshot")
    func untilSettled() async throws {
        let script = Script([.success(Self.running), .success(Self.running), .success(Self.allDone)])
        let shown = Mutex(0)
        let verdict = try await BatchPolling.wait(every: .milliseconds(10), timeout: .seconds(10)) {
            try script.next()
        } show: { _ in
            shown.withLock { $0 += 1 }
        }
        #expect(verdict == .succeeded)
        #expect(script.pollCount == 3)
        #expect(shown.withLock { $0 } == 3)
    }

    @Test("a batch complete with failures ends the wait with exit 1")
    func failures() async throws {
        let script = Script([.success(Self.running), .success(Self.someFailed)])
        let verdict = try await BatchPolling.wait(every: .milliseconds(10), timeout: nil) { try script.next() }
        #expect(verdict.exitCode == 1)
    }

    @Test("the timeout ends the wait with exit 2, on time")
    func timeout() async throws {
        let script = Script([.success(Self.running)])
        let started = ContinuousClock.now
        let verdict = try await BatchPolling.wait(every: .milliseconds(40), timeout: .milliseconds(100)) {
            try script.next()
        }
        let waited = ContinuousClock.now - started
        #expect(verdict.exitCode == 2)
        #expect(waited >= .milliseconds(100))
        // Stopped by the timeout, not polling on: at most one poll per interval within it, plus the first.
        // (Counted, not timed: a loaded machine stretches wall time, never the number of polls.)
        #expect(script.pollCount <= 4)
    }

    @Test("a failed poll is reported and retried, not taken for the batch's failure")
    func pollFailureRetried() async throws {
        let script = Script([.failure(TestError()), .failure(TestError()), .success(Self.allDone)])
        let failures = Mutex(0)
        let verdict = try await BatchPolling.wait(every: .milliseconds(10), timeout: .seconds(10)) {
            try script.next()
        } pollFailed: { _ in
            failures.withLock { $0 += 1 }
        }
        #expect(verdict == .succeeded)
        #expect(failures.withLock { $0 } == 2)
    }
}
