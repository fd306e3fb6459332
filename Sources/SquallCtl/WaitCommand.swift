import ArgumentParser
import Foundation
import SquallCore

/// `squallctl wait BATCH [--timeout S]`: blocks until the batch settles; the exit status says how.
struct WaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until every job of a batch is settled.",
        discussion: """
            Exit status: 0 when every job is done or skipped, 1 when the batch is complete with any job \
            failed or cancelled (ready for reset-failed), 2 when --timeout passes first, 64 for an unknown \
            batch or a bad setting. A database that is briefly unreachable does not end the wait.
            """)

    @OptionGroup var common: CommonOptions

    @Argument(help: "The batch name.")
    var batch: String

    @Option(name: .customLong("timeout"), help: "Give up after this many seconds (exit 2); default: wait forever.")
    var timeout: Double?

    @Option(name: .customLong("interval"), help: "Seconds between status polls, default 1.")
    var interval: Double = 1

    func validate() throws {
        if let timeout, timeout < 0 { throw ValidationError("--timeout \(timeout) must be ≥ 0") }
        guard interval > 0 else { throw ValidationError("--interval \(interval) must be above 0") }
    }

    func run() async throws {
        var code: Int32 = 0
        try await RepositoryAccess.run(common, command: "wait") { repository in
            let verdict = try await BatchFollowing.follow(
                batch, repository: repository, interval: interval, timeout: timeout)
            code = verdict.exitCode ?? 2
            let line: String
            switch verdict {
            case .succeeded: line = "batch \(batch): every job done or skipped"
            case .failed: line = "batch \(batch): complete with failed or cancelled jobs"
            case .timedOut, .keepWaiting: line = "batch \(batch): not complete after \(timeout ?? 0)s"
            }
            RepositoryAccess.printError(line)
        }
        if code != 0 { throw ExitCode(code) }
    }
}

/// What `wait` and `watch` share: checking the batch exists, then polling its status.
enum BatchFollowing {
    static func follow(
        _ batch: String, repository: JobRepository, interval: Double, timeout: Double?,
        show: (BatchSnapshot) -> Void = { _ in }
    ) async throws -> WaitVerdict {
        do {
            _ = try await repository.status(batch: batch)
        } catch let error as JobRepositoryError {
            RepositoryAccess.printError("squallctl: \(error)")
            throw ExitCode(64)
        }
        return try await BatchPolling.wait(
            every: .milliseconds(Int64(interval * 1000)), timeout: timeout.map { .milliseconds(Int64($0 * 1000)) },
            snapshot: {
                guard let status = try await repository.status(batch: batch).first else {
                    throw JobRepositoryError.unknownBatch(batch)
                }
                return BatchSnapshot(status, at: .now())
            }, show: show,
            pollFailed: { error in RepositoryAccess.printError("squallctl: status failed, retrying: \(error)") })
    }
}
