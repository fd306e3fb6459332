import ArgumentParser
import SquallCore

/// `squallctl nodes [--json]`: the swarm as the node registry knows it.
struct NodesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodes", abstract: "List the nodes of the swarm: role, host, when last seen, current jobs.")

    @OptionGroup var common: CommonOptions

    @Flag(name: .customLong("json"), help: "Print JSON (stable field names) instead of a table.")
    var json = false

    @Option(
        name: .customLong("heartbeat-period"),
        help: "The nodes' heartbeat period in seconds; a node silent for 3 periods is shown lost, default 5.")
    var heartbeatPeriod: Double = 5

    func run() async throws {
        try await RepositoryAccess.run(common, command: "nodes") { repository in
            let nodes = try await repository.nodes()
            if json {
                try RepositoryAccess.printJSON(nodes)
                return
            }
            let now = Timestamp.now()
            let registry = NodeRegistryView(heartbeatPeriod: .milliseconds(Int64(max(heartbeatPeriod, 0.001) * 1000)))
            var table = TextTable(
                ["NODE", "ROLE", "STATE", "HOST", "LAST SEEN", "JOBS", "MOVED"], rightAligned: [4, 5, 6])
            for node in nodes {
                let age = max(0, now.milliseconds - node.lastSeen.milliseconds) / 1000
                let state = registry.state(lastHeard: node.lastSeen, currentJobs: node.currentJobs.count, at: now)
                table.add([
                    node.name, node.role.rawValue, state.rawValue, node.host, "\(age)s ago",
                    String(node.currentJobs.count), formatBytes(node.bytesMoved),
                ])
            }
            print(nodes.isEmpty ? "no nodes" : table.rendered)
        }
    }
}
