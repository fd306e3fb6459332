import ArgumentParser
import SquallCore

/// `squallctl nodes [--json]`: the swarm as the node registry knows it.
struct NodesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodes", abstract: "List the nodes of the swarm: role, host, when last seen, current jobs.")

    @OptionGroup var common: CommonOptions

    @Flag(name: .customLong("json"), help: "Print JSON (stable field names) instead of a table.")
    var json = false

    func run() async throws {
        try await RepositoryAccess.run(common, command: "nodes") { repository in
            let nodes = try await repository.nodes()
            if json {
                try RepositoryAccess.printJSON(nodes)
                return
            }
            let now = Timestamp.now()
            var table = TextTable(["NODE", "ROLE", "HOST", "LAST SEEN", "JOBS", "MOVED"], rightAligned: [3, 4, 5])
            for node in nodes {
                let age = max(0, now.milliseconds - node.lastSeen.milliseconds) / 1000
                table.add([
                    node.name, node.role.rawValue, node.host, "\(age)s ago", String(node.currentJobs.count),
                    formatBytes(node.bytesMoved),
                ])
            }
            print(nodes.isEmpty ? "no nodes" : table.rendered)
        }
    }
}
