import ArgumentParser
import SquallCore

/// `squallctl migrate`: brings the database schema up to date.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the database migrations not applied yet (safe to run while services start).")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        try await RepositoryAccess.run(common, command: "migrate") { repository in
            let applied = try await repository.migrate()
            print(
                applied.isEmpty
                    ? "schema is up to date (version \(Migrations.latestVersion))"
                    : "applied migration\(applied.count == 1 ? "" : "s") \(applied.map(String.init).joined(separator: ", "))"
            )
        }
    }
}
