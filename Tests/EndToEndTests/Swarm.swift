import Crypto
import Foundation
import Logging
import Testing

@testable import SquallCore
@testable import SquallTestSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A whole Squall swarm as real processes on the shared servers: its own database, its own queue
/// names (a random prefix) and its own bucket, so swarms of parallel tests never meet.
///
/// Every executable gets the same environment; the test starts, kills, freezes and restarts the
/// services one by one, and reads the outcome where an operator would: `squallctl`, S3, the database.
final class Swarm: @unchecked Sendable {
    let environment: [String: String]
    let bucket: String
    let source: SourceServerFixture
    let s3Endpoint: URL
    private let server: DatabaseURL
    private let databaseName: String
    private let lock = NSLock()
    private var running: [String: RunningProcess] = [:]

    private init(
        environment: [String: String], bucket: String, source: SourceServerFixture, s3Endpoint: URL,
        server: DatabaseURL, databaseName: String
    ) {
        self.environment = environment
        self.bucket = bucket
        self.source = source
        self.s3Endpoint = s3Endpoint
        self.server = server
        self.databaseName = databaseName
    }

    /// Makes the database (migrated), the bucket and the source server; starts no service yet.
    static func make(extraEnvironment: [String: String] = [:]) async throws -> Swarm {
        let shared = ServiceEnvironment.environment
        let server = try DatabaseURL(parsing: try ServiceEnvironment.value("SQUALL_DATABASE_URL"))
        let name = DatabaseAdministration.randomName()
        _ = try await DatabaseAdministration.createDatabase(named: name, on: server)
        var url = server
        url.database = name
        let endpoint = try ServiceEnvironment.value("SQUALL_S3_ENDPOINT")
        let suffix = UUID().uuidString.prefix(8).lowercased()
        var environment: [String: String] = [
            "SQUALL_DATABASE_URL": url.revealedText,
            "SQUALL_AMQP_URL": try ServiceEnvironment.value("SQUALL_AMQP_URL"),
            "SQUALL_QUEUE_PREFIX": "swarm-\(suffix).",
            "SQUALL_S3_ENDPOINT": endpoint,
            "SQUALL_S3_PATH_STYLE": "1",
            "SQUALL_S3_REGION": shared["SQUALL_S3_REGION"] ?? "us-east-1",
            "AWS_ACCESS_KEY_ID": shared["AWS_ACCESS_KEY_ID"] ?? "squall-dev",
            "AWS_SECRET_ACCESS_KEY": shared["AWS_SECRET_ACCESS_KEY"] ?? "squall-dev-secret",
            "SQUALL_ALLOW_PRIVATE_SOURCES": "1",
            "SQUALL_LOG_FORMAT": "text",
        ]
        environment.merge(extraEnvironment) { _, new in new }
        let swarm = Swarm(
            environment: environment, bucket: "swarm-\(suffix)", source: try SourceServerFixture(),
            s3Endpoint: URL(string: endpoint)!, server: server, databaseName: name)
        let migrate = try swarm.squallctl(["migrate"])
        try #require(migrate.status == 0, "squallctl migrate: \(migrate.output)")
        let (status, _) = try await swarm.s3(.put, "")
        try #require(status == 200, "creating bucket \(swarm.bucket) answered \(status)")
        return swarm
    }

    // MARK: Services

    /// Starts `executable` (`squall-consumer`, …) as node `node` and waits until it says "running".
    @discardableResult
    func start(
        _ executable: String, node: String, arguments: [String] = [], environment extra: [String: String] = [:]
    ) async throws -> RunningProcess {
        var environment = self.environment
        environment["SQUALL_NODE_NAME"] = node
        environment.merge(extra) { _, new in new }
        let process = try BuiltExecutable(executable).start(arguments, environment: environment)
        lock.withLock { running[node] = process }
        _ = try await process.waitForOutput(containing: "running", timeout: .seconds(30))
        return process
    }

    /// The usual swarm: one Producer, `consumers` Consumers, one Observer, one Collector.
    func startAll(consumers: Int = 2, consumerArguments: [String] = [], producerArguments: [String] = []) async throws {
        try await start("squall-producer", node: "producer", arguments: producerArguments)
        for index in 1...consumers {
            try await start("squall-consumer", node: "consumer-\(index)", arguments: consumerArguments)
        }
        try await start("squall-observer", node: "observer")
        try await start("squall-collector", node: "collector")
    }

    func process(_ node: String) -> RunningProcess? { lock.withLock { running[node] } }

    /// SIGKILL: the process gets no chance to clean up.
    func kill9(_ node: String) async throws {
        let process = try #require(self.process(node), "no node \(node)")
        process.signal(SIGKILL)
        _ = try await process.waitForExit(timeout: .seconds(10))
    }

    /// Stops every service with SIGTERM (SIGKILL after 30 s), drops the database and the source server.
    func tearDown() async {
        let processes = lock.withLock { Array(running.values) }
        for process in processes where process.process.isRunning { process.signal(SIGTERM) }
        for process in processes { _ = try? await process.waitForExit(timeout: .seconds(30)) }
        source.stop()
        try? await DatabaseAdministration.dropDatabase(named: databaseName, on: server)
    }

    /// Every service's output, for a failing test's message.
    func logs() -> String {
        lock.withLock {
            running.map { "--- \($0.key)\n\($0.value.output.suffix(4000))" }.sorted().joined(separator: "\n")
        }
    }

    // MARK: squallctl

    func squallctl(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try BuiltExecutable("squallctl").run(arguments, environment: environment)
    }

    /// Submits `manifest` (CSV text) as batch `name` and returns the batch's job count.
    func submit(batch name: String, manifest: String) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swarm-\(UUID().uuidString).csv").path
        try manifest.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let submitted = try squallctl(["submit", "--batch", name, path])
        try #require(submitted.status == 0, "squallctl submit: \(submitted.output)")
    }

    /// `squallctl wait` run to its end: its exit status and output.
    func wait(batch: String, timeout: Int) async throws -> (status: Int32, output: String) {
        let process = try BuiltExecutable("squallctl").start(
            ["wait", batch, "--timeout", "\(timeout)"], environment: environment)
        let status = try await process.waitForExit(timeout: .seconds(timeout + 30))
        return (status ?? -1, process.outputToEnd())
    }

    func status(batch: String) throws -> BatchStatus {
        let answer = try squallctl(["status", batch, "--json"])
        try #require(answer.status == 0, "squallctl status: \(answer.output)")
        return try #require(try JSONDecoder().decode([BatchStatus].self, from: Data(answer.output.utf8)).first)
    }

    func jobs(batch: String, state: JobState? = nil, limit: Int = 10_000) throws -> [JobRecord] {
        var arguments = ["jobs", "--batch", batch, "--json", "--limit", "\(limit)"]
        if let state { arguments += ["--state", state.rawValue] }
        let answer = try squallctl(arguments)
        try #require(answer.status == 0, "squallctl jobs: \(answer.output)")
        return try JSONDecoder().decode([JobRecord].self, from: Data(answer.output.utf8))
    }

    // MARK: S3, read with signed requests (moto refuses anonymous reads of private objects)

    var s3Configuration: S3Configuration {
        S3Configuration(
            endpoint: environment["SQUALL_S3_ENDPOINT"], region: environment["SQUALL_S3_REGION"] ?? "us-east-1",
            pathStyle: true,
            credentials: S3Credentials(
                accessKeyID: environment["AWS_ACCESS_KEY_ID"] ?? "",
                secretAccessKey: Secret(environment["AWS_SECRET_ACCESS_KEY"] ?? "")))
    }

    static let reader = CurlMulti(name: "swarm-test-s3")

    var client: S3Client {
        S3Client(
            configuration: s3Configuration, multi: Self.reader,
            retry: RetryPolicy(maxAttempts: 3, maxDelay: .seconds(1)),
            timeouts: (connectMilliseconds: 5000, lowSpeedLimit: 1, lowSpeedSeconds: 30))
    }

    /// One signed request; the status and body.
    func s3(_ method: HTTPCall.Method, _ key: String, query: String? = nil) async throws -> (status: Int, body: [UInt8])
    {
        var call = client.call(method, bucket: bucket, key: key, query: query)
        call.headers = [("x-amz-content-sha256", ResumableSHA256().hexDigest())]
        call.sink = .keep(limit: 64 << 20)
        let reply = await Self.reader.perform(call)
        return (reply.status, reply.body)
    }

    /// The SHA-256 (hex) of the object's bytes as stored, hashed here from a plain GET, or nil when absent.
    func storedSHA256(key: String) async throws -> String? {
        let (status, body) = try await s3(.get, key)
        guard status == 200 else { return nil }
        return SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
    }

    /// Multipart uploads begun in the bucket and neither completed nor aborted.
    func incompleteUploads() async throws -> Int {
        let (status, body) = try await s3(.get, "", query: "uploads=")
        try #require(status == 200, "ListMultipartUploads answered \(status)")
        return String(decoding: body, as: UTF8.self).components(separatedBy: "<UploadId>").count - 1
    }

    // MARK: The database's audit trail

    /// Runs one SQL query with psql against this swarm's database and returns its rows (tab-separated fields).
    func query(_ sql: String) throws -> [[String]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql]
        var environment = ProcessInfo.processInfo.environment
        environment["PGHOST"] = server.host
        environment["PGPORT"] = "\(server.port)"
        environment["PGUSER"] = server.user
        environment["PGPASSWORD"] = server.password?.revealed
        environment["PGDATABASE"] = databaseName
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "psql failed for: \(sql)")
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }
    }
}

extension DatabaseURL {
    /// The URL as a string, password included: for a child process's environment, never for a log.
    var revealedText: String {
        var text = "postgres://"
        if let user { text += user + (password.map { ":\($0.revealed)" } ?? "") + "@" }
        text += "\(host):\(port)/\(database)"
        if let sslMode { text += "?sslmode=\(sslMode)" }
        return text
    }
}
