import CoreMetrics

/// Every metric the Squall services emit, declared once: names, labels and when each is recorded.
///
/// docs/metrics.md says what each means and which alerts to set. The factory is the process's
/// bootstrapped one (``ServiceLauncher/bootstrapMetrics()``) in the executables, and a private
/// `PrometheusMetricsFactory` over a test's own registry in tests, so nothing global is touched there.
/// Label values come from small fixed sets (outcomes, states, retry reasons): never job ids or URLs,
/// which would make a time series per job.
public struct SquallMetrics: Sendable {
    /// The Prometheus names, for dashboards, alerts and tests.
    public enum Name {
        /// Counter, Producer: job messages published and confirmed by the broker.
        public static let jobsPublished = "squall_jobs_published_total"
        /// Counter, Consumer: job deliveries taken from `squall.jobs` (redeliveries included).
        public static let jobsConsumed = "squall_jobs_consumed_total"
        /// Counter by `outcome` (done, skipped, failed, cancelled), Collector: jobs settled in PostgreSQL.
        public static let jobsSettled = "squall_jobs_settled_total"
        /// Counter, Consumer: payload bytes uploaded to destinations.
        public static let bytesMoved = "squall_bytes_moved_total"
        /// Counter by `reason` (`http_503`, `timeout`, `connection`, `slow_down`, …), Consumer.
        public static let transferRetries = "squall_transfer_retries_total"
        /// Histogram (seconds) by `kind` (progress, result, heartbeat), Observer and Collector: one batch's transaction.
        public static let packetApply = "squall_packet_apply_seconds"
        /// Gauge by `part` (ready, in_flight), Producer: the window of work held in the broker.
        public static let queueWindow = "squall_queue_window"
        /// Gauge by `state` (busy, idle, lost), Observer: nodes in the registry.
        public static let nodes = "squall_nodes"
        /// Gauge, Consumer: jobs this Consumer holds (started or prefetched).
        public static let jobsInFlight = "squall_jobs_in_flight"
    }

    private let factory: any MetricsFactory
    private let published: Counter
    private let consumed: Counter
    private let moved: Counter
    private let settled: [ResultPacket.Outcome: Counter]
    private let windowReady: Gauge
    private let windowInFlight: Gauge
    private let inFlight: Gauge

    /// Creates the metrics on `factory`; pass `MetricsSystem.factory` in an executable.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        published = Counter(label: Name.jobsPublished, factory: factory)
        consumed = Counter(label: Name.jobsConsumed, factory: factory)
        moved = Counter(label: Name.bytesMoved, factory: factory)
        settled = Dictionary(
            uniqueKeysWithValues: ResultPacket.Outcome.allCases.map {
                ($0, Counter(label: Name.jobsSettled, dimensions: [("outcome", $0.rawValue)], factory: factory))
            })
        windowReady = Gauge(label: Name.queueWindow, dimensions: [("part", "ready")], factory: factory)
        windowInFlight = Gauge(label: Name.queueWindow, dimensions: [("part", "in_flight")], factory: factory)
        inFlight = Gauge(label: Name.jobsInFlight, factory: factory)
    }

    public func jobsPublished(_ count: Int = 1) { published.increment(by: Int64(count)) }

    public func jobConsumed() { consumed.increment() }

    public func jobsSettled(_ outcome: ResultPacket.Outcome, count: Int = 1) {
        settled[outcome]?.increment(by: Int64(count))
    }

    public func bytesMoved(_ bytes: Int64) { moved.increment(by: bytes) }

    /// `reason` must come from a small fixed set (the engine's retry reasons), never a URL or message.
    public func transferRetried(reason: String) {
        Counter(label: Name.transferRetries, dimensions: [("reason", reason)], factory: factory).increment()
    }

    /// How long one batch of `kind` packets took to write and commit.
    public func packetsApplied(kind: PacketKind, duration: Duration) {
        Timer(label: Name.packetApply, dimensions: [("kind", kind.rawValue)], factory: factory)
            .recordNanoseconds(Self.nanoseconds(duration))
    }

    public func queueWindow(ready: Int, inFlight: Int) {
        windowReady.record(ready)
        windowInFlight.record(inFlight)
    }

    public func jobsInFlight(_ count: Int) { inFlight.record(count) }

    /// Sets the node gauge for every state (a state with no node is set to 0, not left stale).
    public func nodes(_ counts: [NodeRegistryView.NodeState: Int]) {
        for state in NodeRegistryView.NodeState.allCases {
            Gauge(label: Name.nodes, dimensions: [("state", state.rawValue)], factory: factory)
                .record(counts[state] ?? 0)
        }
    }

    /// Which packets a batch held, the `kind` label of ``Name/packetApply``.
    public enum PacketKind: String, Sendable, CaseIterable {
        case progress, result, heartbeat
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
