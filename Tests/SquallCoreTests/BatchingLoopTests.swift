import Synchronization
import Testing

@testable import SquallCore

@Suite("Batching loop")
struct BatchingLoopTests {
    /// Collects flushed batches with the time each came, relative to the start.
    final class Flushes: Sendable {
        let start = ContinuousClock.now
        private let batches = Mutex<[(items: [Int], at: Duration)]>([])
        func record(_ items: [Int]) { batches.withLock { $0.append((items, ContinuousClock.now - start)) } }
        var items: [[Int]] { batches.withLock { $0.map(\.items) } }
        var times: [Duration] { batches.withLock { $0.map(\.at) } }
    }

    @Test("a full batch is flushed at once, without waiting for its timer")
    func flushBySize() async throws {
        let (items, input) = AsyncStream.makeStream(of: Int.self)
        let flushes = Flushes()
        async let loop: Void = BatchingLoop.run(items, maximumCount: 3, maximumDelay: .seconds(60)) {
            flushes.record($0)
        }
        for value in 1...4 { input.yield(value) }
        #expect(try await eventually { flushes.items.count == 1 })
        #expect(flushes.items == [[1, 2, 3]])
        input.finish()
        try await loop
        #expect(flushes.items == [[1, 2, 3], [4]], "the last partial batch is written when the input ends")
    }

    @Test("a partial batch is flushed when its first item has waited the delay")
    func flushByTime() async throws {
        let (items, input) = AsyncStream.makeStream(of: Int.self)
        let flushes = Flushes()
        async let loop: Void = BatchingLoop.run(items, maximumCount: 100, maximumDelay: .milliseconds(100)) {
            flushes.record($0)
        }
        input.yield(1)
        input.yield(2)
        #expect(try await eventually { flushes.items.count == 1 })
        #expect(flushes.items == [[1, 2]])
        #expect(flushes.times.first.map { $0 >= .milliseconds(100) } == true)
        input.finish()
        try await loop
        #expect(flushes.items == [[1, 2]], "nothing left to write at the end")
    }

    @Test("an error from flush ends the loop with it")
    func flushErrorEnds() async throws {
        struct WriteFailed: Error {}
        let (items, input) = AsyncStream.makeStream(of: Int.self)
        input.yield(1)
        input.yield(2)
        await #expect(throws: WriteFailed.self) {
            try await BatchingLoop.run(items, maximumCount: 2, maximumDelay: .seconds(10)) { _ in
                throw WriteFailed()
            }
        }
    }

    @Test("an error from the sequence ends the loop with it, unflushed items left for redelivery")
    func sequenceErrorEnds() async throws {
        struct ConnectionLost: Error {}
        let (items, input) = AsyncThrowingStream.makeStream(of: Int.self)
        let flushes = Flushes()
        input.yield(1)
        input.finish(throwing: ConnectionLost())
        await #expect(throws: ConnectionLost.self) {
            try await BatchingLoop.run(items, maximumCount: 10, maximumDelay: .seconds(10)) { flushes.record($0) }
        }
        #expect(flushes.items.isEmpty)
    }
}
