import CRabbitMQ
import Foundation
import Logging
import SquallCore
import Testing

@testable import SquallTestSupport

/// One isolated world on the shared servers for an end-to-end test: a fresh database (migrated,
/// unless the test asks for an empty one) and a random queue prefix, the environment that points
/// the executables at both, and an in-process repository and broker through which the test plays
/// the parts not under test (a Consumer's packets, an operator's submit). ``tearDown()`` drops the
/// database and deletes the queues.
final class ServicesHarness: Sendable {
    let environment: [String: String]
    let repository: JobRepository
    let broker: Broker
    let topology: Topology
    private let databaseName: String
    private let server: DatabaseURL
    private let amqpURL: AMQPURL

    static var enabled: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["SQUALL_REQUIRE_SERVICES"] == "1"
            || (!(environment["SQUALL_DATABASE_URL"] ?? "").isEmpty && !(environment["SQUALL_AMQP_URL"] ?? "").isEmpty)
    }

    private init(
        environment: [String: String], repository: JobRepository, broker: Broker, topology: Topology,
        databaseName: String, server: DatabaseURL, amqpURL: AMQPURL
    ) {
        self.environment = environment
        self.repository = repository
        self.broker = broker
        self.topology = topology
        self.databaseName = databaseName
        self.server = server
        self.amqpURL = amqpURL
    }

    static func make(migrated: Bool = true) async throws -> ServicesHarness {
        let variables = ProcessInfo.processInfo.environment
        let databaseText = try #require(variables["SQUALL_DATABASE_URL"], "SQUALL_DATABASE_URL is not set")
        let amqpText = try #require(variables["SQUALL_AMQP_URL"], "SQUALL_AMQP_URL is not set")
        let server = try DatabaseURL(parsing: databaseText)
        let name = DatabaseAdministration.randomName(prefix: "squall_e2e_")
        let url = try await DatabaseAdministration.createDatabase(named: name, on: server)
        var urlText = "postgres://"
        if let user = url.user { urlText += user + (url.password.map { ":\($0.revealed)" } ?? "") + "@" }
        urlText += "\(url.host):\(url.port)/\(name)"
        if let sslMode = url.sslMode { urlText += "?sslmode=\(sslMode)" }

        var logger = Logger(label: "squall.test.e2e")
        logger.logLevel = .warning
        let repository = JobRepository(url: url, actor: "test", logger: logger)
        if migrated { try await repository.migrate() }
        let prefix = "e2e-\(UUID().uuidString.prefix(8).lowercased())."
        let topology = Topology(prefix: prefix)
        let amqpURL = try AMQPURL(parsing: amqpText)
        let broker = Broker(
            configuration: Broker.Configuration(url: amqpURL, topology: topology), logger: logger)
        try await broker.start()
        return ServicesHarness(
            environment: [
                "SQUALL_DATABASE_URL": urlText, "SQUALL_AMQP_URL": amqpText, "SQUALL_QUEUE_PREFIX": prefix,
                "SQUALL_LOG_FORMAT": "json",
            ],
            repository: repository, broker: broker, topology: topology, databaseName: name, server: server,
            amqpURL: amqpURL)
    }

    /// Runs `body` with a fresh harness and always tears it down, whatever `body` throws.
    static func with(migrated: Bool = true, _ body: (ServicesHarness) async throws -> Void) async throws {
        let harness = try await make(migrated: migrated)
        do {
            try await body(harness)
        } catch {
            await harness.tearDown()
            throw error
        }
        await harness.tearDown()
    }

    func tearDown() async {
        await broker.shutdown()
        await repository.close()
        try? await DatabaseAdministration.dropDatabase(named: databaseName, on: server)
        deleteQueues()
    }

    /// Submits `count` jobs as batch `name`.
    @discardableResult
    func submit(_ name: String, count: Int) async throws -> SubmittedBatch {
        var manifest = "source,destination\n"
        for index in 0..<count { manifest += "https://example.com/\(name)/\(index),s3://out/\(name)/\(index)\n" }
        return try await repository.submit(batchName: name, manifest: .text(manifest))
    }

    /// Starts a service executable against this harness's database and queues.
    func start(_ executable: String, _ arguments: [String] = []) async throws -> RunningProcess {
        let process = try BuiltExecutable(executable).start(arguments, environment: environment)
        _ = try await process.waitForOutput(containing: "\"message\":\"running\"", timeout: .seconds(30))
        return process
    }

    /// Stops a service with SIGTERM and expects a clean exit.
    func stop(_ process: RunningProcess) async throws {
        process.signal(SIGTERM)
        let status = try await process.waitForExit(timeout: .seconds(15))
        #expect(status == 0, "exit status \(String(describing: status)); output:\n\(process.output.suffix(3000))")
    }

    func publish<Message: SquallMessage>(_ messages: [Message], to queue: String) async throws {
        try await broker.publishBatch(
            messages.map { OutgoingMessage(body: MessageCodec.encode($0), destination: .queue(queue)) })
    }

    /// The jobs of `batch`, by id.
    func jobs(_ batch: String) async throws -> [JobRecord] {
        try await repository.jobs(batch: batch, limit: 10_000)
    }

    /// Waits until `condition` holds, polling; fails the test after `timeout`.
    func eventually(
        _ what: String, timeout: Duration = .seconds(30), showing process: RunningProcess? = nil,
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record(
            "not within \(timeout): \(what)\(process.map { "; the service's output:\n\($0.output.suffix(4000))" } ?? "")"
        )
        throw CancellationError()
    }

    /// Deletes this test's queues and exchanges (quorum queues are not free on a shared broker).
    private func deleteQueues() {
        let state = amqp_new_connection()
        defer { amqp_destroy_connection(state) }
        guard let socket = amqp_tcp_socket_new(state),
            amqp_socket_open(socket, amqpURL.host, Int32(amqpURL.port)) == AMQP_STATUS_OK.rawValue
        else { return }
        let login = squall_amqp_login_plain(
            state, amqpURL.virtualHost, 0, 131072, 0, amqpURL.user, amqpURL.password.revealed)
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
}
