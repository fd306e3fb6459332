import Foundation
import Testing

@testable import SquallTestSupport

/// `scripts/services` on a data folder of its own, where no server runs: only its own rules are tested.
@Suite("Services script")
struct ServicesScriptTests {
    static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/services")

    /// Starts `executable` with `arguments`; `folder` is the services' data folder, on private ports.
    func start(_ executable: URL, _ arguments: [String], folder: String) throws -> RunningProcess {
        var environment = ["SQUALL_SERVICES_DIR": folder]
        for (name, port) in [("PG", 25_532), ("AMQP", 26_820), ("AMQPS", 26_871), ("S3", 29_100)] {
            environment["SQUALL_\(name)_PORT"] = "\(port)"
        }
        return try BuiltExecutable(url: executable).start(arguments, environment: environment)
    }

    @Test("runs that change the servers take turns: a second one waits, saying so, until the first ends")
    func changesTakeTurns() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("services-\(UUID())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let flock = URL(fileURLWithPath: "/usr/bin/flock")
        let lock = "\(folder)/.lock"

        // A first run, as the script holds the folder: flock(1) on its lock file for two seconds.
        let holder = try start(flock, [lock, "sleep", "2"], folder: folder)
        var held = false
        for _ in 0..<100 where !held {
            let probe = try start(flock, ["-n", lock, "true"], folder: folder)
            held = try await probe.waitForExit(timeout: .seconds(10)) == 1
            if !held { try await Task.sleep(for: .milliseconds(20)) }
        }
        try #require(held, "the stand-in first run never took the lock")

        let begun = ContinuousClock.now
        let second = try start(Self.script, ["down"], folder: folder)
        let status = try await second.waitForExit(timeout: .seconds(60))
        let waited = ContinuousClock.now - begun
        let holderStatus = try await holder.waitForExit(timeout: .seconds(10))
        try await Task.sleep(for: .milliseconds(50))  // the last output chunk

        #expect(status == 0, "\(second.output)")
        #expect(second.output.contains("waiting for another scripts/services run on \(folder)"), "\(second.output)")
        // It ran only once the first had let go: not before the holder's two seconds were over.
        #expect(holderStatus == 0)
        #expect(waited >= .milliseconds(1500), "the second run did not wait (\(waited))")

        // With nobody holding the lock, a run neither waits nor says so.
        let alone = try start(Self.script, ["down"], folder: folder)
        #expect(try await alone.waitForExit(timeout: .seconds(60)) == 0)
        try await Task.sleep(for: .milliseconds(50))
        #expect(!alone.output.contains("waiting"), "\(alone.output)")
    }
}
