/// Every queue and exchange Squall uses, in one place, declared idempotently at each (re)connection.
///
/// The work queues are quorum queues: only quorum queues take `x-delivery-limit` in RabbitMQ 3.10,
/// and a message redelivered past that limit must be dead-lettered rather than loop forever
/// (docs/broker.md explains the choice). Names carry an optional prefix so that tests sharing one
/// broker never see each other's messages.
public struct Topology: Sendable, Equatable {
    /// Prepended to every name (`""` in production; a random `t-…` in tests).
    public var prefix: String
    /// Jobs from the Producer to the Consumers.
    public var jobs: String
    /// Progress packets and node heartbeats to the Observer.
    public var progress: String
    /// Result packets to the Collector.
    public var results: String
    /// Where rejected and over-delivered messages go (a fanout exchange).
    public var deadLetterExchange: String
    /// The queue bound to the dead-letter exchange, for an operator to inspect.
    public var deadLetters: String
    /// The fanout exchange for cancel messages; each Consumer binds its own exclusive queue.
    public var control: String
    /// Extra queues declared with the standard ones (tests use this for special queues).
    public var extraQueues: [QueueDefinition]

    /// How many times a job may be handed out before it is dead-lettered.
    public var jobDeliveryLimit: Int
    /// How many times a progress or result packet may be handed out before it is dead-lettered.
    public var packetDeliveryLimit: Int

    /// The DESIGN names (`squall.jobs`, …), each prefixed with `prefix`.
    public init(prefix: String = "", jobDeliveryLimit: Int = 5, packetDeliveryLimit: Int = 20) {
        self.prefix = prefix
        jobs = prefix + "squall.jobs"
        progress = prefix + "squall.progress"
        results = prefix + "squall.results"
        deadLetterExchange = prefix + "squall.dead-letter"
        deadLetters = prefix + "squall.dead-letters"
        control = prefix + "squall.control"
        extraQueues = []
        self.jobDeliveryLimit = jobDeliveryLimit
        self.packetDeliveryLimit = packetDeliveryLimit
    }

    /// The exchanges, declared before the queues that name them.
    public var exchanges: [ExchangeDefinition] {
        [
            ExchangeDefinition(name: deadLetterExchange, kind: .fanout),
            ExchangeDefinition(name: control, kind: .fanout),
        ]
    }

    /// The durable queues, in declaration order.
    public var queues: [QueueDefinition] {
        [
            QueueDefinition(name: deadLetters, kind: .quorum),
            QueueDefinition(
                name: jobs, kind: .quorum, deadLetterExchange: deadLetterExchange, deliveryLimit: jobDeliveryLimit),
            QueueDefinition(
                name: progress, kind: .quorum, deadLetterExchange: deadLetterExchange,
                deliveryLimit: packetDeliveryLimit),
            QueueDefinition(
                name: results, kind: .quorum, deadLetterExchange: deadLetterExchange,
                deliveryLimit: packetDeliveryLimit),
        ] + extraQueues
    }

    /// Queue-to-exchange bindings.
    public var bindings: [Binding] {
        [Binding(queue: deadLetters, exchange: deadLetterExchange, routingKey: "")]
    }
}

/// An exchange to declare (durable, not auto-deleted).
public struct ExchangeDefinition: Sendable, Equatable {
    public enum Kind: String, Sendable { case fanout, direct, topic }
    public var name: String
    public var kind: Kind

    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }
}

/// A durable queue to declare and the arguments that shape it.
public struct QueueDefinition: Sendable, Equatable {
    public enum Kind: String, Sendable { case quorum, classic }
    /// What a full queue does with a new message (`x-overflow`).
    public enum Overflow: String, Sendable {
        case dropHead = "drop-head"
        /// The broker nacks the publish: the publisher sees the refusal.
        case rejectPublish = "reject-publish"
    }

    public var name: String
    public var kind: Kind
    public var deadLetterExchange: String?
    /// Deliveries after which a message is dead-lettered (quorum queues only).
    public var deliveryLimit: Int?
    public var maxLength: Int?
    public var overflow: Overflow?

    public init(
        name: String, kind: Kind, deadLetterExchange: String? = nil, deliveryLimit: Int? = nil,
        maxLength: Int? = nil, overflow: Overflow? = nil
    ) {
        self.name = name
        self.kind = kind
        self.deadLetterExchange = deadLetterExchange
        self.deliveryLimit = deliveryLimit
        self.maxLength = maxLength
        self.overflow = overflow
    }

    /// The `x-…` arguments of queue.declare, in a stable order.
    public var arguments: [(key: String, value: ArgumentValue)] {
        var arguments: [(key: String, value: ArgumentValue)] = [("x-queue-type", .string(kind.rawValue))]
        if let deadLetterExchange { arguments.append(("x-dead-letter-exchange", .string(deadLetterExchange))) }
        if let deliveryLimit { arguments.append(("x-delivery-limit", .integer(Int64(deliveryLimit)))) }
        if let maxLength { arguments.append(("x-max-length", .integer(Int64(maxLength)))) }
        if let overflow { arguments.append(("x-overflow", .string(overflow.rawValue))) }
        return arguments
    }

}

/// A queue.declare argument value.
public enum ArgumentValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
}

/// A queue bound to an exchange.
public struct Binding: Sendable, Equatable {
    public var queue: String
    public var exchange: String
    public var routingKey: String

    public init(queue: String, exchange: String, routingKey: String) {
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
    }
}
