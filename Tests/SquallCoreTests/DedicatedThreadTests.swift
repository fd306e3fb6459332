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

    @Test("blocked dedicated threads leave the cooperative pool free to run")
    func blockingDoesNotStarvePool() async throws {
        // More blocked threads than the pool has cores, each waiting for a signal that only pool work
        // sends. Were the blocking calls on the pool, the signalling task could never run and every
        // wait would time out: the proof needs no clock measurement.
        let count = max(8, ProcessInfo.processInfo.activeProcessorCount * 2)
        let threads = (0..<count).map { DedicatedThread(name: "test-blocking-\($0)") }
        defer { threads.forEach { $0.shutdown() } }
        let signal = DispatchSemaphore(value: 0)
        async let outcomes = withThrowingTaskGroup(of: Bool.self) { group in
            for thread in threads {
                group.addTask { try await thread.run { signal.wait(timeout: .now() + 30) == .success } }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        await Task.detached { for _ in 0..<count { signal.signal() } }.value
        #expect(try await outcomes == Array(repeating: true, count: count))
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
