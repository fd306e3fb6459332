/// One job's life inside a Consumer, from delivery to ack: a value-type state machine whose events return actions.
///
/// The rule it exists for: **the job message is acked only after its result is confirmed by the
/// broker** (at-least-once; a redelivered job whose object is already there costs one HEAD). A
/// job not yet started when shutdown begins is requeued at once for another Consumer; a started
/// one may finish within the grace period; past it the transfer is aborted and the job requeued
/// without a result, so the next attempt owns it.
///
/// One exception, for transfers longer than RabbitMQ's `consumer_timeout` (docs/services.md): when
/// the Consumer's ack deadline, set below that timeout, passes while the job still runs, the job is
/// *handed over to its database lease*: the message is acked (so the broker does not close the
/// channel and redeliver the same attempt to a second node) and from then on the lease, renewed by
/// progress packets, owns the retry: if this node dies, the Producer's rescue publishes the next
/// attempt, and the attempt number fences this one's late packets.
///
/// The Consumer's I/O code switches on the actions; nothing here does I/O, so every transition is
/// tested alone.
public struct JobLifecycle: Sendable {
    public enum State: Sendable, Equatable {
        /// Delivered (maybe only prefetched), not started.
        case received
        /// Started: the `starting` progress packet has been asked for; no bytes reported yet.
        case running
        /// Bytes are moving.
        case transferring
        /// A cancel arrived while the transfer ran; waiting for the aborted transfer to return.
        case cancelling
        /// The shutdown grace period ran out while the transfer ran; waiting for it to return.
        case abortingForShutdown
        /// The result packet was published; waiting for the broker's confirm before acking.
        case resultPendingConfirm(ResultPacket.Outcome)
        /// Final: the result was confirmed and the job message acked.
        case acked(ResultPacket.Outcome)
        /// Final: the job message was given back to the broker for another attempt.
        case requeued
        /// Final: the job was cancelled, its `cancelled` result confirmed and the message acked.
        case cancelled
        /// Final: the message was acked at the ack deadline and the job ended here without a
        /// confirmed result; its database lease expires and the Producer rescues it.
        case releasedToLease

        /// Whether nothing more will happen to this job here.
        public var isFinal: Bool {
            switch self {
            case .acked, .requeued, .cancelled, .releasedToLease: true
            default: false
            }
        }
    }

    public enum Event: Sendable, Equatable {
        /// The Consumer began work on the job.
        case started(at: ContinuousClock.Instant)
        /// The transfer reported bytes.
        case progress(bytesDone: Int64, bytesTotal: Int64?, at: ContinuousClock.Instant)
        /// The transfer returned, with how it ended and how many bytes the object holds.
        case transferFinished(ResultPacket.Outcome, bytes: Int64, at: ContinuousClock.Instant)
        /// The broker confirmed the result packet.
        case resultConfirmed
        /// The result packet was nacked, returned, or its connection dropped before the confirm.
        case resultPublishFailed
        /// `squallctl cancel` named this job or its batch.
        case cancelRequested
        /// SIGTERM: the Consumer stops taking work.
        case shutdownStarted
        /// The shutdown grace period is over.
        case shutdownGraceExpired
        /// The job has been held as long as the broker allows an unacked delivery, less a margin.
        case ackDeadlineReached
    }

    public enum Action: Sendable, Equatable {
        case publishProgress(ProgressPacket.Phase, bytesDone: Int64, bytesTotal: Int64?)
        case publishResult(ResultPacket.Outcome)
        case ackJob
        /// `basic.nack` with requeue: the broker redelivers the same attempt to a Consumer.
        case nackRequeueJob
        /// Stop the transfer promptly; the engine aborts any multipart upload.
        case abortTransfer
    }

    public private(set) var state: State = .received
    /// Whether the message was already acked at the ack deadline (the lease owns the job now).
    public private(set) var handedOverToLease = false
    private var throttle: ProgressThrottle

    public init(throttle: ProgressThrottle = ProgressThrottle()) {
        self.throttle = throttle
    }

    /// Applies `event` and returns what the Consumer must do, in order. An event that does not
    /// apply in the current state (a late progress report, a second cancel) changes nothing.
    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.received, .started(let now)):
            state = .running
            return [.publishProgress(throttle.start(at: now), bytesDone: 0, bytesTotal: nil)]

        case (.running, .progress(let done, let total, let now)),
            (.transferring, .progress(let done, let total, let now)):
            state = .transferring
            guard throttle.shouldSend(bytesDone: done, bytesTotal: total, at: now) else { return [] }
            return [.publishProgress(.transferring, bytesDone: done, bytesTotal: total)]

        case (.running, .transferFinished(let outcome, _, _)), (.transferring, .transferFinished(let outcome, _, _)):
            // No last progress packet: the result carries the bytes, and says more.
            state = .resultPendingConfirm(outcome)
            return [.publishResult(outcome)]

        case (.cancelling, .transferFinished(let outcome, _, _)):
            // A transfer that completed before the abort took effect is reported as what it is.
            let settled: ResultPacket.Outcome = outcome == .done || outcome == .skipped ? outcome : .cancelled
            state = .resultPendingConfirm(settled)
            return [.publishResult(settled)]

        case (.abortingForShutdown, .transferFinished), (.resultPendingConfirm, .resultPublishFailed):
            return giveBack()

        case (.resultPendingConfirm(let outcome), .resultConfirmed):
            state = outcome == .cancelled ? .cancelled : .acked(outcome)
            return handedOverToLease ? [] : [.ackJob]

        case (.received, .cancelRequested):
            state = .resultPendingConfirm(.cancelled)
            return [.publishResult(.cancelled)]

        case (.running, .cancelRequested), (.transferring, .cancelRequested):
            state = .cancelling
            return [.abortTransfer]

        case (.received, .shutdownStarted), (.received, .shutdownGraceExpired):
            state = .requeued
            return [.nackRequeueJob]

        case (.running, .shutdownGraceExpired), (.transferring, .shutdownGraceExpired),
            (.cancelling, .shutdownGraceExpired):
            state = .abortingForShutdown
            return [.abortTransfer]

        case (.received, .ackDeadlineReached):
            // Never started (waiting for a slot): another Consumer may have one free.
            state = .requeued
            return [.nackRequeueJob]

        case (.running, .ackDeadlineReached), (.transferring, .ackDeadlineReached),
            (.cancelling, .ackDeadlineReached), (.resultPendingConfirm, .ackDeadlineReached):
            guard !handedOverToLease else { return [] }
            handedOverToLease = true
            return [.ackJob]

        default:
            return []
        }
    }

    /// The job ends here without a confirmed result: back to the broker, or, once acked, to the lease.
    private mutating func giveBack() -> [Action] {
        if handedOverToLease {
            state = .releasedToLease
            return []
        }
        state = .requeued
        return [.nackRequeueJob]
    }
}
