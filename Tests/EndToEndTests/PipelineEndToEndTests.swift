import Foundation
import Logging
import Testing

@testable import SquallCore
@testable import SquallTestSupport

/// Producer, Observer and Collector together, the test playing the Consumers.
@Suite(
    "Services pipeline end to end",
    .enabled(
        if: ServicesHarness.enabled, "skipped: SQUALL_DATABASE_URL / SQUALL_AMQP_URL not set (scripts/services up)"))
struct PipelineEndToEndTests {
    /// Takes `count` jobs from the queue like a Consumer: acks each, reports progress and a result.
    func play(_ harness: ServicesHarness, jobs count: Int, node: String) async throws -> [JobMessage] {
        var taken: [JobMessage] = []
        let deliveries = try await harness.broker.consume(queue: harness.topology.jobs, prefetch: count)
        for try await item in deliveries.decoding(JobMessage.self, logger: Logger(label: "test")) {
            taken.append(item.message)
            try await item.delivery.ack()
            if taken.count == count { break }
        }
        let now = Timestamp.now()
        try await harness.publish(
            taken.map {
                ProgressPacket(
                    jobID: $0.jobID, attempt: $0.attempt, node: node, timestamp: now, bytesDone: 10, bytesTotal: 100,
                    bytesPerSecond: 1, phase: .transferring)
            }, to: harness.topology.progress)
        try await harness.publish(
            taken.map {
                ResultPacket(
                    jobID: $0.jobID, attempt: $0.attempt, node: node, timestamp: Timestamp.now(), outcome: .done,
                    bytes: 100, durationMilliseconds: 3)
            }, to: harness.topology.results)
        return taken
    }

    /// Cuts every connection to the test's database except the caller's, as a failover or a
    /// restart would, without touching the shared server's other databases.
    func cutDatabaseConnections(_ harness: ServicesHarness) async throws -> Int {
        let url = try DatabaseURL(parsing: harness.environment["SQUALL_DATABASE_URL"]!)
        let admin = PQConnection(url: url, logger: Logger(label: "test.admin"))
        let rows = try await admin.execute(
            PQStatement(
                name: "cut",
                sql: """
                    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE datname = $1::text AND pid <> pg_backend_pid()
                    """), [url.database], idempotent: false)
        await admin.close()
        return Int(rows.int64(0, 0) ?? 0)
    }

    @Test(
        "a batch flows through Producer, Observer and Collector and finishes, across every database connection being cut"
    )
    func batchSurvivesDroppedDatabaseConnections() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("flow", count: 20)
            let producer = try await harness.start(
                "squall-producer", ["--queue-high-water", "10", "--poll-interval", "0.05"])
            let observer = try await harness.start("squall-observer")
            let collector = try await harness.start("squall-collector")

            let first = try await play(harness, jobs: 10, node: "node-1")
            try await harness.eventually("the first ten done", showing: collector) {
                try await harness.jobs("flow").filter { $0.state == .done }.count == 10
            }
            let cut = try await cutDatabaseConnections(harness)
            #expect(cut >= 3, "expected the three services' connections (and the harness's) to be cut, cut \(cut)")

            let second = try await play(harness, jobs: 10, node: "node-2")
            #expect(Set((first + second).map(\.jobID)).count == 20, "every job published once")
            _ = try await collector.waitForOutput(
                containing: "batch flow finished: 20 jobs, done 20", timeout: .seconds(30))
            let jobs = try await harness.jobs("flow")
            #expect(jobs.allSatisfy { $0.state == .done && $0.bytesDone == 100 })
            #expect(Set(jobs.compactMap(\.node)) == ["node-1", "node-2"])
            for process in [producer, observer, collector] {
                #expect(process.process.isRunning, "a service exited after its database connection was cut")
                try await harness.stop(process)
            }
        }
    }
}
