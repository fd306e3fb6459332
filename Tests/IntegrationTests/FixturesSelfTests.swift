import Foundation
import Testing

@testable import SquallTestSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The fixtures the engine's tests stand on behave as `Tests/Fixtures/README.md` says, seen from Swift.
@Suite("Fixtures: the HTTP source and the S3 fault proxy, started from Swift")
struct FixturesSelfTests {
    @Test("a Range request returns exactly the bytes of the full GET at those offsets")
    func rangeMatchesFullBody() async throws {
        let source = try SourceServerFixture()
        defer { source.stop() }
        let url = source.url(size: 3_000_000, seed: 7)

        let (full, fullResponse) = try await FixtureProcess.session.data(from: url)
        #expect((fullResponse as? HTTPURLResponse)?.statusCode == 200)
        #expect(full.count == 3_000_000)

        // Across a 1 MiB block boundary, where the generator's per-block stamp and rotation change.
        var request = URLRequest(url: url)
        request.setValue("bytes=1048000-1049999", forHTTPHeaderField: "Range")
        let (part, partResponse) = try await FixtureProcess.session.data(for: request)
        let http = try #require(partResponse as? HTTPURLResponse)
        #expect(http.statusCode == 206)
        #expect(http.value(forHTTPHeaderField: "Content-Range") == "bytes 1048000-1049999/3000000")
        #expect(part == full.subdata(in: 1_048_000..<1_050_000))

        let stats = try await source.stats()
        #expect(stats.paths["/gen/3000000/7"]?.bytes == 3_002_000)
        #expect(stats.paths["/gen/3000000/7"]?.ranges == ["bytes=1048000-1049999"])
    }

    @Test("the fixtures' own Python self-tests pass (moto round trips too when the emulator is configured)")
    func pythonSelfTests() async throws {
        let output = FileManager.default.temporaryDirectory
            .appendingPathComponent("squall-fixture-selftests-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-B", "-m", "unittest", "test_fixtures"]
        process.currentDirectoryURL = FixtureProcess.fixturesDirectory
        let log = try FileHandle(forWritingTo: output)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        let status = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<Int32, any Error>) in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        try log.close()
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        #expect(status == 0, "python3 -m unittest test_fixtures failed:\n\(text)")
    }

    @Test("a fixture that cannot start fails the launcher with the fixture's own error message")
    func startupFailureIsExplained() throws {
        let error = #expect(throws: FixtureError.self) {
            _ = try S3FaultProxyFixture(upstream: URL(string: "https://127.0.0.1:29000")!)
        }
        #expect(
            error?.description.contains("an http://host:port URL is needed") == true, "\(String(describing: error))")
    }

    @Test("the fault proxy answers a programmed SlowDown itself and counts it, then lets requests through")
    func proxySlowDownWithoutUpstream() async throws {
        // An upstream nobody listens on: the fault is answered without it, the next request gets 502.
        let proxy = try S3FaultProxyFixture(upstream: URL(string: "http://127.0.0.1:9")!)
        defer { proxy.stop() }
        try await proxy.program(
            fault: ProxyFault(match: .init(method: "GET", pathContains: "/bucket/"), action: .slowDown))

        let url = proxy.baseURL.appendingPathComponent("bucket/key")
        let (body, response) = try await FixtureProcess.session.data(from: url)
        #expect((response as? HTTPURLResponse)?.statusCode == 503)
        #expect(String(decoding: body, as: UTF8.self).contains("<Code>SlowDown</Code>"))

        let (_, second) = try await FixtureProcess.session.data(from: url)
        #expect((second as? HTTPURLResponse)?.statusCode == 502)

        // An exact query parameter match and a custom S3 error, every time.
        try await proxy.program(
            fault: ProxyFault(
                match: .init(method: "GET", queryParams: ["partNumber": "7"]), action: .error, times: nil,
                status: 403, code: "AccessDenied"))
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        for part in ["7", "7", "17"] {
            components.queryItems = [URLQueryItem(name: "partNumber", value: part)]
            let (denied, answer) = try await FixtureProcess.session.data(from: components.url!)
            let expected = part == "7" ? 403 : 502
            #expect((answer as? HTTPURLResponse)?.statusCode == expected, "partNumber=\(part)")
            if part == "7" { #expect(String(decoding: denied, as: UTF8.self).contains("<Code>AccessDenied</Code>")) }
        }

        let stats = try await proxy.stats()
        #expect(stats.faultsFired == 3)
        #expect(stats.methods["GET"]?.requests == 5)
        #expect(stats.log.map(\.status) == [.code(503), .code(502), .code(403), .code(403), .code(502)])
        #expect(stats.log.first?.fault == "503_slowdown")
    }
}
