/// How one transfer attempt ended, as the Consumer saw it: the engine's report or its error.
///
/// It decides the outcome `JobLifecycle` is told about and fills the result packet: a report is
/// `done` or `skipped` with its bytes, ETag and SHA-256; an error is `failed` with its code and
/// message, except the engine's `cancelled`, which is `cancelled`.
public enum JobConclusion: Sendable, Equatable {
    case report(TransferReport)
    case error(TransferError)

    public init(_ result: Result<TransferReport, TransferError>) {
        switch result {
        case .success(let report): self = .report(report)
        case .failure(let error): self = .error(error)
        }
    }

    /// The outcome to feed `JobLifecycle.Event.transferFinished`.
    public var outcome: ResultPacket.Outcome {
        switch self {
        case .report(let report): report.outcome == .done ? .done : .skipped
        case .error(let error): error.code == TransferError.cancelled.code ? .cancelled : .failed
        }
    }

    /// The object's size, for `transferFinished` and the packet: 0 when nothing was copied.
    public var bytes: Int64 {
        switch self {
        case .report(let report): report.bytes
        case .error: 0
        }
    }

    /// The result packet for `job`, reporting `outcome` — the lifecycle's, which may differ from
    /// ``outcome`` (a failure that raced a cancel is reported `cancelled`).
    public static func resultPacket(
        for job: JobMessage, node: String, outcome: ResultPacket.Outcome, conclusion: JobConclusion?,
        duration: Duration, timestamp: Timestamp
    ) -> ResultPacket {
        var packet = ResultPacket(
            jobID: job.jobID, attempt: job.attempt, node: node, timestamp: timestamp, outcome: outcome, bytes: 0,
            durationMilliseconds: max(0, Self.milliseconds(duration)))
        switch (outcome, conclusion) {
        case (.done, .report(let report)?), (.skipped, .report(let report)?):
            packet.bytes = report.bytes
            packet.etag = report.etag
            packet.sha256 = report.sha256
        case (.failed, .error(let error)?):
            packet.errorCode = error.code
            packet.errorMessage = error.message
        case (.failed, _):
            packet.errorCode = "internal"
            packet.errorMessage = "the transfer ended without an error to report"
        case (.cancelled, _):
            packet.errorCode = TransferError.cancelled.code
            packet.errorMessage = "cancelled by an operator (squallctl cancel)"
        case (.done, _), (.skipped, _):
            break
        }
        return packet
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

extension JobMessage {
    /// The transfer this delivery of the job asks for; a location the engine cannot take is a permanent
    /// error naming it.
    public func transferRequest(redelivered: Bool) throws(TransferError) -> TransferRequest {
        TransferRequest(
            source: try TransferLocation.parse(source), destination: try TransferLocation.parse(destination),
            expectedSHA256: expectedSHA256, checksDestinationFirst: !mayWriteWithoutAsking(redelivered: redelivered))
    }
}
