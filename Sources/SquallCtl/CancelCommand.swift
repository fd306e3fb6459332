import ArgumentParser
import Foundation
import Logging
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
            await broadcast(.cancelBatch(batchID: cancelled.id))
        }
    }

    /// Tells every Consumer through `squall.control`, so running transfers stop within seconds and queued
    /// jobs are not started. Best effort: the database already says cancelled, and a result a Consumer
    /// sends for a job that ran on cannot move a settled row.
    private func broadcast(_ command: ControlMessage.Command) async {
        guard
            let configuration = try? common.resolve(
                environment: ProcessInfo.processInfo.environment, defaultNodeName: ServiceLauncher.defaultNodeName()),
            let url = configuration.amqpURL
        else {
            RepositoryAccess.printError(
                "squallctl cancel: SQUALL_AMQP_URL is not set: running transfers are not told to stop (they finish)")
            return
        }
        let broker = ServiceLauncher.broker(configuration, url: url, logger: Logger(label: "squallctl"))
        do {
            try await broker.start()
            try await broker.publish(
                MessageCodec.encode(ControlMessage(command: command, issuedAt: .now())),
                to: .exchange(broker.topology.control))
            print("told the Consumers to stop its running and queued jobs")
        } catch {
            RepositoryAccess.printError("squallctl cancel: the cancel order was not broadcast: \(error)")
        }
        await broker.shutdown()
    }
}
