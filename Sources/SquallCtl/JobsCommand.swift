import ArgumentParser
import SquallCore

extension JobState: ExpressibleByArgument {}

/// `squallctl jobs --batch B [--state S] [--json] [--limit N]`: lists a batch's jobs.
struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs", abstract: "List the jobs of a batch, optionally in one state.")

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("batch"), help: "The batch name.")
    var batch: String

    @Option(
        name: .customLong("state"),
        help: "Only jobs in this state (\(JobState.allCases.map(\.rawValue).joined(separator: ", "))).")
    var state: JobState?

    @Option(name: .customLong("limit"), help: "At most this many jobs, in id order.")
    var limit = 100

    @Flag(name: .customLong("json"), help: "Print JSON (stable field names) instead of a table.")
    var json = false

    func validate() throws {
        guard (1...1_000_000).contains(limit) else { throw ValidationError("--limit must be in 1...1000000") }
    }

    func run() async throws {
        try await RepositoryAccess.run(common, command: "jobs") { repository in
            let jobs = try await repository.jobs(batch: batch, state: state, limit: limit)
            if json {
                try RepositoryAccess.printJSON(jobs)
                return
            }
            var table = TextTable(
                ["ID", "STATE", "ATTEMPT", "BYTES", "SOURCE", "DESTINATION", "NODE", "ERROR"],
                rightAligned: [0, 2, 3])
            for job in jobs {
                let error = [job.errorCode, job.errorMessage].compactMap { $0 }.joined(separator: ": ")
                table.add([
                    String(job.id), job.state.rawValue, "\(job.attempt)/\(job.maxAttempts)",
                    job.size.map { "\(formatBytes(job.bytesDone)) / \(formatBytes($0))" } ?? formatBytes(job.bytesDone),
                    job.source, job.destination, job.node ?? "-", error.isEmpty ? "-" : error,
                ])
            }
            print(jobs.isEmpty ? "no jobs" : table.rendered)
        }
    }
}
