import ArgumentParser

/// The Consumer's own settings, each a flag and an environment variable (the flag wins).
public struct ConsumerOptions: ParsableArguments, Sendable {
    @Option(
        name: .customLong("concurrency"),
        help: "Transfers run at once, and the broker prefetch; default 4 (env SQUALL_CONSUMER_CONCURRENCY).")
    public var concurrency: String?

    @Option(
        name: .customLong("grace-period"),
        help: """
            Seconds a SIGTERM gives running transfers to finish before they are aborted and requeued; \
            default 25, below Kubernetes' 30 (env SQUALL_GRACE_PERIOD).
            """)
    public var gracePeriod: String?

    @Option(
        name: .customLong("ack-deadline"),
        help: """
            Seconds after which a still-running job's message is acked and its database lease owns the \
            retry; keep it below RabbitMQ's consumer_timeout. Default 1500 (env SQUALL_ACK_DEADLINE).
            """)
    public var ackDeadline: String?

    @Option(
        name: .customLong("heartbeat-interval"),
        help: "Seconds between this node's heartbeats; default 5 (env SQUALL_HEARTBEAT_INTERVAL).")
    public var heartbeatInterval: String?

    @Option(
        name: .customLong("part-size"),
        help: "Bytes per multipart part (at least 5 MiB), e.g. 8MiB; default 8MiB (env SQUALL_PART_SIZE).")
    public var partSize: String?

    @Option(
        name: .customLong("max-s3-requests"),
        help: """
            S3 requests other than downloads (PUTs, parts, HEADs) this node has in flight at once, for all \
            its transfers together; the rest wait their turn. Default 0, no limit (env SQUALL_MAX_S3_REQUESTS).
            """)
    public var maxS3Requests: String?

    public init() {}

    /// Merges flags over `environment`, naming the flag or variable of a value that cannot be used.
    public func resolve(environment: [String: String]) throws(ConfigurationError) -> ConsumerSettings {
        func pick(_ flag: String?, _ flagName: String, _ variable: String) -> (value: String, setting: String)? {
            if let flag { return (flag, "--\(flagName)") }
            if let value = environment[variable], !value.isEmpty { return (value, variable) }
            return nil
        }
        var settings = ConsumerSettings()
        if let (value, setting) = pick(concurrency, "concurrency", "SQUALL_CONSUMER_CONCURRENCY") {
            guard let count = Int(value), (1...1000).contains(count) else {
                throw ConfigurationError(setting: setting, reason: "\"\(value)\" is not a number in 1...1000")
            }
            settings.concurrency = count
        }
        if let (value, setting) = pick(gracePeriod, "grace-period", "SQUALL_GRACE_PERIOD") {
            settings.gracePeriod = try Self.seconds(value, setting: setting, minimum: 1)
        }
        if let (value, setting) = pick(ackDeadline, "ack-deadline", "SQUALL_ACK_DEADLINE") {
            settings.ackDeadline = try Self.seconds(value, setting: setting, minimum: 1)
        }
        if let (value, setting) = pick(heartbeatInterval, "heartbeat-interval", "SQUALL_HEARTBEAT_INTERVAL") {
            settings.heartbeatInterval = try Self.seconds(value, setting: setting, minimum: 0.1)
        }
        if let (value, setting) = pick(partSize, "part-size", "SQUALL_PART_SIZE") {
            guard let bytes = Self.bytes(value), bytes >= 5 << 20, bytes <= 5 << 30 else {
                throw ConfigurationError(
                    setting: setting, reason: "\"\(value)\" is not a part size between 5MiB and 5GiB (e.g. 8MiB)")
            }
            settings.partSize = bytes
        }
        if let (value, setting) = pick(maxS3Requests, "max-s3-requests", "SQUALL_MAX_S3_REQUESTS") {
            guard let count = Int(value), (0...1000).contains(count) else {
                throw ConfigurationError(
                    setting: setting, reason: "\"\(value)\" is not a number in 0...1000 (0: no limit)")
            }
            settings.maxS3Requests = count
        }
        return settings
    }

    private static func seconds(
        _ value: String, setting: String, minimum: Double
    ) throws(ConfigurationError)
        -> Duration
    {
        guard let seconds = Double(value), seconds.isFinite, seconds >= minimum, seconds <= 86_400 * 7 else {
            throw ConfigurationError(
                setting: setting, reason: "\"\(value)\" is not a number of seconds between \(minimum) and 604800")
        }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// `8388608`, `8MiB`, `8M`, `512KiB`.
    static func bytes(_ text: String) -> Int? {
        let lowered = text.lowercased()
        let digits = lowered.prefix { $0.isNumber }
        guard let number = Int(digits) else { return nil }
        switch lowered.dropFirst(digits.count) {
        case "", "b": return number
        case "k", "kib": return number << 10
        case "m", "mib": return number << 20
        case "g", "gib": return number << 30
        default: return nil
        }
    }
}

/// The Consumer's settings after flags and environment are merged.
public struct ConsumerSettings: Sendable, Equatable {
    /// Transfers run at once; also the `basic.qos` prefetch, so the broker never hands this node more.
    public var concurrency = 4
    /// From SIGTERM to exit, at most (the service group's deadline too).
    public var gracePeriod: Duration = .seconds(25)
    /// Running transfers are aborted this long before the grace period ends, so aborts and nacks fit in.
    public var abortMargin: Duration = .seconds(3)
    /// When a still-running job is handed over to its database lease (docs/services.md).
    public var ackDeadline: Duration = .seconds(1500)
    public var heartbeatInterval: Duration = .seconds(5)
    public var partSize = 8 << 20
    /// S3 requests other than downloads in flight at once, all transfers together (`TransferOptions.maxS3Requests`); 0: no limit.
    public var maxS3Requests = 0
    /// A running job with no progress packet for this long gets one anyway: the Observer renews its
    /// database lease (120 s by default) from progress packets, so a stalled source must still send some.
    public var keepAliveAfter: Duration = .seconds(20)
    /// How long a progress packet is held before it is published; a job that ends sooner sends
    /// only its result (`PacketOutbox`).
    public var progressHold: Duration = .seconds(1)

    public init() {}

    /// When, after shutdown starts, running transfers are aborted: the grace period less the margin,
    /// but never less than half the grace period.
    public var abortAfter: Duration {
        max(gracePeriod - abortMargin, gracePeriod / 2)
    }
}
