import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A transfer that outlasts RabbitMQ's `consumer_timeout` (docs/services.md, "The consumer_timeout
/// decision"): the Consumer hands the job over to its database lease at its ack deadline, so the
/// broker never closes the channel and redelivers the same attempt to a second writer.
///
/// The timeout is broker-wide in RabbitMQ 3.10, so the test runs **its own broker**, started with
/// `scripts/services start rabbitmq` on other ports and a scratch data folder, with
/// `consumer_timeout` at 60 s, and stopped afterwards. Why not change the shared broker's timeout:
/// while colleagues' tests run it would hit theirs too, and in CI, where this suite runs alone, a
/// private broker is just as cheap (about 20 s to start) and leaves the default one untouched.
@Suite(
    "Consumer on a private broker: consumer_timeout, broker restart",
    .serialized,
    .enabled(
        if: ProcessInfo.processInfo.environment["SQUALL_REQUIRE_SERVICES"] == "1"
            || !(ProcessInfo.processInfo.environment["SQUALL_AMQP_URL"] ?? "").isEmpty,
        "skipped: the servers are not set up (run scripts/services up)"))
struct ConsumerPrivateBrokerDisruptiveTests {
    static let amqpPort = 26920

    /// The private broker's settings for scripts/services.
    static func brokerEnvironment(folder: String) -> [String: String] {
        [
            "SQUALL_SERVICES_DIR": folder, "SQUALL_AMQP_PORT": "\(amqpPort)", "SQUALL_RABBITMQ_DIST_PORT": "26921",
            "SQUALL_EPMD_PORT": "26569", "SQUALL_RABBITMQ_CONSUMER_TIMEOUT_MS": "60000",
            // Its TLS listener too: the one inherited from the environment is the shared broker's.
            "SQUALL_AMQPS_PORT": "26922",
        ]
    }

    /// Runs `body` with a private RabbitMQ up (its scripts/services environment passed in), then stops it.
    func withPrivateBroker(_ body: ([String: String]) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "squall-private-rabbit-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let environment = Self.brokerEnvironment(folder: folder)
        try await ServicesScript.run(["start", "rabbitmq"], environment: environment)
        do {
            try await body(environment)
        } catch {
            _ = try? await ServicesScript.run(["stop", "rabbitmq"], environment: environment)
            Self.stopPortMapper()
            throw error
        }
        try await ServicesScript.run(["stop", "rabbitmq"], environment: environment)
        Self.stopPortMapper()
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// scripts/services' development-only broker password (its AMQP_PASSWORD).
    static var privateURL: String { "amqp://squall:squall-amqp-dev-only@127.0.0.1:\(amqpPort)/%2F" }

    @Test(
        "with consumer_timeout at 60 s and a 45 s ack deadline, a 90 s transfer settles once, done, never redelivered")
    func longTransferSettlesOnce() async throws {
        try await withPrivateBroker { _ in try await runLongTransfer() }
    }

    @Test("after a broker restart the Consumer consumes jobs and hears cancel orders again, without restarting")
    func survivesBrokerRestart() async throws {
        try await withPrivateBroker { environment in
            let harness = try await ConsumerHarness(amqpURL: Self.privateURL)
            let consumer = try await harness.startConsumer()
            do {
                try await harness.publish([harness.job(1, source: "ftp://h/1", destination: "/tmp/x")])
                try await harness.eventually("the first result") { harness.resultPackets.count == 1 }
                try await ServicesScript.run(["restart", "rabbitmq"], environment: environment)
                let before = Timestamp(milliseconds: Timestamp.now().milliseconds - 1_000)
                let deadline = ContinuousClock.now + .seconds(90)
                // Publishing fails until the test's own connection is back; then the job waits for the Consumer.
                var published = false
                while !published && ContinuousClock.now < deadline {
                    do {
                        try await harness.publish([harness.job(2, source: "ftp://h/2", destination: "/tmp/x")])
                        published = true
                    } catch {
                        try await Task.sleep(for: .milliseconds(500))
                    }
                }
                try await harness.eventually("a result after the restart", timeout: .seconds(60)) {
                    harness.resultPackets.contains { $0.jobID == 2 }
                }
                // Cancel orders reach the Consumer's new control queue: a job of the batch is cancelled on arrival.
                var heard = false
                while !heard && ContinuousClock.now < deadline {
                    try? await harness.cancel(.cancelBatch(batchID: 77))
                    try await Task.sleep(for: .milliseconds(500))
                    heard = consumer.output.contains("cancel order received")
                }
                #expect(heard, "no cancel order heard after the restart")
                try await harness.publish([
                    harness.job(3, batch: 77, source: "ftp://h/3", destination: "/tmp/x", enqueuedAt: before)
                ])
                try await harness.eventually("the third result") { harness.resultPackets.contains { $0.jobID == 3 } }
                #expect(harness.resultPackets.first { $0.jobID == 3 }?.outcome == .cancelled)
                #expect(consumer.process.isRunning, "the Consumer exited")
                consumer.signal(SIGTERM)
                #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
            } catch {
                Issue.record("consumer output:\n\(consumer.output)")
                await harness.close()
                throw error
            }
            await harness.close()
        }
    }

    /// The private broker started its own Erlang port mapper (epmd) on 26569, which outlives it.
    static func stopPortMapper() {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["epmd", "-port", "26569", "-kill"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
        process.waitUntilExit()
    }

    func runLongTransfer() async throws {
        let harness = try await ConsumerHarness(amqpURL: Self.privateURL)
        let source = try SourceServer()
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let consumer = try await harness.startConsumer([
            "SQUALL_CONSUMER_CONCURRENCY": "1", "SQUALL_ACK_DEADLINE": "45",
        ])
        do {
            // 1.8 MB at 20 kB/s: about 90 s, half again the broker's timeout.
            let destination = folder.appendingPathComponent("long.bin").path
            try await harness.publish([
                harness.job(
                    1, source: source.generated(size: 1_800_000, seed: 11, bytesPerSecond: 20_000),
                    destination: destination)
            ])
            try await harness.eventually("the result", timeout: .seconds(150)) { !harness.resultPackets.isEmpty }
            // Long enough for a redelivery to show, had the broker closed the channel at 60 s.
            try await Task.sleep(for: .seconds(5))
            #expect(harness.resultPackets.map(\.outcome) == [.done])
            #expect(harness.resultPackets.first?.bytes == 1_800_000)
            let starts = harness.progressPackets.filter { $0.jobID == 1 && $0.phase == .starting }
            #expect(starts.count == 1, "the job was started \(starts.count) times")
            #expect(consumer.output.contains("ack deadline reached"))
            #expect(!consumer.output.contains("PRECONDITION_FAILED"))
            #expect(try sha256sum(destination) == harness.resultPackets.first?.sha256)
            consumer.signal(SIGTERM)
            #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
            #expect(try await harness.jobsReady() == 0)
        } catch {
            Issue.record("consumer output:\n\(consumer.output)")
            source.stop()
            await harness.close()
            throw error
        }
        source.stop()
        await harness.close()
    }
}

/// `scripts/services ARGUMENTS…` with extra environment, found from this file's path.
enum ServicesScript {
    static var path: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/services").path
    }

    /// Runs the script to completion on a GCD thread (a server start blocks for seconds). The child
    /// gets only standard input, output and error: a server it starts must not inherit this test
    /// process's sockets, or waiting for the script would wait for the server.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try spawn(arguments, environment: environment) })
            }
        }
    }

    struct Failed: Error, CustomStringConvertible {
        var arguments: [String]
        var status: Int32
        var output: String
        var description: String { "scripts/services \(arguments.joined(separator: " ")) exited \(status): \(output)" }
    }

    private static func spawn(_ arguments: [String], environment: [String: String]) throws -> String {
        let outputPath = NSTemporaryDirectory() + "squall-services-\(UUID().uuidString).out"
        defer { unlink(outputPath) }
        let closeInherited =
            #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; exec "$@""#
        let argv = ["/bin/bash", "-c", closeInherited, "services", path] + arguments
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { _, new in new }
        let environ = merged.map { "\($0.key)=\($0.value)" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let cArguments = argv.map { strdup($0) }
        let cEnvironment = environ.map { strdup($0) }
        defer {
            cArguments.forEach { free($0) }
            cEnvironment.forEach { free($0) }
        }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, "/bin/bash", &actions, nil, cArguments + [nil], cEnvironment + [nil])
        guard spawned == 0 else { throw Failed(arguments: arguments, status: spawned, output: "spawn failed") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
        let exitCode = (status >> 8) & 0xff
        guard status & 0x7f == 0, exitCode == 0 else {
            throw Failed(arguments: arguments, status: exitCode, output: text)
        }
        return text
    }
}
