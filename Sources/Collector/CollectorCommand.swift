import ArgumentParser
import SquallCore

@main
struct CollectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squall-collector",
        abstract: "Settles job results in PostgreSQL and notices when a batch is finished.",
        discussion: """
            Every setting is an environment variable and a flag; the flag wins. SIGTERM or SIGINT \
            stops the service gracefully.
            """
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let (_, logger) = ServiceLauncher.configure(common, role: .collector)
        try await ServiceLauncher.run([IdleService()], logger: logger)
    }
}
