import ArgumentParser
import SquallCore

@main
struct ObserverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squall-observer",
        abstract: "Records progress packets and node heartbeats in PostgreSQL; serves the status API and dashboard.",
        discussion: """
            Every setting is an environment variable and a flag; the flag wins. SIGTERM or SIGINT \
            stops the service gracefully.
            """
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let (_, logger) = ServiceLauncher.configure(common, role: .observer)
        try await ServiceLauncher.run([IdleService()], logger: logger)
    }
}
