import CRabbitMQ
import Foundation
import Logging
import SquallCore
import Synchronization
import Testing

@testable import SquallTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A real `squall-consumer` process on the shared RabbitMQ under a random topology prefix, with the
/// test's own broker connection to publish jobs and cancels and to read the packets it sends.
final class ConsumerHarness: Sendable {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }
    static var enabled: Bool {
        environment["SQUALL_REQUIRE_SERVICES"] == "1" || !(environment["SQUALL_AMQP_URL"] ?? "").isEmpty
    }

    let amqpURL: String
    let topology: Topology
    let broker: Broker
    private let progress = Mutex<[ProgressStreamMessage]>([])
    private let results = Mutex<[ResultPacket]>([])
    private let redelivered = Mutex<[Int64]>([])
    private let readers = Mutex<[Task<Void, Never>]>([])

    init(amqpURL: String? = nil) async throws {
        let text = try #require(amqpURL ?? Self.environment["SQUALL_AMQP_URL"], "SQUALL_AMQP_URL is not set")
        self.amqpURL = text
        topology = Topology(prefix: "t-\(UUID().uuidString.prefix(8).lowercased()).")
        var logger = Logger(label: "squall.test.consumer")
        logger.logLevel = .warning
        broker = Broker(
            configuration: Broker.Configuration(
                url: try AMQPURL(parsing: text), topology: topology,
                reconnect: ReconnectPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(2))),
            logger: logger)
        try await broker.start()
        let progressDeliveries = try await broker.consume(queue: topology.progress, prefetch: 200)
        let resultDeliveries = try await broker.consume(queue: topology.results, prefetch: 200)
        let progressReader = Task { [self] in
            do {
                for try await delivery in progressDeliveries {
                    if let message = try? MessageCodec.decodeProgressStream(delivery.body) {
                        progress.withLock { $0.append(message) }
                    }
                    try? await delivery.ack()
                }
            } catch {}
        }
        let resultReader = Task { [self] in
            do {
                for try await delivery in resultDeliveries {
                    if let packet = try? MessageCodec.decode(ResultPacket.self, from: delivery.body) {
                        results.withLock { $0.append(packet) }
                    }
                    try? await delivery.ack()
                }
            } catch {}
        }
        readers.withLock { $0 = [progressReader, resultReader] }
    }

    /// Starts a Consumer on this topology; `extra` environment wins over the defaults here.
    func startConsumer(_ extra: [String: String] = [:], arguments: [String] = []) async throws -> RunningProcess {
        var environment = [
            "SQUALL_AMQP_URL": amqpURL, "SQUALL_QUEUE_PREFIX": topology.prefix, "SQUALL_LOG_FORMAT": "json",
            "SQUALL_HEARTBEAT_INTERVAL": "1", "SQUALL_ALLOW_PRIVATE_SOURCES": "1",
        ]
        environment.merge(extra) { _, new in new }
        let process = try BuiltExecutable("squall-consumer").start(arguments, environment: environment)
        _ = try await process.waitForOutput(containing: "\"message\":\"consuming jobs\"", timeout: .seconds(30))
        _ = try await process.waitForOutput(
            containing: "\"message\":\"listening for cancel orders\"", timeout: .seconds(30))
        return process
    }

    func job(
        _ id: Int64, batch: Int64 = 1, source: String, destination: String, attempt: Int32 = 1,
        enqueuedAt: Timestamp = .now()
    ) -> JobMessage {
        JobMessage(
            jobID: id, batchID: batch, attempt: attempt, source: source, destination: destination,
            enqueuedAt: enqueuedAt)
    }

    func publish(_ jobs: [JobMessage]) async throws {
        try await broker.publishBatch(
            jobs.map { OutgoingMessage(body: MessageCodec.encode($0), destination: .queue(topology.jobs)) })
    }

    func cancel(_ command: ControlMessage.Command) async throws {
        try await broker.publish(
            MessageCodec.encode(ControlMessage(command: command, issuedAt: .now())),
            to: .exchange(topology.control))
    }

    var resultPackets: [ResultPacket] { results.withLock { $0 } }

    var progressPackets: [ProgressPacket] {
        progress.withLock {
            $0.compactMap {
                if case .progress(let packet) = $0 { return packet }
                return nil
            }
        }
    }

    var heartbeats: [Heartbeat] {
        progress.withLock {
            $0.compactMap {
                if case .heartbeat(let heartbeat) = $0 { return heartbeat }
                return nil
            }
        }
    }

    /// Waits until `condition` holds, or records an issue naming `what` after `timeout`.
    func eventually(
        _ what: String, timeout: Duration = .seconds(30), _ condition: () -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if ContinuousClock.now >= deadline {
                Issue.record("not within \(timeout): \(what)", sourceLocation: sourceLocation)
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Messages ready in the jobs queue (not those a consumer holds).
    func jobsReady() async throws -> Int {
        try await broker.queueDepth(topology.jobs)
    }

    /// Stops the readers and the connection, and deletes this test's queues and exchanges.
    func close() async {
        for reader in readers.withLock({ $0 }) { reader.cancel() }
        await broker.shutdown()
        Self.delete(topology, url: amqpURL)
    }

    /// Deletes every queue and exchange of `topology` in a short rabbitmq-c session (best effort):
    /// quorum queues are Raft groups, not free on a shared broker.
    static func delete(_ topology: Topology, url text: String) {
        guard let url = try? AMQPURL(parsing: text) else { return }
        let state = amqp_new_connection()
        defer { amqp_destroy_connection(state) }
        guard let socket = amqp_tcp_socket_new(state),
            amqp_socket_open(socket, url.host, Int32(url.port)) == AMQP_STATUS_OK.rawValue
        else { return }
        let login = squall_amqp_login_plain(state, url.virtualHost, 0, 131072, 0, url.user, url.password.revealed)
        guard login.reply_type == AMQP_RESPONSE_NORMAL else { return }
        defer { amqp_connection_close(state, AMQP_REPLY_SUCCESS) }
        var channel: UInt16 = 1
        amqp_channel_open(state, channel)
        func nextChannelIfClosed() {
            if amqp_get_rpc_reply(state).reply_type != AMQP_RESPONSE_NORMAL {
                channel += 1
                amqp_channel_open(state, channel)
            }
        }
        for queue in topology.queues.map(\.name) {
            _ = queue.withCString { amqp_queue_delete(state, channel, squall_amqp_bytes($0), 0, 0) }
            nextChannelIfClosed()
        }
        for exchange in topology.exchanges.map(\.name) {
            _ = exchange.withCString { amqp_exchange_delete(state, channel, squall_amqp_bytes($0), 0) }
            nextChannelIfClosed()
        }
    }
}

/// A scratch folder for local-file destinations, removed by the caller.
func scratchFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("squall-consumer-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
