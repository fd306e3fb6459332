/// Drives a ``PacketBatcher`` over an async sequence: the Observer's and Collector's consuming loop.
///
/// Items are flushed when a batch fills, when its first item has waited ``PacketBatcher/maximumDelay``,
/// and once more when the sequence ends (graceful shutdown ends the broker's delivery sequence, so
/// the last batch is written and acked before the service stops). `flush` runs one batch at a time;
/// items arriving meanwhile wait in an unbounded buffer, which the broker's prefetch bounds (it
/// delivers no more than prefetch unacked messages, and a batch is acked only after `flush`).
/// An error thrown by `flush` ends the loop with that error: the service's recovery (reconnect,
/// redelivery of the unacked batch) takes over.
public enum BatchingLoop {
    public static func run<Items: AsyncSequence & Sendable>(
        _ items: Items, maximumCount: Int, maximumDelay: Duration,
        flush: @Sendable ([Items.Element]) async throws -> Void
    ) async throws where Items.Element: Sendable {
        typealias Event = BatchingLoopEvent<Items.Element>
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await item in items { continuation.yield(.item(item)) }
                    continuation.yield(.finished)
                } catch {
                    continuation.yield(.failed(error))
                }
            }
            var batcher = PacketBatcher<Items.Element>(maximumCount: maximumCount, maximumDelay: maximumDelay)
            for await event in events {
                let action: PacketBatcher<Items.Element>.Action
                switch event {
                case .item(let item):
                    action = batcher.append(item, at: .now)
                case .timer:
                    action = batcher.timerFired(at: .now)
                case .finished:
                    let rest = batcher.drain()
                    if !rest.isEmpty { try await flush(rest) }
                    group.cancelAll()
                    return
                case .failed(let error):
                    group.cancelAll()
                    throw error
                }
                switch action {
                case .none:
                    break
                case .armTimer(let deadline):
                    group.addTask {
                        try? await Task.sleep(until: deadline, clock: .continuous)
                        continuation.yield(.timer)
                    }
                case .flush(let batch):
                    try await flush(batch)
                }
            }
        }
    }
}

/// What wakes the batching loop: an item, its timer, or the end of the input.
enum BatchingLoopEvent<Item: Sendable>: Sendable {
    case item(Item)
    case timer
    case finished
    case failed(any Error)
}
