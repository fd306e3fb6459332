import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing

@testable import SquallCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

@Suite("Health, readiness and metrics endpoint")
struct HealthEndpointTests {
    let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Runs an endpoint on 127.0.0.1 and a system-chosen port, hands the port to `body`, then shuts it down gracefully.
    func withEndpoint(
        readiness: ReadinessChecks = ReadinessChecks(), registry: PrometheusCollectorRegistry = .init(),
        _ body: (Int) async throws -> Void
    ) async throws {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let endpoint = HealthEndpoint(
            configuration: .init(host: "127.0.0.1", port: 0), readiness: readiness, registry: registry,
            logger: logger, onListening: { continuation.yield($0) })
        let group = ServiceGroup(configuration: .init(services: [endpoint], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            #expect(port > 0)
            try await body(port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    func get(_ port: Int, _ path: String) async throws -> (status: Int, contentType: String?, body: String) {
        let url = URL(string: "http://127.0.0.1:\(port)\(path)")!
        let (data, response) = try await URLSession.shared.data(from: url)
        let http = try #require(response as? HTTPURLResponse)
        return (http.statusCode, http.value(forHTTPHeaderField: "Content-Type"), String(decoding: data, as: UTF8.self))
    }

    @Test("healthz answers 200 while the process runs")
    func healthz() async throws {
        try await withEndpoint { port in
            let response = try await get(port, "/healthz")
            #expect(response.status == 200)
            #expect(response.body == "ok\n")
        }
    }

    @Test("readyz answers 200 when every check passes, and with no check registered")
    func readyWhenAllPass() async throws {
        let readiness = ReadinessChecks()
        try await withEndpoint(readiness: readiness) { port in
            let status1 = try await get(port, "/readyz").status
            #expect(status1 == 200)
            readiness.register("broker connected") { true }
            readiness.register("database connected") { true }
            let response = try await get(port, "/readyz")
            #expect(response.status == 200)
            #expect(response.contentType == "application/json")
            #expect(
                response.body
                    == #"{"failing":[],"passing":["broker connected","database connected"],"ready":true}"# + "\n")
        }
    }

    @Test("readyz answers 503 naming the failing checks, and follows them as they change")
    func notReadyNamesFailures() async throws {
        let brokerUp = Mutex(false)
        let readiness = ReadinessChecks()
        readiness.register("broker connected") { brokerUp.withLock { $0 } }
        readiness.register("database connected") { true }
        try await withEndpoint(readiness: readiness) { port in
            let down = try await get(port, "/readyz")
            #expect(down.status == 503)
            let report = try JSONDecoder().decode(ReadinessReport.self, from: Data(down.body.utf8))
            #expect(report.failing == ["broker connected"])
            #expect(report.passing == ["database connected"])
            brokerUp.withLock { $0 = true }
            let status2 = try await get(port, "/readyz").status
            #expect(status2 == 200)
        }
    }

    @Test("a check that hangs counts as failing after the timeout instead of hanging the probe")
    func hungCheck() async throws {
        let readiness = ReadinessChecks(timeout: .milliseconds(200))
        readiness.register("stuck dependency") {
            try? await Task.sleep(for: .seconds(30))
            return true
        }
        try await withEndpoint(readiness: readiness) { port in
            let started = ContinuousClock.now
            let response = try await get(port, "/readyz")
            #expect(response.status == 503)
            #expect(response.body.contains("stuck dependency"))
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    @Test("metrics serves the registry in Prometheus text format with Squall's series")
    func metrics() async throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = SquallMetrics(factory: PrometheusMetricsFactory(registry: registry))
        metrics.jobsPublished(5)
        metrics.jobsSettled(.done, count: 2)
        metrics.jobsSettled(.failed)
        metrics.bytesMoved(1_048_576)
        metrics.transferRetried(reason: "http_503")
        metrics.queueWindow(ready: 700, inFlight: 50)
        metrics.nodes([.busy: 2, .lost: 1])
        metrics.packetsApplied(kind: .progress, duration: .milliseconds(12))
        try await withEndpoint(registry: registry) { port in
            let response = try await get(port, "/metrics")
            #expect(response.status == 200)
            #expect(response.contentType?.hasPrefix("text/plain; version=0.0.4") == true)
            for line in [
                "# TYPE squall_jobs_published_total counter", "squall_jobs_published_total 5",
                #"squall_jobs_settled_total{outcome="done"} 2"#, #"squall_jobs_settled_total{outcome="failed"} 1"#,
                #"squall_jobs_settled_total{outcome="skipped"} 0"#, "squall_bytes_moved_total 1048576",
                #"squall_transfer_retries_total{reason="http_503"} 1"#, #"squall_queue_window{part="ready"} 700"#,
                #"squall_nodes{state="busy"} 2"#, #"squall_nodes{state="idle"} 0"#,
                #"squall_packet_apply_seconds_count{kind="progress"} 1"#,
            ] {
                #expect(response.body.contains(line), "missing \(line) in\n\(response.body)")
            }
        }
    }

    @Test("an unknown path is 404")
    func unknownPath() async throws {
        try await withEndpoint { port in
            let status3 = try await get(port, "/nope").status
            #expect(status3 == 404)
        }
    }

    @Test("after graceful shutdown the port no longer accepts connections")
    func shutsDown() async throws {
        var bound = 0
        try await withEndpoint { port in bound = port }
        await #expect(throws: (any Error).self) { _ = try await get(bound, "/healthz") }
    }
}
