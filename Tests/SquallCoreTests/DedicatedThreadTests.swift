import Foundation
import Testing

@testable import SquallCore

/// An actor pinned to a dedicated thread, as the C-library wrappers are.
private actor PinnedCounter {
    let thread: DedicatedThread
    private(set) var count = 0

    init(thread: DedicatedThread) {
        self.thread = thread
    }

    nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }

    func incrementOnOwnThread() -> Bool {
        count += 1
        return thread.isCurrent
    }
}

@Suite("Dedicated threads")
struct DedicatedThreadTests {
    @Test("an actor's methods run on its dedicated thread")
    func actorRunsOnThread() async {
        let thread = DedicatedThread(name: "test-pinned")
        defer { thread.shutdown() }
        let counter = PinnedCounter(thread: thread)
        for _ in 0..<100 {
            #expect(await counter.incrementOnOwnThread())
        }
        #expect(await counter.count == 100)
        #expect(!thread.isCurrent)
    }

    @Test("a blocking call on the dedicated thread leaves the cooperative pool free")
    func blockingDoesNotStarvePool() async throws {
        let threads = (0..<4).map { DedicatedThread(name: "test-blocking-\($0)") }
        defer { threads.forEach { $0.shutdown() } }
        let clock = ContinuousClock()
        let start = clock.now
        // Four threads block for 500 ms each, more than the pool has cores; meanwhile pool work still runs.
        async let blockedUntil: ContinuousClock.Instant = withThrowingTaskGroup(of: Void.self) { group in
            for thread in threads {
                group.addTask { _ = try await thread.run { usleep(500_000) } }
            }
            try await group.waitForAll()
            return clock.now
        }
        try await Task.sleep(for: .milliseconds(50))
        let sum = await Task { (0..<1000).reduce(0, +) }.value
        let poolDone = clock.now
        #expect(sum == 499_500)
        #expect(poolDone - start < .milliseconds(400), "pool work waited for the blocked threads")
        let blockedDone = try await blockedUntil
        #expect(blockedDone - start >= .milliseconds(500))
        #expect(poolDone < blockedDone)
    }

    @Test("run returns the closure's value and rethrows its error")
    func runBridgesResults() async throws {
        struct Boom: Error {}
        let thread = DedicatedThread(name: "test-run")
        defer { thread.shutdown() }
        #expect(try await thread.run { thread.isCurrent })
        await #expect(throws: Boom.self) { try await thread.run { throw Boom() } }
    }
}
