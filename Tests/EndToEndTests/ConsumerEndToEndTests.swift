import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// `squall-consumer` as a process against the real RabbitMQ: the protocol around each job
/// (DESIGN.md "Consumer", docs/services.md), seen from the queues.
@Suite(
    "Consumer process",
    .enabled(if: ConsumerHarness.enabled, "skipped: SQUALL_AMQP_URL not set (run scripts/services up)"))
struct ConsumerEndToEndTests {
    @Test("a job that cannot run gets one failed result with its code, no progress packet, and is acked")
    func failingJobs() async throws {
        let harness = try await ConsumerHarness()
        let consumer = try await harness.startConsumer()
        do {
            try await harness.publish([
                harness.job(1, source: "ftp://example.com/a", destination: "/tmp/squall-never/a"),
                harness.job(2, source: "http://127.0.0.1:1/b", destination: "s3://bucket-without-key"),
            ])
            try await harness.eventually("two results") { harness.resultPackets.count == 2 }
            let results = Dictionary(uniqueKeysWithValues: harness.resultPackets.map { ($0.jobID, $0) })
            #expect(results[1]?.outcome == .failed)
            #expect(results[1]?.errorCode == "unsupported_scheme")
            #expect(results[1]?.errorMessage?.contains("ftp") == true)
            #expect(results[2]?.outcome == .failed)
            #expect(results[2]?.errorCode == "bad_url")
            #expect(results[1]?.attempt == 1)
            // Acked after the result: once the Consumer has gone, nothing comes back to the queue.
            consumer.signal(SIGTERM)
            #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
            #expect(try await harness.jobsReady() == 0)
            #expect(harness.resultPackets.count == 2, "one result per job")
            // Their `starting` packets were still held when the results went: withdrawn, not sent,
            // not even by the flush at exit (PacketOutbox).
            try await Task.sleep(for: .seconds(1))
            #expect(harness.progressPackets.isEmpty, "\(harness.progressPackets)")
        } catch {
            Issue.record("consumer output:\n\(consumer.output)")
            await harness.close()
            throw error
        }
        await harness.close()
    }

    @Test("heartbeats name the node, its role and host, and arrive every interval")
    func heartbeats() async throws {
        let harness = try await ConsumerHarness()
        let consumer = try await harness.startConsumer(["SQUALL_NODE_NAME": "consumer-hb-1"])
        try await harness.eventually("two heartbeats") { harness.heartbeats.count >= 2 }
        let heartbeat = try #require(harness.heartbeats.last)
        #expect(heartbeat.node == "consumer-hb-1")
        #expect(heartbeat.role == .consumer)
        #expect(!heartbeat.host.isEmpty)
        #expect(heartbeat.currentJobs.isEmpty)
        consumer.signal(SIGTERM)
        #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
        await harness.close()
    }

    @Test("a batch cancelled before its jobs arrive: they are reported cancelled without starting; others run")
    func cancelBeforeDelivery() async throws {
        let harness = try await ConsumerHarness()
        let consumer = try await harness.startConsumer()
        do {
            let before = Timestamp(milliseconds: Timestamp.now().milliseconds - 1_000)
            try await harness.cancel(.cancelBatch(batchID: 7))
            _ = try await consumer.waitForOutput(containing: "cancel order received", timeout: .seconds(10))
            try await harness.publish(
                (1...3).map {
                    harness.job($0, batch: 7, source: "ftp://h/\($0)", destination: "/tmp/x", enqueuedAt: before)
                }
                    + [harness.job(4, batch: 8, source: "ftp://h/4", destination: "/tmp/x")])
            try await harness.eventually("four results") { harness.resultPackets.count == 4 }
            let results = Dictionary(uniqueKeysWithValues: harness.resultPackets.map { ($0.jobID, $0) })
            for id in Int64(1)...3 {
                #expect(results[id]?.outcome == .cancelled, "job \(id)")
                #expect(!harness.progressPackets.contains { $0.jobID == id }, "job \(id) was started")
            }
            #expect(results[4]?.outcome == .failed)
            consumer.signal(SIGTERM)
            #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
            #expect(try await harness.jobsReady() == 0)
        } catch {
            Issue.record("consumer output:\n\(consumer.output)")
            await harness.close()
            throw error
        }
        await harness.close()
    }

    @Test("/readyz reports the broker connected and the consumer in place; /metrics counts jobs consumed")
    func readiness() async throws {
        let harness = try await ConsumerHarness()
        let port = try HealthEndpointEndToEndTests.freePort()
        let consumer = try await harness.startConsumer(["SQUALL_HTTP_PORT": "\(port)", "SQUALL_HTTP_HOST": "127.0.0.1"])
        let ready = try await HealthEndpointEndToEndTests().get(port, "/readyz")
        #expect(ready.status == 200)
        #expect(ready.body.contains(#""passing":["broker connected","consuming jobs"]"#), "\(ready.body)")
        try await harness.publish([harness.job(1, source: "ftp://h/1", destination: "/tmp/x")])
        try await harness.eventually("a result") { !harness.resultPackets.isEmpty }
        let metrics = try await HealthEndpointEndToEndTests().get(port, "/metrics")
        #expect(metrics.body.contains("squall_jobs_consumed_total 1"), "\(metrics.body)")
        #expect(metrics.body.contains("squall_jobs_in_flight 0"), "\(metrics.body)")
        consumer.signal(SIGTERM)
        #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
        await harness.close()
    }
}

/// `squallctl cancel` as an operator runs it: the database says cancelled, and the Consumers hear it.
@Suite(
    "squallctl cancel reaches the Consumers",
    .enabled(
        if: ProcessInfo.processInfo.environment["SQUALL_REQUIRE_SERVICES"] == "1"
            || !(ProcessInfo.processInfo.environment["SQUALL_DATABASE_URL"] ?? "").isEmpty,
        "skipped: SQUALL_DATABASE_URL not set (run scripts/services up)"))
struct SquallCtlCancelEndToEndTests {
    @Test("squallctl cancel broadcasts the order: a job of the batch arriving afterwards is cancelled, not started")
    func cancelBroadcast() async throws {
        let text = try #require(ProcessInfo.processInfo.environment["SQUALL_DATABASE_URL"])
        let server = try DatabaseURL(parsing: text)
        let name = DatabaseAdministration.randomName()
        _ = try await DatabaseAdministration.createDatabase(named: name, on: server)
        let harness = try await ConsumerHarness()
        let consumer = try await harness.startConsumer()
        do {
            var database = "postgres://"
            if let user = server.user { database += user + (server.password.map { ":\($0.revealed)" } ?? "") + "@" }
            database += "\(server.host):\(server.port)/\(name)"
            if let sslMode = server.sslMode { database += "?sslmode=\(sslMode)" }
            let environment = [
                "SQUALL_DATABASE_URL": database, "SQUALL_AMQP_URL": harness.amqpURL,
                "SQUALL_QUEUE_PREFIX": harness.topology.prefix,
            ]
            let squallctl = try BuiltExecutable("squallctl")
            #expect(try squallctl.run(["migrate"], environment: environment).status == 0)
            let manifest = FileManager.default.temporaryDirectory.appendingPathComponent("m-\(UUID().uuidString).csv")
            try "source,destination\nhttps://example.com/a,s3://bucket/a\n".write(
                to: manifest, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: manifest) }
            let submit = try squallctl.run(["submit", "--batch", "b", manifest.path], environment: environment)
            #expect(submit.output.contains("(id 1)"), "\(submit.output)")
            let enqueued = Timestamp.now()
            let cancel = try squallctl.run(["cancel", "--batch", "b"], environment: environment)
            #expect(cancel.status == 0)
            #expect(cancel.output.contains("told the Consumers"), "\(cancel.output)")
            _ = try await consumer.waitForOutput(containing: "cancel order received", timeout: .seconds(10))
            try await harness.publish([
                harness.job(
                    1, batch: 1, source: "https://example.com/a", destination: "s3://bucket/a", enqueuedAt: enqueued)
            ])
            try await harness.eventually("the result") { !harness.resultPackets.isEmpty }
            #expect(harness.resultPackets.map(\.outcome) == [.cancelled])
            #expect(harness.progressPackets.isEmpty, "the job was started")
            consumer.signal(SIGTERM)
            #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
        } catch {
            Issue.record("consumer output:\n\(consumer.output)")
            await harness.close()
            try? await DatabaseAdministration.dropDatabase(named: name, on: server)
            throw error
        }
        await harness.close()
        try? await DatabaseAdministration.dropDatabase(named: name, on: server)
    }
}
