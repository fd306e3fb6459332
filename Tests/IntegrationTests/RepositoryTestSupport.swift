import CLibPQ
import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// A database of its own for one test, created on the shared server and dropped afterwards.
enum TestDatabase {
    static func serverURL() throws -> DatabaseURL {
        try DatabaseURL(parsing: try ServiceEnvironment.value("SQUALL_DATABASE_URL"))
    }

    /// Runs `body` with the URL of a fresh, migrated database.
    static func with<T>(migrated: Bool = true, _ body: (DatabaseURL) async throws -> T) async throws -> T {
        let server = try serverURL()
        let name = DatabaseAdministration.randomName()
        let url = try await DatabaseAdministration.createDatabase(named: name, on: server)
        do {
            if migrated {
                let repository = JobRepository(url: url, actor: "test")
                try await repository.migrate()
                await repository.close()
            }
            let value = try await body(url)
            try await DatabaseAdministration.dropDatabase(named: name, on: server)
            return value
        } catch {
            try? await DatabaseAdministration.dropDatabase(named: name, on: server)
            throw error
        }
    }

    /// Runs `body` with a repository on a fresh, migrated database.
    static func withRepository<T>(
        actor: String = "test", maxAttempts: Int32 = 5, _ body: (JobRepository, DatabaseURL) async throws -> T
    ) async throws -> T {
        try await with { url in
            let repository = JobRepository(url: url, actor: actor, maxAttempts: maxAttempts)
            defer { Task { await repository.close() } }
            return try await body(repository, url)
        }
    }
}

/// A CSV manifest of `count` jobs with distinct destinations.
func csvManifest(count: Int, bucket: String = "squall-test", priority: (Int) -> Int32 = { _ in 0 }) -> String {
    var text = "source,destination,priority\n"
    for index in 0..<count {
        text += "https://example.com/files/\(index).bin,s3://\(bucket)/out/\(index).bin,\(priority(index))\n"
    }
    return text
}

extension ProgressPacket {
    static func make(
        _ job: JobMessage, at milliseconds: Int64, bytes: Int64, total: Int64? = 1000, node: String = "consumer-1"
    ) -> ProgressPacket {
        ProgressPacket(
            jobID: job.jobID, attempt: job.attempt, node: node, timestamp: Timestamp(milliseconds: milliseconds),
            bytesDone: bytes, bytesTotal: total, bytesPerSecond: 1000, phase: .transferring)
    }
}

extension ResultPacket {
    static func make(
        _ job: JobMessage, _ outcome: Outcome, at milliseconds: Int64, bytes: Int64 = 1000, node: String = "consumer-1",
        errorCode: String? = nil
    ) -> ResultPacket {
        ResultPacket(
            jobID: job.jobID, attempt: job.attempt, node: node, timestamp: Timestamp(milliseconds: milliseconds),
            outcome: outcome, bytes: bytes, etag: outcome == .failed ? nil : "\"etag-\(job.jobID)\"",
            sha256: outcome == .failed ? nil : String(repeating: "a", count: 64), errorCode: errorCode,
            errorMessage: errorCode.map { "failed with \($0)" }, durationMilliseconds: 10)
    }
}

/// Reads rows with plain libpq, beside the repository, to check what it wrote (constant SQL only).
func rawQuery(_ url: DatabaseURL, _ sql: String) throws -> [[String?]] {
    let parameters = url.connectionParameters
    let connection = withCStrings(parameters.map(\.keyword)) { keywords in
        withCStrings(parameters.map(\.value)) { values in PQconnectdbParams(keywords, values, 0) }
    }
    defer { PQfinish(connection) }
    try #require(PQstatus(connection) == CONNECTION_OK, "\(String(cString: PQerrorMessage(connection)))")
    let result = PQexec(connection, sql)
    defer { PQclear(result) }
    let status = PQresultStatus(result)
    try #require(
        status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK,
        "\(sql): \(String(cString: PQerrorMessage(connection)))")
    return (0..<PQntuples(result)).map { row in
        (0..<PQnfields(result)).map { column in
            PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
        }
    }
}

/// The single value of a one-row, one-column query.
func rawValue(_ url: DatabaseURL, _ sql: String) throws -> String? {
    try rawQuery(url, sql).first?.first ?? nil
}
