import ArgumentParser
import SquallCore

/// `squallctl reset-failed --batch B`: gives a batch's failed and cancelled jobs another go.
struct ResetFailedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset-failed",
        abstract: "Put a batch's failed and cancelled jobs back to pending, with a fresh allowance of attempts.")

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("batch"), help: "The batch name.")
    var batch: String

    func run() async throws {
        try await RepositoryAccess.run(common, command: "reset-failed") { repository in
            let count = try await repository.resetFailed(batch: batch)
            print("reset \(count) job\(count == 1 ? "" : "s") of batch \(batch) to pending")
        }
    }
}
