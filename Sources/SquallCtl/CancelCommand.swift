import ArgumentParser
import Foundation
import Logging
import SquallCore

/// `squallctl cancel --batch B`: cancels every job of a batch not settled yet, and tells the Consumers.
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel every pending, queued or running job of a batch.",
        discussion: """
            The jobs are marked cancelled in PostgreSQL (the truth: a result arriving later cannot \
            move them), then a cancel order is broadcast on squall.control so Consumers stop running \
            transfers within seconds and abort their multipart uploads. Without SQUALL_AMQP_URL, or \
            when the broker cannot be reached, only the first step happens and a warning says so: \
            running transfers then go on to their end, and their results are ignored. Cancelled jobs \
            can be put back with reset-failed.
            """)

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("batch"), help: "The batch name.")
    var batch: String

    func run() async throws {
        var cancelledBatch: CancelledBatch?
        try await RepositoryAccess.run(common, command: "cancel") { repository in
            let cancelled = try await repository.cancel(batch: batch)
            cancelledBatch = cancelled
            print(
                "cancelled \(cancelled.cancelledJobs) job\(cancelled.cancelledJobs == 1 ? "" : "s") of batch \(cancelled.name) (id \(cancelled.id))"
            )
        }
        guard let cancelledBatch else { return }
        await notifyConsumers(batchID: cancelledBatch.id)
    }

    /// Broadcasts the cancel order; a failure is a warning, since the database already holds the cancel.
    private func notifyConsumers(batchID: Int64) async {
        let notRunning = "running transfers of this batch go on to their end; their results are ignored"
        guard
            let configuration = try? common.resolve(
                environment: ProcessInfo.processInfo.environment, defaultNodeName: ServiceLauncher.defaultNodeName()),
            let url = configuration.amqpURL
        else {
            RepositoryAccess.printError(
                "squallctl cancel: warning: SQUALL_AMQP_URL is not set, Consumers were not told; \(notRunning)")
            return
        }
        let broker = Broker(
            configuration: Broker.Configuration(
                url: url, topology: configuration.topology, readyTimeout: .seconds(10), connectTimeout: .seconds(5)),
            logger: Logger(label: "squallctl"))
        do {
            try await broker.start()
            let order = ControlMessage(command: .cancelBatch(batchID: batchID), issuedAt: .now())
            try await broker.publish(
                MessageCodec.encode(order), to: .exchange(configuration.topology.control), persistent: false)
            print("told the Consumers to stop the batch's running transfers")
        } catch .publishReturned {
            // The control exchange is a fanout to one queue per running Consumer: none is bound.
            print("no Consumer is running; nothing to stop")
        } catch {
            RepositoryAccess.printError(
                "squallctl cancel: warning: could not tell the Consumers (\(error)); \(notRunning)")
        }
        await broker.shutdown()
    }
}
