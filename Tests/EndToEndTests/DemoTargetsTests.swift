import Foundation
import Testing

@testable import SquallTestSupport

/// `scripts/demo-targets`, run as the demo and the services' end-to-end test will run it.
@Suite("Demo targets script")
struct DemoTargetsTests {
    static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/demo-targets")

    /// Runs the script to completion without blocking a thread of the cooperative pool (other
    /// suites measure that pool's responsiveness while this one runs).
    func run(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = Self.script
        process.arguments = arguments
        let running = RunningProcess(process: process)
        try process.run()
        let status = try await running.waitForExit(timeout: .seconds(120))
        try await Task.sleep(for: .milliseconds(50))  // the last output chunk
        return (status ?? -1, running.output)
    }

    @Test("a generated set is served: good sources match their sha256, missing ones 404, bad rows mismatch")
    func generateServeCheck() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("demo-targets-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let port = "\(Int.random(in: 20_000..<30_000))"
        let generated = try await run([
            "generate", folder, "--port", port, "--count", "40", "--large", "1", "--large-min", "9MiB",
            "--large-max", "9MiB", "--missing", "3", "--bad-sha256", "2",
        ])
        #expect(generated.status == 0, "\(generated.output)")
        #expect(generated.output.contains("40 targets"))
        let manifest = try String(contentsOfFile: folder + "/manifest.csv", encoding: .utf8)
        let lines = manifest.split(separator: "\n")
        #expect(lines.first == "source,destination,priority,sha256")
        #expect(lines.count == 41)
        #expect(lines.dropFirst().allSatisfy { $0.hasPrefix("http://127.0.0.1:\(port)/") })
        #expect(lines.dropFirst().allSatisfy { $0.contains(",s3://squall-demo/demo/") })
        let large = try FileManager.default.attributesOfItem(atPath: folder + "/files/large/object-0000.bin")
        #expect((large[.size] as? Int ?? 0) > 8 * 1024 * 1024)

        let started = try await run(["start", folder, "--port", port])
        let checked = try? await run(["check", folder])
        let stopped = try await run(["stop", folder])  // before any expectation, so nginx never outlives the test
        #expect(started.status == 0, "\(started.output)")
        #expect(checked?.status == 0, "\(checked?.output ?? "check did not run")")
        #expect(checked?.output.contains("checked 40 sources: 0 problems") == true)
        #expect(stopped.output.contains("stopped"))
    }
}
