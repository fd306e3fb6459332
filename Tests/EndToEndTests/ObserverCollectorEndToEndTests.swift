import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// `squall-observer` and `squall-collector` against the real servers; the test publishes the
/// packets Consumers would send, with the Broker API.
@Suite(
    "Observer and Collector end to end",
    .enabled(
        if: ServicesHarness.enabled, "skipped: SQUALL_DATABASE_URL / SQUALL_AMQP_URL not set (scripts/services up)"))
struct ObserverCollectorEndToEndTests {
    static func progress(
        _ job: JobMessage, bytes: Int64, at milliseconds: Int64, attempt: Int32? = nil
    )
        -> ProgressPacket
    {
        ProgressPacket(
            jobID: job.jobID, attempt: attempt ?? job.attempt, node: "node-a",
            timestamp: Timestamp(milliseconds: milliseconds), bytesDone: bytes, bytesTotal: 1000, bytesPerSecond: 10,
            phase: .transferring)
    }

    static func result(
        _ job: JobMessage, _ outcome: ResultPacket.Outcome, attempt: Int32? = nil, errorCode: String? = nil
    ) -> ResultPacket {
        ResultPacket(
            jobID: job.jobID, attempt: attempt ?? job.attempt, node: "node-a", timestamp: .now(), outcome: outcome,
            bytes: outcome == .done ? 1000 : 0, errorCode: errorCode,
            errorMessage: errorCode.map { "source answered \($0)" }, durationMilliseconds: 5)
    }

    @Test(
        "the Observer applies progress packets (newest wins, stale attempts ignored) and registers nodes from heartbeats"
    )
    func observerAppliesProgressAndHeartbeats() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("observed", count: 3)
            let jobs = try await harness.repository.claim(limit: 3, lease: .seconds(600))
            let port = try HealthEndpointEndToEndTests.freePort()
            let observer = try await harness.start(
                "squall-observer", ["--heartbeat-period", "1", "--http-port", "\(port)", "--http-host", "127.0.0.1"])
            let now = Timestamp.now().milliseconds
            var packets: [ProgressPacket] = []
            for job in jobs {
                packets.append(Self.progress(job, bytes: 100, at: now))
                packets.append(Self.progress(job, bytes: 600, at: now + 20))
                packets.append(Self.progress(job, bytes: 300, at: now + 10))  // late, older: ignored
            }
            // A packet of an earlier attempt changes nothing, however new its timestamp.
            packets.append(Self.progress(jobs[0], bytes: 999, at: now + 50, attempt: jobs[0].attempt - 1))
            try await harness.publish(packets, to: harness.topology.progress)
            let started = Timestamp.now()
            try await harness.publish(
                [
                    Heartbeat(
                        node: "node-a", role: .consumer, host: "host-a", startedAt: started, timestamp: started,
                        currentJobs: jobs.map(\.jobID), bytesMoved: 1800),
                    Heartbeat(
                        node: "node-gone", role: .consumer, host: "host-b",
                        startedAt: Timestamp(milliseconds: now - 60_000),
                        timestamp: Timestamp(milliseconds: now - 30_000),
                        currentJobs: [], bytesMoved: 0),
                ], to: harness.topology.progress)

            try await harness.eventually("every job running at 600 bytes", showing: observer) {
                try await harness.jobs("observed").allSatisfy {
                    $0.state == .running && $0.bytesDone == 600 && $0.node == "node-a"
                }
            }
            try await harness.eventually("both nodes registered", showing: observer) {
                try await harness.repository.nodes().map(\.name) == ["node-a", "node-gone"]
            }
            let nodeA = try #require(try await harness.repository.nodes().first)
            #expect(nodeA.currentJobs == jobs.map(\.jobID))
            #expect(nodeA.bytesMoved == 1800)
            // Acked after the commit: nothing is left in the queue.
            try await harness.eventually("the progress queue drained") {
                try await harness.broker.queueDepth(harness.topology.progress) == 0
            }

            let squallctl = try BuiltExecutable("squallctl")
            let nodes = try squallctl.run(["nodes", "--heartbeat-period", "5"], environment: harness.environment)
            #expect(nodes.status == 0, "\(nodes.output)")
            let lines = nodes.output.split(separator: "\n").map(String.init)
            #expect(lines.contains { $0.hasPrefix("node-a ") && $0.contains(" busy ") }, "\(nodes.output)")
            #expect(lines.contains { $0.hasPrefix("node-gone ") && $0.contains(" lost ") }, "\(nodes.output)")
            try await harness.eventually("the Observer logs the lost node") {
                observer.output.contains("node lost") && observer.output.contains("node-gone")
            }
            // node-a's only heartbeat is 3 periods old soon too: the gauge follows the clock.
            try await harness.eventually("both nodes counted lost") {
                try await HealthEndpointEndToEndTests().get(port, "/metrics").body.contains(
                    #"squall_nodes{state="lost"} 2"#)
            }
            let metrics = try await HealthEndpointEndToEndTests().get(port, "/metrics").body
            for series in [
                #"squall_packet_apply_seconds_count{kind="progress"}"#,
                #"squall_packet_apply_seconds_count{kind="heartbeat"}"#,
            ] {
                #expect(metrics.contains(series), "/metrics lacks \(series)")
            }
            try await harness.stop(observer)
        }
    }

    @Test("the Collector settles results, ignores stale attempts, and logs the finished batch's summary")
    func collectorSettlesAndSummarizes() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("collected", count: 4)
            let jobs = try await harness.repository.claim(limit: 4, lease: .seconds(600))
            let port = try HealthEndpointEndToEndTests.freePort()
            let collector = try await harness.start(
                "squall-collector", ["--http-port", "\(port)", "--http-host", "127.0.0.1"])
            try await harness.publish(
                [
                    Self.result(jobs[0], .done),
                    // A stale attempt's failure arrives: it must not settle the job.
                    Self.result(jobs[1], .failed, attempt: jobs[1].attempt - 1, errorCode: "http_500"),
                    Self.result(jobs[2], .failed, errorCode: "http_404"),
                    Self.result(jobs[3], .skipped),
                ], to: harness.topology.results)
            try await harness.eventually("three jobs settled", showing: collector) {
                try await harness.jobs("collected").filter { $0.state.isTerminal }.count == 3
            }
            try await Task.sleep(for: .milliseconds(300))
            var states = try await harness.jobs("collected").map(\.state)
            #expect(states == [.done, .queued, .failed, .skipped])
            #expect(try await harness.jobs("collected")[2].errorCode == "http_404")
            #expect(!collector.output.contains("finished:"), "the batch is not finished yet")

            // The last job settles: the batch is finished and summarized in one line.
            try await harness.publish([Self.result(jobs[1], .done)], to: harness.topology.results)
            let output = try await collector.waitForOutput(
                containing: "batch collected finished:", timeout: .seconds(20))
            let summary = try #require(output.split(separator: "\n").first { $0.contains("batch collected finished:") })
            #expect(summary.contains("4 jobs, done 2, skipped 1, failed 1, cancelled 0, 2.0 KiB in "), "\(summary)")
            states = try await harness.jobs("collected").map(\.state)
            #expect(states == [.done, .done, .failed, .skipped])
            let status = try #require(try await harness.repository.status(batch: "collected").first)
            #expect(status.finishedAt != nil)
            // A repeated result (a redelivery after a crash) changes nothing.
            try await harness.publish([Self.result(jobs[2], .done)], to: harness.topology.results)
            try await harness.eventually("the results queue drained") {
                try await harness.broker.queueDepth(harness.topology.results) == 0
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await harness.jobs("collected")[2].state == .failed)
            let metrics = try await HealthEndpointEndToEndTests().get(port, "/metrics").body
            for series in [
                #"squall_jobs_settled_total{outcome="done"} 2"#, #"squall_jobs_settled_total{outcome="failed"} 1"#,
                #"squall_jobs_settled_total{outcome="skipped"} 1"#,
                #"squall_packet_apply_seconds_count{kind="result"}"#,
            ] {
                #expect(metrics.contains(series), "/metrics lacks \(series)")
            }
            try await harness.stop(collector)
            #expect(collector.output.contains("ignored stale or repeated results"))
        }
    }
}

/// `squallctl wait` and `watch` over a batch that the test settles through the repository.
@Suite(
    "squallctl wait and watch",
    .enabled(
        if: ServicesHarness.enabled, "skipped: SQUALL_DATABASE_URL / SQUALL_AMQP_URL not set (scripts/services up)"))
struct WaitWatchEndToEndTests {
    func settle(_ harness: ServicesHarness, _ jobs: [JobMessage], _ outcome: ResultPacket.Outcome) async throws {
        _ = try await harness.repository.applyResults(jobs.map { ObserverCollectorEndToEndTests.result($0, outcome) })
    }

    @Test("wait exits 0 when every job is done or skipped")
    func waitSucceeds() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("fine", count: 3)
            let jobs = try await harness.repository.claim(limit: 3, lease: .seconds(600))
            try await settle(harness, Array(jobs.prefix(2)), .done)
            try await settle(harness, [jobs[2]], .skipped)
            let run = try BuiltExecutable("squallctl").run(
                ["wait", "fine", "--timeout", "10"], environment: harness.environment)
            #expect(run.status == 0, "\(run.output)")
        }
    }

    @Test("wait exits 1 once the batch is complete with a failed or cancelled job, and only then")
    func waitFails() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("broken", count: 3)
            let jobs = try await harness.repository.claim(limit: 3, lease: .seconds(600))
            try await settle(harness, [jobs[0]], .failed)
            let waiting = try BuiltExecutable("squallctl").start(
                ["wait", "broken", "--interval", "0.2"], environment: harness.environment)
            try await Task.sleep(for: .seconds(1))
            #expect(waiting.process.isRunning, "wait ended before the batch was complete")
            try await settle(harness, [jobs[1]], .done)
            try await settle(harness, [jobs[2]], .cancelled)
            #expect(try await waiting.waitForExit(timeout: .seconds(10)) == 1)
        }
    }

    @Test("wait exits 2 when the timeout passes first, and 64 for an unknown batch")
    func waitTimesOut() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("slow", count: 2)
            let squallctl = try BuiltExecutable("squallctl")
            let started = ContinuousClock.now
            let run = try squallctl.run(
                ["wait", "slow", "--timeout", "1", "--interval", "0.2"], environment: harness.environment)
            #expect(run.status == 2, "\(run.output)")
            #expect(ContinuousClock.now - started < .seconds(10))
            let unknown = try squallctl.run(["wait", "nope", "--timeout", "1"], environment: harness.environment)
            #expect(unknown.status == 64)
            #expect(unknown.output.contains("batch \"nope\" does not exist"))
        }
    }

    @Test("watch prints plain progress lines when not on a terminal and ends when the batch is complete")
    func watchPlainLines() async throws {
        try await ServicesHarness.with { harness in
            try await harness.submit("watched", count: 4)
            let jobs = try await harness.repository.claim(limit: 4, lease: .seconds(600))
            let watching = try BuiltExecutable("squallctl").start(
                ["watch", "watched", "--interval", "0.2", "--every", "0.5"], environment: harness.environment)
            _ = try await watching.waitForOutput(containing: "watched: 0/4 settled", timeout: .seconds(20))
            try await settle(harness, Array(jobs.prefix(2)), .done)
            _ = try await watching.waitForOutput(containing: "watched: 2/4 settled", timeout: .seconds(20))
            #expect(watching.process.isRunning)
            try await settle(harness, [jobs[2]], .done)
            try await settle(harness, [jobs[3]], .failed)
            #expect(try await watching.waitForExit(timeout: .seconds(10)) == 0)
            let output = watching.outputToEnd()
            #expect(!output.contains("\r"), "a carriage return in plain output")
            let last = try #require(output.split(separator: "\n").last)
            #expect(last.hasPrefix("watched: 4/4 settled (done 3, skipped 0, failed 1, cancelled 0)"), "\(last)")
        }
    }
}
