import Logging
import ServiceLifecycle

/// Sends this node's heartbeat every ``interval`` until graceful shutdown: how the Observer knows who is alive.
///
/// The heartbeat's content (jobs in hand, bytes moved) comes from `makeHeartbeat`, asked afresh
/// each time; `publish` sends it (to `squall.progress`, later). A failed publish is logged and the
/// next period tries again: one missed heartbeat is noise, and the Observer only calls a node lost
/// after three (``NodeRegistryView``). The first heartbeat goes at once, so a new node shows up
/// without waiting a period.
public struct HeartbeatEmitter: Service {
    public let interval: Duration
    private let makeHeartbeat: @Sendable () async -> Heartbeat
    private let publish: @Sendable (Heartbeat) async throws -> Void
    private let logger: Logger

    public init(
        interval: Duration = .seconds(5), logger: Logger, makeHeartbeat: @escaping @Sendable () async -> Heartbeat,
        publish: @escaping @Sendable (Heartbeat) async throws -> Void
    ) {
        self.interval = interval
        self.makeHeartbeat = makeHeartbeat
        self.publish = publish
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var next = ContinuousClock.now
            while !Task.isCancelled {
                do {
                    try await publish(await makeHeartbeat())
                } catch is CancellationError {
                    return
                } catch {
                    logger.info("heartbeat not sent", metadata: ["error": "\(error)"])
                }
                next = next + interval
                do {
                    try await Task.sleep(until: next, clock: .continuous)
                } catch {
                    return
                }
            }
        }
    }
}
