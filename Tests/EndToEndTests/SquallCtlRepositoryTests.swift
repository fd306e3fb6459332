import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// `squallctl`'s batch commands as an operator runs them, against the real PostgreSQL.
@Suite(
    "squallctl batch commands",
    .enabled(
        if: ProcessInfo.processInfo.environment["SQUALL_REQUIRE_SERVICES"] == "1"
            || !(ProcessInfo.processInfo.environment["SQUALL_DATABASE_URL"] ?? "").isEmpty,
        "skipped: SQUALL_DATABASE_URL not set (run scripts/services up)"))
struct SquallCtlRepositoryTests {
    /// Runs `body` with the environment of a fresh database, dropped afterwards.
    func withDatabase(_ body: ([String: String]) async throws -> Void) async throws {
        let text = try #require(
            ProcessInfo.processInfo.environment["SQUALL_DATABASE_URL"], "SQUALL_DATABASE_URL is not set")
        let server = try DatabaseURL(parsing: text)
        let name = DatabaseAdministration.randomName()
        var url = try await DatabaseAdministration.createDatabase(named: name, on: server)
        defer { Task { try? await DatabaseAdministration.dropDatabase(named: name, on: server) } }
        url.database = name
        var urlText = "postgres://"
        if let user = url.user { urlText += user + (url.password.map { ":\($0.revealed)" } ?? "") + "@" }
        urlText += "\(url.host):\(url.port)/\(name)"
        if let sslMode = url.sslMode { urlText += "?sslmode=\(sslMode)" }
        try await body(["SQUALL_DATABASE_URL": urlText])
    }

    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("manifest-\(UUID().uuidString).csv")
            .path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("on a database never migrated, submit and status fail naming `squallctl migrate`, and then work after it")
    func unmigratedDatabaseNamesTheFix() async throws {
        try await withDatabase { environment in
            let squallctl = try BuiltExecutable("squallctl")
            let path = try write("source,destination\nhttps://example.com/1,s3://good-bucket/1\n")
            defer { try? FileManager.default.removeItem(atPath: path) }
            for arguments in [["status"], ["submit", "--batch", "early", path]] {
                let run = try squallctl.run(arguments, environment: environment)
                #expect(run.status == 1, "\(arguments): \(run.output)")
                #expect(
                    run.output.contains(
                        "squallctl \(arguments[0]): the database has no Squall schema yet: run `squallctl migrate` first"
                    ),
                    "\(run.output)")
            }
            #expect(try squallctl.run(["migrate"], environment: environment).status == 0)
            let submit = try squallctl.run(["submit", "--batch", "early", path], environment: environment)
            #expect(submit.status == 0, "\(submit.output)")
            #expect(!submit.output.contains("squallctl migrate"))
        }
    }

    @Test("on a database holding another tool's schema_migrations, migrate and status say it is not Squall's")
    func foreignBookkeepingNamed() async throws {
        try await withDatabase { environment in
            try psql(
                "CREATE TABLE schema_migrations (version character varying PRIMARY KEY)",
                url: try DatabaseURL(parsing: try #require(environment["SQUALL_DATABASE_URL"])))
            let squallctl = try BuiltExecutable("squallctl")
            for command in ["migrate", "status"] {
                let run = try squallctl.run([command], environment: environment)
                #expect(run.status == 1, "\(command): \(run.output)")
                #expect(
                    run.output.contains(
                        "the database already has a schema_migrations table that is not Squall's (columns: version character varying)"
                    ), "\(command): \(run.output)")
                #expect(!run.output.contains("run `squallctl migrate` first"), "\(command): \(run.output)")
            }
        }
    }

    /// Runs one statement with psql, its password passed in the environment, not the command line.
    func psql(_ sql: String, url: DatabaseURL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]
        var environment = ProcessInfo.processInfo.environment
        environment["PGHOST"] = url.host
        environment["PGPORT"] = "\(url.port)"
        environment["PGUSER"] = url.user
        environment["PGPASSWORD"] = url.password?.revealed
        environment["PGDATABASE"] = url.database
        process.environment = environment
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "psql failed for: \(sql)")
    }

    @Test("a manifest whose line 4 has s3://Bad_Bucket/x is refused naming line 4, and status shows no job of it")
    func badManifest() async throws {
        try await withDatabase { environment in
            let squallctl = try BuiltExecutable("squallctl")
            let migrate = try squallctl.run(["migrate"], environment: environment)
            #expect(migrate.status == 0, "\(migrate.output)")

            let path = try write(
                """
                source,destination
                https://example.com/1,s3://good-bucket/1
                https://example.com/2,s3://good-bucket/2
                https://example.com/3,s3://Bad_Bucket/x
                https://example.com/4,s3://good-bucket/4

                """)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let submit = try squallctl.run(["submit", "--batch", "broken", path], environment: environment)
            #expect(submit.status != 0)
            #expect(
                submit.output.contains("manifest line 4: destination \"s3://Bad_Bucket/x\": bucket names are lowercase")
            )
            #expect(submit.output.contains("nothing was submitted"))

            let status = try squallctl.run(["status", "--json"], environment: environment)
            #expect(status.status == 0, "\(status.output)")
            let batches = try JSONDecoder().decode([BatchStatus].self, from: Data(status.output.utf8))
            #expect(!batches.contains { $0.name == "broken" })
            let one = try squallctl.run(["status", "broken"], environment: environment)
            #expect(one.status != 0)
            #expect(one.output.contains("batch \"broken\" does not exist"))
        }
    }

    @Test("submit from standard input, then status, jobs, cancel, reset-failed and nodes")
    func batchLifecycle() async throws {
        try await withDatabase { environment in
            let squallctl = try BuiltExecutable("squallctl")
            #expect(try squallctl.run(["migrate"], environment: environment).status == 0)

            var manifest = "source,destination,priority\n"
            for index in 0..<50 { manifest += "https://example.com/\(index),s3://out-bucket/\(index),\(index % 3)\n" }
            let path = try write(manifest)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let process = Process()
            process.executableURL = squallctl.url
            process.arguments = ["submit", "--batch", "nightly", "-"]
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            process.waitUntilExit()
            let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus == 0)
            #expect(printed.contains("submitted batch nightly (id 1): 50 jobs"))

            let status = try squallctl.run(["status", "nightly"], environment: environment)
            #expect(status.status == 0)
            #expect(status.output.contains("PENDING"))
            #expect(status.output.split(separator: "\n").count == 2)

            let jobs = try squallctl.run(
                ["jobs", "--batch", "nightly", "--state", "pending", "--limit", "3", "--json"], environment: environment
            )
            #expect(jobs.status == 0, "\(jobs.output)")
            let records = try JSONDecoder().decode([JobRecord].self, from: Data(jobs.output.utf8))
            #expect(records.map(\.id) == [1, 2, 3])

            let cancel = try squallctl.run(["cancel", "--batch", "nightly"], environment: environment)
            #expect(cancel.output.contains("cancelled 50 jobs of batch nightly (id 1)"))
            let reset = try squallctl.run(["reset-failed", "--batch", "nightly"], environment: environment)
            #expect(reset.output.contains("reset 50 jobs of batch nightly to pending"))
            let json = try squallctl.run(["status", "nightly", "--json"], environment: environment)
            let batch = try #require(try JSONDecoder().decode([BatchStatus].self, from: Data(json.output.utf8)).first)
            #expect(batch.count(.pending) == 50)

            let nodes = try squallctl.run(["nodes", "--json"], environment: environment)
            #expect(nodes.status == 0)
            #expect(
                nodes.output.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || nodes.output.contains("[]"))

            let missing = try squallctl.run(["cancel", "--batch", "nope"], environment: environment)
            #expect(missing.status != 0)
            #expect(missing.output.contains("batch \"nope\" does not exist"))
        }
    }
}
