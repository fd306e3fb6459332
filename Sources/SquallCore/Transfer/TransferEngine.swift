import Foundation
import Logging

/// Copies one source to one destination: HTTP(S), S3 or local file to S3 or a local file, streaming in
/// parts, retrying, verifying, resuming (see docs/transfer.md).
///
/// One engine serves many concurrent transfers (the Consumer's jobs in flight); its libcurl work runs
/// on its own thread (``CurlMulti``), never on Swift's cooperative pool. Cancelling the calling task
/// stops the transfer promptly and aborts its multipart upload.
public final class TransferEngine: Sendable {
    public let s3: S3Configuration
    public let options: TransferOptions
    let logger: Logger
    let multi: CurlMulti
    private let files = DedicatedThread(name: "squall.files")

    public init(s3: S3Configuration, options: TransferOptions = TransferOptions(), logger: Logger) {
        self.s3 = s3
        self.options = options
        self.logger = logger
        multi = CurlMulti(s3RequestLimit: options.maxS3Requests)
    }

    deinit {
        multi.shutdown()
        files.shutdown()
    }

    /// The engine's libcurl thread as a task executor: tasks that prefer it run their Swift code
    /// between libcurl's turns, so a finished request resumes its caller without a thread hop.
    public var taskExecutor: any TaskExecutor { multi }

    /// Runs `request` to the end and reports how it ended, or throws why it failed.
    ///
    /// `events` is called from the engine's threads, at most once per `options.progressInterval` for progress.
    public func transfer(
        _ request: TransferRequest, events: @escaping @Sendable (TransferEvent) -> Void = { _ in }
    ) async throws(TransferError) -> TransferReport {
        if case .http = request.destination {
            throw TransferError(
                code: "bad_destination", message: "\(request.destination): an HTTP URL cannot be a destination",
                isPermanent: true)
        }
        if let expected = request.expectedSHA256 {
            guard ResumableSHA256.isDigestHex(expected) else {
                throw TransferError(
                    code: "bad_checksum", message: "expected sha256 \"\(expected)\" is not 64 lowercase hex digits",
                    isPermanent: true)
            }
        }
        let copy = Copy(engine: self, request: request, events: events)
        var restarts = 0
        while true {
            do {
                return try await copy.run()
            } catch let error as Copy.Restart {
                // The source broke where it cannot be continued with a Range: start again from byte 0.
                restarts += 1
                guard restarts < options.maxAttempts else {
                    throw TransferError(
                        code: error.reason,
                        message: "\(request.source): gave up after \(restarts) attempts (last: \(error.detail))",
                        isPermanent: false)
                }
                events(.retrying(reason: error.reason, attempt: restarts))
                try await copy.backoff(afterAttempt: restarts)
            } catch let error as TransferError {
                throw error
            } catch {
                throw TransferError(code: "internal", message: "\(error)", isPermanent: false)
            }
        }
    }

    /// Creates `bucket` (for tests and for `squallctl cp` into a fresh emulator); one already ours is fine.
    public func createBucket(_ bucket: String) async throws(TransferError) {
        try await s3Client(onRetry: { _, _ in }).createBucket(bucket)
    }

    /// The object's size and `x-amz-meta-*` metadata, or nil when there is none.
    public func headObject(
        bucket: String, key: String
    ) async throws(TransferError) -> (size: Int64, metadata: [String: String])? {
        try await s3Client(onRetry: { _, _ in }).head(bucket: bucket, key: key).map { ($0.size, $0.metadata) }
    }

    func s3Client(onRetry: @escaping @Sendable (String, Int) -> Void) -> S3Client {
        var client = S3Client(
            configuration: s3, multi: multi,
            retry: RetryPolicy(maxAttempts: max(options.maxAttempts, 1), maxDelay: options.maxBackoff),
            timeouts: (
                Int(options.connectTimeout.components.seconds * 1000), options.lowSpeedLimit,
                Int(options.lowSpeedTime.components.seconds)
            ))
        client.onRetry = onRetry
        return client
    }

    /// Runs blocking file work on the engine's file thread.
    func onFileThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await files.run(body)
    }
}
