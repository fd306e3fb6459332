import CRabbitMQ
import Foundation
import Logging
import SquallCore
import Testing

@testable import SquallTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// What the broker tests share: the URL from the environment, an isolated topology per test, and
/// clean-up of the queues a test declared (quorum queues are not free on a shared broker).
enum BrokerFixture {
    static func url(heartbeat: Int? = nil) throws -> AMQPURL {
        var url = try AMQPURL(parsing: try ServiceEnvironment.value("SQUALL_AMQP_URL"))
        if let heartbeat { url.heartbeatSeconds = heartbeat }
        return url
    }

    /// DESIGN's topology under a random prefix, so tests sharing the broker never meet.
    static func topology(
        jobDeliveryLimit: Int = 5, extraQueues: [String: (String) -> QueueDefinition] = [:]
    )
        -> Topology
    {
        var topology = Topology(
            prefix: "t-\(UUID().uuidString.prefix(8).lowercased()).", jobDeliveryLimit: jobDeliveryLimit)
        for (_, make) in extraQueues.sorted(by: { $0.key < $1.key }) {
            topology.extraQueues.append(make(topology.prefix))
        }
        return topology
    }

    static var logger: Logger {
        var logger = Logger(label: "squall.test.broker")
        logger.logLevel = .info
        return logger
    }

    /// A started broker; the caller shuts it down.
    static func broker(
        topology: Topology, heartbeat: Int? = nil, readyTimeout: Duration = .seconds(30)
    ) async throws -> Broker {
        let broker = Broker(
            configuration: Broker.Configuration(
                url: try url(heartbeat: heartbeat), topology: topology,
                reconnect: ReconnectPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(2)),
                readyTimeout: readyTimeout),
            logger: logger)
        try await broker.start()
        return broker
    }

    /// Deletes every queue and exchange of `topology` (best effort, a short rabbitmq-c session).
    static func delete(_ topology: Topology) {
        guard let url = try? url() else { return }
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
        for queue in topology.queues.map(\.name) {
            amqp_queue_delete(state, channel, squall_amqp_bytes(queue), 0, 0)
            if amqp_get_rpc_reply(state).reply_type != AMQP_RESPONSE_NORMAL {
                channel += 1
                amqp_channel_open(state, channel)
            }
        }
        for exchange in topology.exchanges.map(\.name) {
            amqp_exchange_delete(state, channel, squall_amqp_bytes(exchange), 0)
            if amqp_get_rpc_reply(state).reply_type != AMQP_RESPONSE_NORMAL {
                channel += 1
                amqp_channel_open(state, channel)
            }
        }
    }

    /// The repository's `scripts/services`, found from this file's path.
    static var servicesScript: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/services").path
    }

    /// Runs `scripts/services ARGUMENTS…` and returns its standard output. It blocks for as long as
    /// a restart takes, so it runs on a GCD thread, not on the cooperative pool.
    @discardableResult
    static func services(_ arguments: String...) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try runServices(arguments) })
            }
        }
    }

    /// Spawns the script with only standard input, output and error: Foundation's `Process` hands
    /// the child a socket that a restarted server would inherit and keep open (so `waitUntilExit`
    /// would wait for the server to stop), and the test's own broker sockets must not leak into it.
    private static func runServices(_ arguments: [String]) throws -> String {
        let outputPath = NSTemporaryDirectory() + "squall-services-\(UUID().uuidString).out"
        defer { unlink(outputPath) }
        let closeInherited =
            #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; exec "$@""#
        let argv = ["/bin/bash", "-c", closeInherited, "services", servicesScript] + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let cArguments = argv.map { strdup($0) }
        defer { cArguments.forEach { free($0) } }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, "/bin/bash", &actions, nil, cArguments + [nil], environ)
        guard spawned == 0 else { throw ServicesFailed(arguments: arguments, status: spawned, output: "spawn failed") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let exitCode = (status >> 8) & 0xff
        guard status & 0x7f == 0, exitCode == 0 else {
            throw ServicesFailed(arguments: arguments, status: exitCode, output: text)
        }
        return text
    }

    struct ServicesFailed: Error, CustomStringConvertible {
        var arguments: [String]
        var status: Int32
        var output: String
        var description: String { "scripts/services \(arguments.joined(separator: " ")) exited \(status): \(output)" }
    }
}

/// Collects values from concurrent tasks.
final class Collected<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Value] = []

    func append(_ value: Value) {
        lock.lock()
        values.append(value)
        lock.unlock()
    }

    var all: [Value] {
        lock.lock()
        defer { lock.unlock() }
        return values
    }

    var count: Int { all.count }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}

extension Data {
    init(text: String) { self = Data(text.utf8) }
    var text: String { String(decoding: self, as: UTF8.self) }
}
