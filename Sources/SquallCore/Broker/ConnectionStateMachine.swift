/// The life of a broker connection as a value: events in, the action to perform out.
///
/// The connection thread feeds it what happened (connected, failed, dropped, shutdown requested)
/// and performs only the returned action, so every reconnection rule is testable without a server.
struct ConnectionStateMachine: Sendable, Equatable {
    enum State: Sendable, Equatable {
        case idle
        /// Opening connection number `generation`, after `failures` consecutive failures.
        case connecting(generation: UInt64, failures: Int)
        case connected(generation: UInt64)
        /// Waiting out a backoff before the next attempt.
        case waiting(generation: UInt64, failures: Int)
        case closing
        case closed
    }

    enum Action: Sendable, Equatable {
        /// Open connection number `generation` (socket, login, topology, channels, consumers).
        case connect(generation: UInt64)
        /// The connection is up: report ready.
        case becomeReady(generation: UInt64)
        /// Tear the dead connection down, fail every call in flight with `reason` (retryable),
        /// report not ready, and wait `delay` before connecting again.
        case dropAndReconnect(reason: String, delay: Duration)
        /// The attempt failed: wait `delay` before the next one.
        case retry(reason: String, delay: Duration)
        /// Close the open connection politely, then report ``closed()``.
        case closeConnection
        /// Fail what is left with ``BrokerError/shutDown`` and end the thread.
        case finish
        case none
    }

    private(set) var state: State = .idle
    let policy: ReconnectPolicy

    init(policy: ReconnectPolicy) {
        self.policy = policy
    }

    /// Whether calls can be sent to the broker now.
    var isReady: Bool {
        if case .connected = state { return true }
        return false
    }

    mutating func start() -> Action {
        guard case .idle = state else { return .none }
        state = .connecting(generation: 1, failures: 0)
        return .connect(generation: 1)
    }

    mutating func connectSucceeded() -> Action {
        guard case .connecting(let generation, _) = state else { return .none }
        state = .connected(generation: generation)
        return .becomeReady(generation: generation)
    }

    /// `jitter` is a uniform random number in 0..<1 (injected so tests are deterministic).
    mutating func connectFailed(reason: String, jitter: Double) -> Action {
        guard case .connecting(let generation, let failures) = state else { return .none }
        state = .waiting(generation: generation, failures: failures + 1)
        return .retry(reason: reason, delay: policy.delay(attempt: failures + 1, unit: jitter))
    }

    mutating func connectionLost(reason: String, jitter: Double) -> Action {
        guard case .connected(let generation) = state else { return .none }
        state = .waiting(generation: generation, failures: 1)
        return .dropAndReconnect(reason: reason, delay: policy.delay(attempt: 1, unit: jitter))
    }

    mutating func backoffElapsed() -> Action {
        guard case .waiting(let generation, let failures) = state else { return .none }
        // Every attempt gets a new generation, so deliveries of a dead connection are recognizable.
        state = .connecting(generation: generation + 1, failures: failures)
        return .connect(generation: generation + 1)
    }

    mutating func shutdownRequested() -> Action {
        switch state {
        case .connected:
            state = .closing
            return .closeConnection
        case .idle, .connecting, .waiting:
            state = .closed
            return .finish
        case .closing, .closed:
            return .none
        }
    }

    mutating func closed() -> Action {
        guard case .closing = state else { return .none }
        state = .closed
        return .finish
    }
}
