import ArgumentParser
import SquallCore

/// `squallctl status [BATCH] [--json]`: jobs per state and bytes, per batch.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show jobs per state and bytes moved, for one batch or every batch.")

    @OptionGroup var common: CommonOptions

    @Argument(help: "The batch name; every batch when omitted.")
    var batch: String?

    @Flag(name: .customLong("json"), help: "Print JSON (stable field names) instead of a table.")
    var json = false

    func run() async throws {
        try await RepositoryAccess.run(common, command: "status") { repository in
            let statuses = try await repository.status(batch: batch)
            if json {
                try RepositoryAccess.printJSON(statuses)
                return
            }
            let states = JobState.allCases
            var table = TextTable(
                ["BATCH", "ID", "JOBS"] + states.map { $0.rawValue.uppercased() } + ["BYTES", "FINISHED"],
                rightAligned: Set(1...(states.count + 3)))
            for status in statuses {
                let bytes =
                    status.bytesTotal > 0
                    ? "\(formatBytes(status.bytesDone)) / \(formatBytes(status.bytesTotal))"
                    : formatBytes(status.bytesDone)
                let finished = status.cancelledAt != nil ? "cancelled" : status.finishedAt != nil ? "yes" : "no"
                table.add(
                    [status.name, String(status.id), String(status.jobCount)]
                        + states.map { String(status.count($0)) } + [bytes, finished])
            }
            print(statuses.isEmpty ? "no batches" : table.rendered)
        }
    }
}
