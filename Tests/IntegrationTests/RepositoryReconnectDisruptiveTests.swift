import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// The repository across a PostgreSQL restart. It stops the shared server for a moment, so it
/// runs alone, after the other suites (`scripts/test` runs `…DisruptiveTests` suites last).
@Suite("Repository across a server restart", .serialized, .needs("SQUALL_DATABASE_URL"))
struct RepositoryReconnectDisruptiveTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `scripts/services restart postgres`, acting on the shared servers when SQUALL_SERVICES_DIR says so.
    static func restartPostgres() throws {
        let script = repositoryRoot.appendingPathComponent("scripts/services")
        try #require(FileManager.default.isExecutableFile(atPath: script.path), "\(script.path) is missing")
        let process = Process()
        process.executableURL = script
        process.arguments = ["restart", "postgres"]
        process.currentDirectoryURL = repositoryRoot
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "scripts/services restart postgres failed")
    }

    @Test("after PostgreSQL restarts, the next operation reconnects and succeeds")
    func reconnectAfterRestart() async throws {
        try await TestDatabase.withRepository { repository, _ in
            _ = try await repository.submit(batchName: "restart", manifest: .text(csvManifest(count: 10)))
            #expect(try await repository.claim(limit: 2, lease: .seconds(60)).count == 2)

            try Self.restartPostgres()

            // A read is idempotent: retried on a new connection, it succeeds at once.
            let status = try await repository.status(batch: "restart")[0]
            #expect(status.count(.pending) == 8)
            #expect(status.count(.queued) == 2)

            try Self.restartPostgres()

            // A claim is not retried blindly: it fails retryably or, if the connection noticed the
            // restart before the call, succeeds on the new connection. Either way the next one works.
            var claimed = 0
            do {
                claimed += try await repository.claim(limit: 3, lease: .seconds(60)).count
            } catch let error as PostgresError {
                #expect(error.isRetryable, "\(error)")
            }
            claimed += try await repository.claim(limit: 3, lease: .seconds(60)).count
            #expect(claimed >= 3)
            let after = try await repository.status(batch: "restart")[0]
            #expect(after.count(.queued) == 2 + Int64(claimed))
        }
    }
}
