import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import SquallCore

@Suite("Heartbeat emitter")
struct HeartbeatEmitterTests {
    let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    func heartbeat(_ count: Int) -> Heartbeat {
        Heartbeat(
            node: "n1", role: .consumer, host: "h", startedAt: Timestamp(milliseconds: 0), timestamp: .now(),
            currentJobs: [], bytesMoved: Int64(count))
    }

    @Test("heartbeats go out at once and then every interval, until graceful shutdown")
    func periodicUntilShutdown() async throws {
        let sent = Mutex<[Heartbeat]>([])
        let asked = Mutex(0)
        let emitter = HeartbeatEmitter(interval: .milliseconds(30), logger: logger) {
            heartbeat(
                asked.withLock {
                    $0 += 1; return $0
                })
        } publish: { beat in
            sent.withLock { $0.append(beat) }
        }
        let group = ServiceGroup(configuration: .init(services: [emitter], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            #expect(try await eventually { sent.withLock { $0.count } >= 4 })
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let count = sent.withLock { $0.count }
        #expect(sent.withLock { $0.map(\.bytesMoved) } == (1...Int64(count)).map { $0 }, "fresh content each time")
    }

    @Test("the first heartbeat goes at once, not after a period")
    func firstAtOnce() async throws {
        let sent = Mutex(0)
        let emitter = HeartbeatEmitter(interval: .seconds(60), logger: logger) {
            heartbeat(0)
        } publish: { _ in
            sent.withLock { $0 += 1 }
        }
        let group = ServiceGroup(configuration: .init(services: [emitter], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            #expect(try await eventually { sent.withLock { $0 } > 0 })
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(sent.withLock { $0 } == 1)
    }

    @Test("a failed publish does not stop the heartbeats")
    func failureIsNotFatal() async throws {
        struct BrokerDown: Error {}
        let attempts = Mutex(0)
        let emitter = HeartbeatEmitter(interval: .milliseconds(20), logger: logger) {
            heartbeat(0)
        } publish: { _ in
            attempts.withLock { $0 += 1 }
            throw BrokerDown()
        }
        let group = ServiceGroup(configuration: .init(services: [emitter], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            #expect(try await eventually { attempts.withLock { $0 } >= 3 })
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
