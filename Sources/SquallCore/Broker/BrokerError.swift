/// Why a broker call failed, with what an operator needs (AMQP reply code, destination, reason).
///
/// ``isRetryable`` separates the failures a caller should simply try again (the connection dropped,
/// or is being re-established) from refusals that repeating the same call will not fix.
public enum BrokerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The connection is down or being re-established; try again later.
    case notReady(String)
    /// The connection dropped while the call was in flight; nothing about its outcome is known
    /// (a publish may or may not have reached the queue), so retrying may duplicate.
    case connectionLost(String)
    /// The broker refused a publish with basic.nack (e.g. a full queue with `reject-publish`).
    case publishNacked(destination: String)
    /// The broker returned a mandatory publish as unroutable (no queue bound for it).
    case publishReturned(destination: String, replyCode: Int, replyText: String)
    /// The broker closed a channel because a call was refused (e.g. 404 for a missing queue).
    case channelClosed(context: String, replyCode: Int, replyText: String)
    /// Some messages of a batch were not confirmed: their indexes in the batch and why.
    case batchFailed([BatchFailure])
    /// An ack, nack or reject for a delivery whose connection has since dropped: the broker has
    /// already put that message back and will deliver it again.
    case deliveryStale(deliveryTag: UInt64)
    /// The broker object was shut down.
    case shutDown

    /// One message of a batch that did not get a confirm, and why.
    public struct BatchFailure: Sendable, Equatable, CustomStringConvertible {
        /// The message's position in the batch passed to ``Broker/publishBatch(_:)``.
        public var index: Int
        public var error: BrokerError
        public var description: String { "message \(index): \(error)" }
    }

    /// Whether trying the same call again later can succeed.
    public var isRetryable: Bool {
        switch self {
        case .notReady, .connectionLost, .publishNacked: true
        case .batchFailed(let failures): failures.allSatisfy(\.error.isRetryable)
        case .publishReturned, .channelClosed, .deliveryStale, .shutDown: false
        }
    }

    public var description: String {
        switch self {
        case .notReady(let reason): "broker not ready: \(reason)"
        case .connectionLost(let reason): "broker connection lost while the call was in flight: \(reason)"
        case .publishNacked(let destination): "broker refused the publish to \(destination) (basic.nack)"
        case .publishReturned(let destination, let code, let text):
            "broker returned the publish to \(destination) as unroutable (\(code) \(text))"
        case .channelClosed(let context, let code, let text): "\(context): broker closed the channel (\(code) \(text))"
        case .batchFailed(let failures):
            "\(failures.count) message(s) of the batch not confirmed; first: \(failures.first.map(\.description) ?? "-")"
        case .deliveryStale(let tag):
            "delivery \(tag) came from a connection that has dropped; the broker will redeliver it"
        case .shutDown: "broker connection was shut down"
        }
    }
}
