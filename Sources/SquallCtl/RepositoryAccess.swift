import ArgumentParser
import Foundation
import Logging
import SquallCore

/// What the database subcommands share: opening the repository, reporting errors, printing.
enum RepositoryAccess {
    /// Resolves the settings and opens the job repository, or exits 64 naming the bad setting.
    static func open(_ common: CommonOptions, command: String) throws -> JobRepository {
        let configuration: SquallConfiguration
        let url: DatabaseURL
        do {
            configuration = try common.resolve(
                environment: ProcessInfo.processInfo.environment, defaultNodeName: ServiceLauncher.defaultNodeName())
            url = try configuration.requireDatabaseURL()
        } catch {
            printError("squallctl \(command): \(error)")
            throw ExitCode(64)
        }
        SquallLogHandler.bootstrap(format: configuration.logFormat, level: .warning)
        return JobRepository(
            url: url, actor: "squallctl@\(ProcessInfo.processInfo.hostName)",
            backoff: ReconnectBackoff(giveUpAfter: .seconds(10)), logger: Logger(label: "squallctl"))
    }

    /// Runs `body` with the repository; errors go to standard error with a non-zero exit status.
    static func run(
        _ common: CommonOptions, command: String, _ body: (JobRepository) async throws -> Void
    ) async throws {
        let repository = try open(common, command: command)
        do {
            try await body(repository)
            await repository.close()
        } catch let exit as ExitCode {
            await repository.close()
            throw exit
        } catch {
            let hint = await schemaHint(for: error, repository)
            await repository.close()
            let status: Int32
            switch error {
            case is ManifestError, is ManifestReadError: status = 65
            case let error as PostgresError where error.kind == .connection: status = 69
            default: status = 1
            }
            printError("squallctl \(command): \(error)")
            if let hint { printError("squallctl \(command): \(hint)") }
            throw ExitCode(status)
        }
    }

    /// What to do when `error` names a table or column the database lacks because its schema is
    /// older than this squallctl, or is not Squall's: nil when the error is another, or the schema
    /// is current.
    private static func schemaHint(for error: any Error, _ repository: JobRepository) async -> String? {
        guard let error = error as? PostgresError, error.isMissingSchemaObject else { return nil }
        let version: Int
        do {
            version = try await repository.schemaVersion()
        } catch {
            // Another tool's schema_migrations: the version check says whose table it is not.
            guard let error = error as? PostgresError, error.kind == .unexpectedResult else { return nil }
            return error.message
        }
        guard version < Migrations.latestVersion else { return nil }
        return version == 0
            ? "the database has no Squall schema yet: run `squallctl migrate` first"
            : "the database schema is at version \(version), this squallctl needs \(Migrations.latestVersion): run `squallctl migrate` first"
    }

    static func printError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Stable JSON for scripts: sorted keys, one document, a final newline.
    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
    }
}

/// A plain text table with aligned columns; numeric columns are right-aligned.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []
    var rightAligned: Set<Int> = []

    init(_ headers: [String], rightAligned: Set<Int> = []) {
        self.headers = headers
        self.rightAligned = rightAligned
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    var rendered: String {
        let all = [headers] + rows
        let widths = headers.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.indices.map { column in
                let padding = String(repeating: " ", count: widths[column] - row[column].count)
                return rightAligned.contains(column) ? padding + row[column] : row[column] + padding
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }.joined(separator: "\n")
    }
}

/// Byte counts as people read them.
func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}
