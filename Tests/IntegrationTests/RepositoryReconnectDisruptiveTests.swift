import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// The repository across a PostgreSQL restart. It stops the server for a moment, so it runs alone,
/// after the other suites (`scripts/test` runs `…DisruptiveTests` suites last). While developing,
/// point SQUALL_SERVICES_DIR, SQUALL_PG_PORT and SQUALL_DATABASE_URL at a private server.
@Suite("Repository across a server restart", .serialized, .needs("SQUALL_DATABASE_URL"))
struct RepositoryReconnectDisruptiveTests {
    /// `scripts/services restart postgres`, acting on whichever servers SQUALL_SERVICES_DIR names.
    ///
    /// Spawned with no inherited descriptors (``BrokerFixture/services(_:)``): with Foundation's
    /// `Process`, the restarted postmaster would inherit the pipe and the wait would never end.
    static func restartPostgres() async throws {
        try await BrokerFixture.services("restart", "postgres")
    }

    @Test("after PostgreSQL restarts, the next operation reconnects and succeeds")
    func reconnectAfterRestart() async throws {
        try await TestDatabase.withRepository { repository, _ in
            _ = try await repository.submit(batchName: "restart", manifest: .text(csvManifest(count: 10)))
            #expect(try await repository.claim(limit: 2, lease: .seconds(60)).count == 2)

            try await Self.restartPostgres()

            // A read is idempotent: retried on a new connection, it succeeds at once.
            let status = try await repository.status(batch: "restart")[0]
            #expect(status.count(.pending) == 8)
            #expect(status.count(.queued) == 2)

            try await Self.restartPostgres()

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
