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

    /// A port that was free a moment ago: bound to 0 on loopback, read back, released.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        #expect(bound)
        return Int(UInt16(bigEndian: address.sin_port))
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
