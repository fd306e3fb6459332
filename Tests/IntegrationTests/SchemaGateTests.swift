import Foundation
import Logging
import SquallCore
import Synchronization
import Testing

@testable import SquallTestSupport

/// `ServiceLoop.awaitSchema`, the wait every database service makes before it takes work, against a
/// real PostgreSQL.
@Suite("Waiting for the schema", .needs("SQUALL_DATABASE_URL"))
struct SchemaGateTests {
    @Test("on a database never migrated the wait goes on, and ends within a recheck of the migration")
    func waitsUntilMigrated() async throws {
        try await TestDatabase.with(migrated: false) { url in
            let repository = JobRepository(url: url, actor: "test")
            defer { Task { await repository.close() } }
            let done = Flag()
            let waiter = Task {
                let passed = await ServiceLoop.awaitSchema(
                    repository, logger: Logger(label: "test"), recheck: .milliseconds(50))
                done.raise()
                return passed
            }
            try await Task.sleep(for: .milliseconds(600))
            #expect(!done.isRaised, "the wait ended on an empty database")
            let migrator = JobRepository(url: url, actor: "migrator")
            try await migrator.migrate()
            await migrator.close()
            #expect(await waiter.value)
        }
    }

    @Test("a schema newer than the build passes at once")
    func newerSchemaPasses() async throws {
        try await TestDatabase.with { url in
            _ = try rawQuery(
                url, "INSERT INTO schema_migrations (version, name) VALUES (\(Migrations.latestVersion + 1), 'later')")
            let repository = JobRepository(url: url, actor: "test")
            defer { Task { await repository.close() } }
            #expect(try await repository.schemaVersion() == Migrations.latestVersion + 1)
            let started = ContinuousClock.now
            #expect(await ServiceLoop.awaitSchema(repository, logger: Logger(label: "test"), recheck: .seconds(30)))
            #expect(ContinuousClock.now - started < .seconds(5), "it waited for a recheck")
        }
    }

    @Test("a schema one version behind keeps the wait going")
    func olderSchemaWaits() async throws {
        try await TestDatabase.with { url in
            _ = try rawQuery(url, "DELETE FROM schema_migrations WHERE version = \(Migrations.latestVersion)")
            #expect(try await Self.stillWaitingAfterHalfASecond(url), "the wait passed a schema one version behind")
        }
    }

    @Test("another tool's schema_migrations, whose versions would read as far newer, keeps the wait going")
    func foreignBookkeepingWaits() async throws {
        try await TestDatabase.with(migrated: false) { url in
            _ = try rawQuery(
                url,
                "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (20240101, false)"
            )
            #expect(
                try await Self.stillWaitingAfterHalfASecond(url),
                "the wait passed a database whose schema_migrations is not Squall's")
        }
    }

    /// Starts the wait on `url`'s database, and cancels it after 500 ms: true when it had not passed by then.
    static func stillWaitingAfterHalfASecond(_ url: DatabaseURL) async throws -> Bool {
        let repository = JobRepository(url: url, actor: "test")
        defer { Task { await repository.close() } }
        let waiter = Task {
            await ServiceLoop.awaitSchema(repository, logger: Logger(label: "test"), recheck: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(500))
        waiter.cancel()
        return await waiter.value == false
    }
}

/// A flag one task raises and another reads.
private final class Flag: Sendable {
    private let raised = Mutex(false)
    func raise() { raised.withLock { $0 = true } }
    var isRaised: Bool { raised.withLock { $0 } }
}
