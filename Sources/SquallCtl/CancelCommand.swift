import ArgumentParser
import SquallCore

/// `squallctl cancel --batch B`: cancels every job of a batch not settled yet.
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel every pending, queued or running job of a batch.",
        discussion: "Cancelled jobs can be put back with reset-failed.")

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("batch"), help: "The batch name.")
    var batch: String

    func run() async throws {
        try await RepositoryAccess.run(common, command: "cancel") { repository in
            let cancelled = try await repository.cancel(batch: batch)
            print(
                "cancelled \(cancelled.cancelledJobs) job\(cancelled.cancelledJobs == 1 ? "" : "s") of batch \(cancelled.name) (id \(cancelled.id))"
            )
        }
    }
}
