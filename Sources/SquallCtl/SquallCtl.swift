import ArgumentParser
import Foundation
import SquallCore

@main
struct SquallCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squallctl",
        abstract: "Operate Squall: submit batches, follow them, reset failed jobs, copy one target.",
        discussion: """
            Connection settings come from the environment (SQUALL_DATABASE_URL, SQUALL_AMQP_URL, \
            SQUALL_S3_*, AWS_*) or from the flags of each subcommand; the flag wins.
            """,
        subcommands: [
            ShowConfiguration.self, MigrateCommand.self, SubmitCommand.self, StatusCommand.self, JobsCommand.self,
            ResetFailedCommand.self, CancelCommand.self, NodesCommand.self, WatchCommand.self, WaitCommand.self,
            CopyCommand.self,
        ]
    )
}

/// Prints the configuration the other commands would use, secrets masked.
struct ShowConfiguration: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print the resolved configuration (secrets masked) and exit."
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        do {
            let configuration = try common.resolve(
                environment: ProcessInfo.processInfo.environment, defaultNodeName: ServiceLauncher.defaultNodeName())
            print(configuration.description.split(separator: " ").joined(separator: "\n"))
        } catch {
            throw ValidationError(error.description)
        }
    }
}
