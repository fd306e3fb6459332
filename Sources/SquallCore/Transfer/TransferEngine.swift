import Logging

/// Copies one source to one destination: HTTP(S), S3 or local file to S3 or a local file, streaming in
/// parts, retrying, verifying, resuming (see docs/transfer.md).
///
/// One engine serves many concurrent transfers (the Consumer's jobs in flight); its libcurl work runs
/// on its own threads, never on Swift's cooperative pool. Cancelling the calling task stops the
/// transfer promptly and aborts its multipart upload.
public final class TransferEngine: Sendable {
    public let s3: S3Configuration
    public let options: TransferOptions
    let logger: Logger

    public init(s3: S3Configuration, options: TransferOptions = TransferOptions(), logger: Logger) {
        self.s3 = s3
        self.options = options
        self.logger = logger
    }

    /// Runs `request` to the end and reports how it ended, or throws why it failed.
    ///
    /// `events` is called from the engine's threads, at most once per `options.progressInterval` for progress.
    public func transfer(
        _ request: TransferRequest, events: @escaping @Sendable (TransferEvent) -> Void = { _ in }
    ) async throws(TransferError) -> TransferReport {
        throw TransferError(code: "not_built", message: "the transfer engine is not built yet", isPermanent: true)
    }
}
