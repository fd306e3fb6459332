import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// The services started on a database whose schema is not there yet (the migrate Job still
/// running, or never run): they wait, not ready, saying what to run, and take no work until it is.
@Suite(
    "Services wait for the schema",
    .enabled(
        if: ServicesHarness.enabled, "skipped: SQUALL_DATABASE_URL / SQUALL_AMQP_URL not set (scripts/services up)"))
struct SchemaGateEndToEndTests {
    static let waiting = "database schema is older than this build"

    @Test("a Collector on an unmigrated database leaves results in the queue, none dead-lettered, until the migration")
    func collectorWaitsForTheSchema() async throws {
        try await ServicesHarness.with(migrated: false) { harness in
            #expect(try await harness.repository.schemaVersion() == 0)
            let port = try HealthEndpointEndToEndTests.freePort()
            let collector = try await harness.start(
                "squall-collector", ["--http-port", "\(port)", "--http-host", "127.0.0.1"])
            let said = try await collector.waitForOutput(containing: Self.waiting, timeout: .seconds(15))
            #expect(said.contains("\"db.schema_version\":\"0\""), "\(said.suffix(2000))")
            #expect(said.contains("\"db.schema_needed\":\"\(Migrations.latestVersion)\""))

            // A result for a job no database row has yet: before the gate, the Collector consumed it,
            // failed on the missing table, and handed it back until the delivery limit dead-lettered it.
            let early = ResultPacket(
                jobID: 424_242, attempt: 1, node: "node-a", timestamp: .now(), outcome: .done, bytes: 10,
                durationMilliseconds: 1)
            try await harness.publish([early], to: harness.topology.results)
            try await Task.sleep(for: .seconds(2))
            #expect(try await harness.broker.queueDepth(harness.topology.results) == 1, "the result was taken")
            #expect(try await harness.broker.queueDepth(harness.topology.deadLetters) == 0)
            let endpoint = HealthEndpointEndToEndTests()
            let notReady = try await endpoint.get(port, "/readyz")
            #expect(notReady.status == 503, "\(notReady.body)")
            #expect(notReady.body.contains(#""failing":["database schema current"]"#), "\(notReady.body)")

            try await harness.repository.migrate()
            try await harness.eventually("the waiting result consumed after the migration", showing: collector) {
                try await harness.broker.queueDepth(harness.topology.results) == 0
            }
            #expect(try await harness.broker.queueDepth(harness.topology.deadLetters) == 0)
            #expect(collector.output.contains("database schema is up to date"))
            #expect(try await endpoint.get(port, "/readyz").status == 200)

            // And it settles real work from then on.
            try await harness.submit("after", count: 1)
            let job = try #require(try await harness.repository.claim(limit: 1, lease: .seconds(600)).first)
            try await harness.publish(
                [ObserverCollectorEndToEndTests.result(job, .done)], to: harness.topology.results)
            try await harness.eventually("the job settled", showing: collector) {
                try await harness.jobs("after").first?.state == .done
            }
            try await harness.stop(collector)
        }
    }

    @Test(
        "an Observer on an unmigrated database leaves heartbeats in the queue until the migration, then registers the node"
    )
    func observerWaitsForTheSchema() async throws {
        try await ServicesHarness.with(migrated: false) { harness in
            let observer = try await harness.start("squall-observer", ["--heartbeat-period", "1"])
            _ = try await observer.waitForOutput(containing: Self.waiting, timeout: .seconds(15))
            let now = Timestamp.now()
            try await harness.publish(
                [
                    Heartbeat(
                        node: "node-early", role: .consumer, host: "host-a", startedAt: now, timestamp: now,
                        currentJobs: [], bytesMoved: 0)
                ], to: harness.topology.progress)
            try await Task.sleep(for: .seconds(2))
            #expect(try await harness.broker.queueDepth(harness.topology.progress) == 1, "the heartbeat was taken")
            #expect(try await harness.broker.queueDepth(harness.topology.deadLetters) == 0)

            try await harness.repository.migrate()
            try await harness.eventually("the early node registered", showing: observer) {
                try await harness.repository.nodes().map(\.name).contains("node-early")
            }
            #expect(try await harness.broker.queueDepth(harness.topology.deadLetters) == 0)
            try await harness.stop(observer)
        }
    }

    @Test("a Producer without --migrate on an unmigrated database publishes nothing until the schema is there")
    func producerWaitsForTheSchema() async throws {
        try await ServicesHarness.with(migrated: false) { harness in
            let port = try HealthEndpointEndToEndTests.freePort()
            let producer = try await harness.start(
                "squall-producer", ["--poll-interval", "0.05", "--http-port", "\(port)", "--http-host", "127.0.0.1"])
            _ = try await producer.waitForOutput(containing: Self.waiting, timeout: .seconds(15))
            let notReady = try await HealthEndpointEndToEndTests().get(port, "/readyz")
            #expect(notReady.status == 503, "\(notReady.body)")
            #expect(notReady.body.contains("database schema current"), "\(notReady.body)")
            #expect(!producer.output.contains("\"message\":\"producing\""))

            try await harness.repository.migrate()
            try await harness.submit("late", count: 3)
            try await harness.eventually("three jobs published", showing: producer) {
                try await harness.broker.queueDepth(harness.topology.jobs) == 3
            }
            #expect(try await harness.jobs("late").allSatisfy { $0.state == .queued })
            #expect(try await HealthEndpointEndToEndTests().get(port, "/readyz").status == 200)
            try await harness.stop(producer)
        }
    }
}
