import Foundation
import Testing

@testable import SquallTestSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The four services' health endpoint, reached over HTTP as the kubelet and Prometheus reach it.
@Suite("Service HTTP endpoint")
struct HealthEndpointEndToEndTests {
    /// Servers that refuse at once (port 1): the services start, stay alive, and are not ready.
    static let unreachableServers = [
        "SQUALL_DATABASE_URL": "postgres://squall:pw@127.0.0.1:1/squall",
        "SQUALL_AMQP_URL": "amqp://squall:pw@127.0.0.1:1/%2F",
    ]
    /// The services whose readiness already depends on their servers.
    static let wired: Set<String> = ["squall-producer", "squall-consumer", "squall-observer", "squall-collector"]

    /// A loopback port nothing listens on, for a child service to bind.
    ///
    /// Chosen below Linux's ephemeral range (32768–60999) and away from the ports of
    /// `scripts/services` and the benches (25000 and up): a port taken with `bind(0)` lies inside that
    /// range, and between its release and the child's bind any outgoing connection on the machine
    /// could be given it as its local port (the cause of an `eaddrinuse` in CI once already).
    static func freePort() throws -> Int {
        for _ in 0..<200 {
            let candidate = Int.random(in: 20_000..<25_000)
            if canBind(candidate) { return candidate }
        }
        throw FixtureError("no free loopback port between 20000 and 24999 after 200 tries")
    }

    /// Whether a listener could bind 127.0.0.1:`port` right now.
    static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    func get(_ port: Int, _ path: String) async throws -> (status: Int, body: String) {
        let url = URL(string: "http://127.0.0.1:\(port)\(path)")!
        let (data, response) = try await URLSession.shared.data(from: url)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        return (status, String(decoding: data, as: UTF8.self))
    }

    @Test(
        "--http-port serves /healthz, /readyz and /metrics, and SIGTERM closes it and exits 0",
        arguments: ExecutableTests.services)
    func servesAndStops(executable: String) async throws {
        let port = try Self.freePort()
        let process = try BuiltExecutable(executable).start(
            ["--http-port", "\(port)", "--http-host", "127.0.0.1"],
            environment: ["SQUALL_LOG_FORMAT": "json"].merging(Self.unreachableServers) { _, new in new })
        _ = try await process.waitForOutput(containing: "http endpoint listening", timeout: .seconds(20))

        let health = try await get(port, "/healthz")
        #expect(health.status == 200)
        #expect(health.body == "ok\n")
        // Nothing answers on port 1: a wired service is alive but not ready, and says which dependency fails.
        let ready = try await get(port, "/readyz")
        if Self.wired.contains(executable) {
            #expect(ready.status == 503)
            #expect(ready.body.contains(#""ready":false"#))
            #expect(ready.body.contains("broker connected"))
        }
        let metrics = try await get(port, "/metrics")
        #expect(metrics.status == 200)
        for series in ["# TYPE squall_jobs_published_total counter", #"squall_jobs_settled_total{outcome="done"} 0"#] {
            #expect(metrics.body.contains(series), "\(executable) /metrics lacks \(series)")
        }

        process.signal(SIGTERM)
        let status = try await process.waitForExit(timeout: .seconds(5))
        #expect(status == 0)
        await #expect(throws: (any Error).self, "the port still answers after exit") {
            _ = try await get(port, "/healthz")
        }
    }

    @Test("without --http-port no endpoint is started")
    func offByDefault() async throws {
        let process = try BuiltExecutable("squall-consumer").start(
            environment: ["SQUALL_LOG_FORMAT": "json"].merging(Self.unreachableServers) { _, new in new })
        let output = try await process.waitForOutput(containing: "\"message\":\"running\"", timeout: .seconds(20))
        #expect(output.contains("http-port=off"))
        process.signal(SIGTERM)
        #expect(try await process.waitForExit(timeout: .seconds(5)) == 0)
        #expect(!process.output.contains("http endpoint listening"))
    }
}
