import COpenSSL
internal import CRabbitMQ
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One rabbitmq-c connection, owned by its own operating-system thread, re-opened after every drop.
///
/// rabbitmq-c is blocking, not thread-safe, and services heartbeats only inside its own calls, so
/// the `amqp_connection_state_t` lives on a dedicated thread that is always back in a short timed
/// wait (`poll` on the socket and a wake-up pipe). Swift code never touches the handle: it submits
/// a ``Command`` to a lock-protected queue, wakes the thread, and is resumed by a completion when the
/// broker has answered. The thread also sends heartbeats, notices missed ones, and runs the
/// ``ConnectionStateMachine`` that decides when to reconnect.
final class AMQPConnection: @unchecked Sendable {
    struct Settings: Sendable {
        var url: AMQPURL
        var topology: Topology
        var reconnect: ReconnectPolicy
        var connectTimeout: Duration = .seconds(10)
        var rpcTimeout: Duration = .seconds(15)
        var frameMax: Int32 = 131_072
    }

    /// What Swift code asks the connection thread to do.
    enum Command: Sendable {
        case publish([OutgoingMessage], PublishBatch)
        case settle(Settlement)
        case consume(ConsumerRecord, @Sendable (Result<Void, BrokerError>) -> Void)
        case cancel(consumerID: Int)
        /// basic.cancel only: no new deliveries, but the channel stays open so those in hand can be settled.
        case stopDelivering(consumerID: Int, @Sendable () -> Void)
        case queueDepth(String, @Sendable (Result<Int, BrokerError>) -> Void)
        case shutdown
    }

    /// An ack, nack or reject for one delivery (or every one up to it, with `multiple`).
    struct Settlement: Sendable {
        enum Kind: Sendable {
            case ack(multiple: Bool)
            case nack(requeue: Bool, multiple: Bool)
            case reject
        }
        var kind: Kind
        var channel: UInt16
        var deliveryTag: UInt64
        var generation: UInt64
        var completion: @Sendable (Result<Void, BrokerError>) -> Void
    }

    /// The publishes of one ``Broker/publish(_:to:)`` or ``Broker/publishBatch(_:)`` call, completed
    /// once every message has its outcome. Mutated only on the connection thread.
    final class PublishBatch: @unchecked Sendable {
        var outcomes: [BrokerError?]
        var remaining: Int
        let completion: @Sendable ([BrokerError?]) -> Void

        init(count: Int, completion: @escaping @Sendable ([BrokerError?]) -> Void) {
            outcomes = Array(repeating: nil, count: count)
            remaining = count
            self.completion = completion
        }

        func settle(_ index: Int, _ error: BrokerError?) {
            outcomes[index] = error
            remaining -= 1
            if remaining == 0 { completion(outcomes) }
        }
    }

    /// A consumer that outlives connections: re-started on every new connection until cancelled.
    final class ConsumerRecord: @unchecked Sendable {
        enum Source: Sendable {
            case queue(String)
            /// A fresh exclusive, auto-delete queue bound to this fanout exchange on every connection.
            case fanout(exchange: String)
        }
        let id: Int
        let source: Source
        let prefetch: UInt16
        let continuation: AsyncThrowingStream<[Delivery], any Error>.Continuation
        /// Deliveries read in this pass over the socket, handed over together by ``flush()``: one hand-over
        /// (and at most one wake-up of the consuming task) per pass rather than per message.
        private var pending: [Delivery] = []
        /// The channel on the current connection, 0 while not consuming.
        var channel: UInt16 = 0
        var queueName: String
        /// The broker-assigned tag of the current basic.consume, for basic.cancel.
        var consumerTag = ""
        /// What is open on the current channel, for folding its acks.
        var unsettled = UnsettledDeliveries()

        init(
            id: Int, source: Source, prefetch: UInt16,
            continuation: AsyncThrowingStream<[Delivery], any Error>.Continuation
        ) {
            self.id = id
            self.source = source
            self.prefetch = prefetch
            self.continuation = continuation
            if case .queue(let name) = source { queueName = name } else { queueName = "" }
        }

        // Connection thread only, like the rest of the record's mutable state.
        func deliver(_ delivery: Delivery) { pending.append(delivery) }

        var hasPending: Bool { !pending.isEmpty }

        func flush() {
            guard !pending.isEmpty else { return }
            continuation.yield(pending)
            pending.removeAll(keepingCapacity: true)
        }

        /// Ends the sequence after the deliveries already read.
        func finish(throwing error: (any Error)? = nil) {
            flush()
            continuation.finish(throwing: error)
        }
    }

    /// What the Swift side may read without going through the thread.
    private struct Shared {
        var commands: [Command] = []
        var wakePending = false
        var ready = false
        var generation: UInt64 = 0
        var negotiatedHeartbeat = 0
        var connectionsOpened = 0
        var lastFailure: String?
        var started = false
        var finished = false
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Failures that end the current connection (socket, protocol, missed heartbeats, connection.close).
    private struct ConnectionFailure: Error {
        var reason: String
    }

    private typealias PublishToken = (batch: PublishBatch, index: Int, destination: String)

    let settings: Settings
    let logger: Logger
    private let shared = Mutex(Shared())
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let nextConsumerID = Atomic<Int>(1)
    private let ackFrames = Atomic<Int>(0)

    // Owned by the connection thread.
    private var machine: ConnectionStateMachine
    private var state: amqp_connection_state_t?
    private var socketFD: Int32 = -1
    private var generation: UInt64 = 0
    private var heartbeat: Int = 0
    private var lastReceived = ContinuousClock.now
    private var lastHeartbeatSent = ContinuousClock.now
    private var confirms = ConfirmTracker<PublishToken>()
    private var consumers: [Int: ConsumerRecord] = [:]
    private var consumerByChannel: [UInt16: ConsumerRecord] = [:]
    /// Acks asked for in this pass over the commands, by channel: sent together by ``sendAcks()``.
    private var acksToSend: [UInt16: [Settlement]] = [:]
    private var nextChannel: UInt16 = 3
    private let rpcChannel: UInt16 = 1
    private let publishChannel: UInt16 = 2
    private var shutdownRequestedAt: ContinuousClock.Instant?

    init(settings: Settings, logger: Logger) {
        self.settings = settings
        var logger = logger
        logger[metadataKey: "amqp.url"] = "\(settings.url)"
        self.logger = logger
        machine = ConnectionStateMachine(policy: settings.reconnect)
        var fds: [Int32] = [0, 0]
        let status = pipe(&fds)
        precondition(status == 0, "pipe failed: errno \(errno)")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    // MARK: Swift side

    /// Starts the connection thread (once).
    func start() {
        let first = shared.withLock { shared in
            defer { shared.started = true }
            return !shared.started
        }
        guard first else { return }
        let thread = Thread { [self] in self.threadMain() }
        thread.name = "squall-amqp"
        thread.start()
    }

    var isReady: Bool { shared.withLock { $0.ready } }
    var currentGeneration: UInt64 { shared.withLock { $0.generation } }
    var negotiatedHeartbeat: Int { shared.withLock { $0.negotiatedHeartbeat } }
    var connectionsOpened: Int { shared.withLock { $0.connectionsOpened } }

    /// Ack frames written so far, on every connection: fewer than the acks asked for when acks were
    /// folded into `multiple` ones.
    var ackFramesSent: Int { ackFrames.load(ordering: .relaxed) }
    var lastFailure: String? { shared.withLock { $0.lastFailure } }
    var isFinished: Bool { shared.withLock { $0.finished } }

    func makeConsumerID() -> Int { nextConsumerID.add(1, ordering: .relaxed).oldValue }

    /// Queues `command` for the connection thread and wakes it if it may be asleep.
    func submit(_ command: Command) {
        let rejected: Command? = shared.withLock { shared in
            if shared.finished { return command }
            shared.commands.append(command)
            return nil
        }
        if let rejected {
            Self.fail(rejected, with: .shutDown)
            return
        }
        let needsWake = shared.withLock { shared in
            defer { shared.wakePending = true }
            return !shared.wakePending
        }
        if needsWake {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    /// Asks the thread to close the connection and waits until it has ended.
    func shutdown() async {
        let alreadyFinished = shared.withLock { $0.finished || !$0.started }
        if alreadyFinished {
            shared.withLock { $0.finished = true }
            return
        }
        submit(.shutdown)
        await withCheckedContinuation { continuation in
            let finished = shared.withLock { shared in
                if shared.finished { return true }
                shared.finishWaiters.append(continuation)
                return false
            }
            if finished { continuation.resume() }
        }
    }

    private static func fail(_ command: Command, with error: BrokerError) {
        switch command {
        case .publish(let messages, let batch):
            for index in messages.indices { batch.settle(index, error) }
        case .settle(let settlement): settlement.completion(.failure(error))
        case .consume(let record, let completion):
            record.finish(throwing: error)
            completion(.failure(error))
        case .queueDepth(_, let completion): completion(.failure(error))
        case .stopDelivering(_, let completion): completion()
        case .cancel, .shutdown: break
        }
    }

    // MARK: The connection thread

    private func threadMain() {
        var action = machine.start()
        while true {
            switch action {
            case .connect(let generation):
                do {
                    try open(generation: generation)
                    action = machine.connectSucceeded()
                } catch {
                    destroyConnection()
                    shared.withLock { $0.lastFailure = error.reason }
                    logger.warning("broker connection attempt failed", metadata: ["amqp.reason": "\(error.reason)"])
                    action = machine.connectFailed(reason: error.reason, jitter: Double.random(in: 0..<1))
                }
            case .becomeReady(let generation):
                shared.withLock { shared in
                    shared.ready = true
                    shared.generation = generation
                    shared.negotiatedHeartbeat = heartbeat
                    shared.connectionsOpened += 1
                }
                logger.info(
                    "broker connection ready",
                    metadata: ["amqp.generation": "\(generation)", "amqp.heartbeat": "\(heartbeat)"])
                switch runConnected() {
                case .shutdown: action = machine.shutdownRequested()
                case .lost(let reason):
                    action = machine.connectionLost(reason: reason, jitter: Double.random(in: 0..<1))
                }
            case .dropAndReconnect(let reason, let delay):
                shared.withLock { shared in
                    shared.ready = false
                    shared.lastFailure = reason
                }
                logger.info(
                    "broker connection lost; reconnecting",
                    metadata: ["amqp.reason": "\(reason)", "amqp.delay": "\(delay)"])
                abandonConnection(with: .connectionLost(reason))
                action = waitOut(delay) ? machine.backoffElapsed() : machine.shutdownRequested()
            case .retry(_, let delay):
                action = waitOut(delay) ? machine.backoffElapsed() : machine.shutdownRequested()
            case .closeConnection:
                closeGracefully()
                action = machine.closed()
            case .finish, .none:
                finish()
                return
            }
        }
    }

    private enum RunEnd {
        case shutdown
        case lost(String)
    }

    /// The event loop while connected: commands, frames, heartbeats, then back into a short wait.
    private func runConnected() -> RunEnd {
        let heartbeatInterval: Duration? = heartbeat > 0 ? .seconds(heartbeat) : nil
        do {
            while true {
                let commands = takeCommands()
                for (position, command) in commands.enumerated() {
                    if case .shutdown = command {
                        shutdownRequestedAt = shutdownRequestedAt ?? .now
                    } else if shutdownRequestedAt != nil {
                        Self.fail(command, with: .shutDown)
                    } else {
                        do {
                            try execute(command)
                        } catch {
                            // The rest go back to the front of the queue: answered while
                            // reconnecting, or run on the next connection.
                            putBack(Array(commands[(position + 1)...]))
                            throw error
                        }
                    }
                }
                try sendAcks()
                // Let confirms in flight arrive (briefly) before closing on shutdown.
                if let since = shutdownRequestedAt, confirms.pendingCount == 0 || since.duration(to: .now) > .seconds(2)
                {
                    return .shutdown
                }
                try drainFrames()
                amqp_maybe_release_buffers(state)

                let now = ContinuousClock.now
                if let heartbeatInterval {
                    if lastReceived.duration(to: now) > heartbeatInterval * 2 {
                        throw ConnectionFailure(
                            reason: "missed heartbeats: nothing received for \(lastReceived.duration(to: now))")
                    }
                    if lastHeartbeatSent.duration(to: now) >= heartbeatInterval / 2 {
                        try check(squall_amqp_send_heartbeat(state), "sending a heartbeat")
                        lastHeartbeatSent = now
                    }
                }

                for record in consumerByChannel.values { record.flush() }
                var fds = [
                    pollfd(fd: socketFD, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                ]
                // TLS may hold decrypted bytes the socket no longer shows: poll in short slices then.
                let timeout: Int32 = settings.url.tls ? 10 : 250
                let ready = poll(&fds, 2, timeout)
                if ready < 0 && errno != EINTR {
                    throw ConnectionFailure(reason: "poll failed: errno \(errno)")
                }
                if fds[1].revents != 0 { drainWakePipe() }
                if fds[0].revents != 0 || settings.url.tls {
                    if fds[0].revents & Int16(POLLIN) != 0 { lastReceived = .now }
                    try readAvailableFrames()
                    try gatherDeliveries()
                }
            }
        } catch let failure as ConnectionFailure {
            return .lost(failure.reason)
        } catch {
            return .lost("\(error)")
        }
    }

    private func takeCommands() -> [Command] {
        shared.withLock { shared in
            shared.wakePending = false
            defer { shared.commands.removeAll(keepingCapacity: true) }
            return shared.commands
        }
    }

    private func putBack(_ commands: [Command]) {
        guard !commands.isEmpty else { return }
        shared.withLock { $0.commands.insert(contentsOf: commands, at: 0) }
    }

    private func drainWakePipe() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &buffer, buffer.count) > 0 {}
    }

    /// Waits out a backoff while answering commands (nothing can reach the broker now).
    /// Returns false when shutdown was requested.
    private func waitOut(_ delay: Duration) -> Bool {
        let deadline = ContinuousClock.now + delay
        while true {
            for command in takeCommands() {
                switch command {
                case .shutdown: return false
                case .consume(let record, let completion):
                    // Registered now, started when the next connection opens.
                    consumers[record.id] = record
                    completion(.success(()))
                case .cancel(let id):
                    consumers.removeValue(forKey: id)?.finish()
                case .stopDelivering(let id, let completion):
                    consumers.removeValue(forKey: id)?.finish()
                    completion()
                case .settle(let settlement):
                    settlement.completion(.failure(.deliveryStale(deliveryTag: settlement.deliveryTag)))
                default:
                    Self.fail(command, with: .notReady(lastFailure ?? "reconnecting"))
                }
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return true }
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let milliseconds = Int32(min(remaining.milliseconds + 1, 1000))
            _ = poll(&fds, 1, milliseconds)
            if fds[0].revents != 0 { drainWakePipe() }
        }
    }

    private func finish() {
        destroyConnection()
        failAcks { _ in .shutDown }
        for command in takeCommands() { Self.fail(command, with: .shutDown) }
        for record in consumers.values { record.finish() }
        consumers = [:]
        consumerByChannel = [:]
        for (batch, index, _) in confirms.reset() { batch.settle(index, .shutDown) }
        let waiters = shared.withLock { shared in
            shared.ready = false
            shared.finished = true
            defer { shared.finishWaiters = [] }
            return shared.finishWaiters
        }
        // Commands that raced in after the last take.
        for command in takeCommands() { Self.fail(command, with: .shutDown) }
        logger.info("broker connection closed", metadata: ["amqp.ack_frames": "\(ackFramesSent)"])
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Opening

    private func open(generation: UInt64) throws(ConnectionFailure) {
        self.generation = generation
        let url = settings.url
        guard let state = amqp_new_connection() else { throw ConnectionFailure(reason: "out of memory") }
        self.state = state
        let socket: OpaquePointer?
        // What verifies the broker's certificate, for error messages.
        var trusted = ""
        if url.tls {
            socket = amqp_ssl_socket_new(state)
            guard let socket else { throw ConnectionFailure(reason: "creating the TLS socket failed") }
            amqp_ssl_socket_set_verify_peer(socket, url.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, url.verifyPeer ? 1 : 0)
            if let ca = url.caCertificatePath {
                trusted = "the CA file \"\(ca)\" (?cacertfile=)"
                let status = amqp_ssl_socket_set_cacert(socket, ca)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw ConnectionFailure(reason: "TLS: the CA file \"\(ca)\" could not be loaded (?cacertfile=)")
                }
            } else if url.verifyPeer {
                // rabbitmq-c 0.11 loads no trust anchors of its own: without this, no certificate
                // (not even a publicly signed one) would ever verify.
                let bundle = Self.systemCABundle
                trusted = "the system CA bundle \"\(bundle)\" (no ?cacertfile= given)"
                let status = amqp_ssl_socket_set_cacert(socket, bundle)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw ConnectionFailure(
                        reason:
                            "TLS: the system CA bundle \"\(bundle)\" could not be loaded; give one with ?cacertfile=")
                }
            }
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else { throw ConnectionFailure(reason: "creating the socket failed") }
        var connectTimeout = Self.makeTimeval(settings.connectTimeout)
        let opened = amqp_socket_open_noblock(socket, url.host, Int32(url.port), &connectTimeout)
        guard opened == AMQP_STATUS_OK.rawValue else {
            throw ConnectionFailure(
                reason: "opening \(url.host):\(url.port): \(Self.openFailureText(opened, url: url, trusted: trusted))")
        }
        var rpcTimeout = Self.makeTimeval(settings.rpcTimeout)
        amqp_set_rpc_timeout(state, &rpcTimeout)
        amqp_set_handshake_timeout(state, &rpcTimeout)
        let login = squall_amqp_login_plain(
            state, url.virtualHost, 0, settings.frameMax, Int32(url.heartbeatSeconds), url.user,
            url.password.revealed)
        guard squall_amqp_reply_ok(login) != 0 else {
            throw ConnectionFailure(reason: "login as \(url.user): \(describe(login))")
        }
        heartbeat = Int(amqp_get_heartbeat(state))
        socketFD = amqp_get_sockfd(state)
        lastReceived = .now
        lastHeartbeatSent = .now
        nextChannel = 3
        consumerByChannel = [:]
        confirms = ConfirmTracker()

        try openChannel(rpcChannel)
        try declareTopology()
        try openPublishChannel()

        for record in consumers.values.sorted(by: { $0.id < $1.id }) {
            do {
                try startConsumer(record)
            } catch {
                switch error {
                case .channel(let error):
                    consumers.removeValue(forKey: record.id)
                    record.finish(throwing: error)
                case .connection(let failure): throw failure
                }
            }
        }
    }

    private func openChannel(_ channel: UInt16) throws(ConnectionFailure) {
        amqp_channel_open(state, channel)
        do {
            try rpcResult("channel.open \(channel)", channel: channel)
        } catch {
            throw error.connectionFailure
        }
    }

    /// Opens the channel publishes go through, in confirm mode (numbering restarts at 1).
    private func openPublishChannel() throws(ConnectionFailure) {
        try openChannel(publishChannel)
        amqp_confirm_select(state, publishChannel)
        do {
            try rpcResult("confirm.select", channel: publishChannel)
        } catch {
            throw error.connectionFailure
        }
    }

    private func declareTopology() throws(ConnectionFailure) {
        let topology = settings.topology
        let strings = CStrings()
        do {
            for exchange in topology.exchanges {
                amqp_exchange_declare(
                    state, rpcChannel, strings.bytes(exchange.name), strings.bytes(exchange.kind.rawValue), 0, 1, 0, 0,
                    squall_amqp_empty_table())
                try rpcResult("declaring exchange \(exchange.name)", channel: rpcChannel)
            }
            for queue in topology.queues {
                var entries = queue.arguments.map { argument -> amqp_table_entry_t in
                    switch argument.value {
                    case .string(let value):
                        squall_amqp_entry_string(strings.cString(argument.key), strings.cString(value))
                    case .integer(let value): squall_amqp_entry_long(strings.cString(argument.key), value)
                    }
                }
                let count = Int32(entries.count)
                entries.withUnsafeMutableBufferPointer { buffer in
                    _ = amqp_queue_declare(
                        state, rpcChannel, strings.bytes(queue.name), 0, 1, 0, 0,
                        squall_amqp_table(buffer.baseAddress, count))
                }
                try rpcResult("declaring queue \(queue.name)", channel: rpcChannel)
            }
            for binding in topology.bindings {
                amqp_queue_bind(
                    state, rpcChannel, strings.bytes(binding.queue), strings.bytes(binding.exchange),
                    strings.bytes(binding.routingKey), squall_amqp_empty_table())
                try rpcResult("binding \(binding.queue) to \(binding.exchange)", channel: rpcChannel)
            }
        } catch {
            // A queue declared elsewhere with other arguments (406) cannot be fixed by retrying, but
            // the connection cannot serve Squall without its topology: the operator sees it logged.
            throw ConnectionFailure(reason: "topology: \(error.connectionFailure.reason)")
        }
    }

    private enum CallFailure: Error {
        /// The broker refused the call and closed its channel (already answered and reopened).
        case channel(BrokerError)
        case connection(ConnectionFailure)

        /// For calls the connection cannot do without: a refusal ends the connection too.
        var connectionFailure: ConnectionFailure {
            switch self {
            case .channel(let error): ConnectionFailure(reason: "\(error)")
            case .connection(let failure): failure
            }
        }
    }

    /// Checks the reply of the last RPC on `channel`; a channel.close is answered with close-ok.
    private func rpcResult(_ context: String, channel: UInt16) throws(CallFailure) {
        let reply = amqp_get_rpc_reply(state)
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD:
            let close = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            let error = BrokerError.channelClosed(
                context: context, replyCode: Int(close.reply_code), replyText: Self.string(close.reply_text))
            guard squall_amqp_send_channel_close_ok(state, channel) == AMQP_STATUS_OK.rawValue else {
                throw .connection(ConnectionFailure(reason: "\(context): \(error); answering it failed"))
            }
            channelWasClosed(channel)
            throw .channel(error)
        default:
            throw .connection(ConnectionFailure(reason: "\(context): \(describe(reply))"))
        }
    }

    /// After the broker closed `channel`: the rpc channel is reopened at once; the others are
    /// handled by their owners.
    private func channelWasClosed(_ channel: UInt16) {
        if channel == rpcChannel {
            amqp_channel_open(state, rpcChannel)
            _ = amqp_get_rpc_reply(state)
        }
    }

    private func startConsumer(_ record: ConsumerRecord) throws(CallFailure) {
        let channel = nextChannel
        nextChannel += 1
        let strings = CStrings()
        amqp_channel_open(state, channel)
        try rpcResult("channel.open \(channel)", channel: channel)
        if case .fanout(let exchange) = record.source {
            let declared = amqp_queue_declare(
                state, channel, squall_amqp_empty_bytes(), 0, 0, 1, 1, squall_amqp_empty_table())
            try rpcResult("declaring the control queue", channel: channel)
            guard let declared else { throw .connection(ConnectionFailure(reason: "queue.declare-ok missing")) }
            record.queueName = Self.string(declared.pointee.queue)
            amqp_queue_bind(
                state, channel, strings.bytes(record.queueName), strings.bytes(exchange), squall_amqp_empty_bytes(),
                squall_amqp_empty_table())
            try rpcResult("binding \(record.queueName) to \(exchange)", channel: channel)
        }
        amqp_basic_qos(state, channel, 0, record.prefetch, 0)
        try rpcResult("basic.qos \(record.prefetch) on \(record.queueName)", channel: channel)
        let consumeOK = amqp_basic_consume(
            state, channel, strings.bytes(record.queueName), squall_amqp_empty_bytes(), 0, 0, 0,
            squall_amqp_empty_table())
        try rpcResult("consuming \(record.queueName)", channel: channel)
        record.consumerTag = consumeOK.map { Self.string($0.pointee.consumer_tag) } ?? ""
        record.channel = channel
        record.unsettled = UnsettledDeliveries()
        consumerByChannel[channel] = record
    }

    // MARK: Commands

    private func execute(_ command: Command) throws(ConnectionFailure) {
        switch command {
        case .publish(let messages, let batch):
            try publish(messages, batch)
        case .settle(let settlement):
            try settle(settlement)
        case .consume(let record, let completion):
            consumers[record.id] = record
            do {
                try startConsumer(record)
                completion(.success(()))
            } catch {
                switch error {
                case .channel(let error):
                    consumers.removeValue(forKey: record.id)
                    record.finish(throwing: error)
                    completion(.failure(error))
                case .connection(let failure):
                    // Stays registered: it starts again on the next connection.
                    completion(.success(()))
                    throw failure
                }
            }
        case .cancel(let id):
            guard let record = consumers.removeValue(forKey: id) else { return }
            if record.channel != 0 { try sendAcks(on: record.channel) }
            if record.channel != 0, consumerByChannel.removeValue(forKey: record.channel) != nil {
                // Closing the channel hands its unacked deliveries back to the queue.
                amqp_channel_close(state, record.channel, AMQP_REPLY_SUCCESS)
                let reply = amqp_get_rpc_reply(state)
                if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION {
                    record.finish()
                    throw ConnectionFailure(reason: "closing channel \(record.channel): \(describe(reply))")
                }
            }
            record.finish()
        case .stopDelivering(let id, let completion):
            defer { completion() }
            // Out of `consumers`: not restarted on a new connection. Still in `consumerByChannel`:
            // deliveries in hand can be acked or nacked until the connection closes.
            guard let record = consumers.removeValue(forKey: id) else { return }
            record.finish()
            guard record.channel != 0, !record.consumerTag.isEmpty else { return }
            let strings = CStrings()
            amqp_basic_cancel(state, record.channel, strings.bytes(record.consumerTag))
            do {
                try rpcResult("basic.cancel on \(record.queueName)", channel: record.channel)
            } catch {
                if case .connection(let failure) = error { throw failure }
            }
        case .queueDepth(let queue, let completion):
            let strings = CStrings()
            let declared = amqp_queue_declare(
                state, rpcChannel, strings.bytes(queue), 1, 0, 0, 0, squall_amqp_empty_table())
            do {
                try rpcResult("queue depth of \(queue)", channel: rpcChannel)
                completion(.success(Int(declared?.pointee.message_count ?? 0)))
            } catch {
                switch error {
                case .channel(let error): completion(.failure(error))
                case .connection(let failure):
                    completion(.failure(.connectionLost(failure.reason)))
                    throw failure
                }
            }
        case .shutdown:
            break
        }
    }

    private func publish(_ messages: [OutgoingMessage], _ batch: PublishBatch) throws(ConnectionFailure) {
        let contentType = strdup("application/json")
        defer { free(contentType) }
        var next = 0
        do {
            for (index, message) in messages.enumerated() {
                next = index + 1
                try publishOne(message, index: index, batch: batch, contentType: contentType)
                // Read what the broker sent meanwhile (confirms) so neither side's buffers fill up.
                if index % 256 == 255 { try readAvailableFrames() }
            }
        } catch {
            // The messages not yet handed to the broker fail now; those handed over are in the
            // tracker and fail with it when the connection is abandoned.
            for index in next..<messages.count { batch.settle(index, .connectionLost(error.reason)) }
            throw error
        }
    }

    private func publishOne(
        _ message: OutgoingMessage, index: Int, batch: PublishBatch, contentType: UnsafeMutablePointer<CChar>?
    ) throws(ConnectionFailure) {
        let sequence = confirms.published((batch, index, message.destination.description))
        var properties = amqp_basic_properties_t()
        properties._flags = amqp_flags_t(
            AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG)
        properties.content_type = squall_amqp_bytes(contentType)
        properties.delivery_mode = message.persistent ? 2 : 1
        let (exchange, routingKey) = message.destination.exchangeAndRoutingKey
        let status = exchange.withCString { exchange in
            routingKey.withCString { routingKey in
                String(sequence).withCString { messageID in
                    properties.message_id = squall_amqp_bytes(messageID)
                    return message.body.withUnsafeBytes { body in
                        amqp_basic_publish(
                            state, publishChannel, squall_amqp_bytes(exchange), squall_amqp_bytes(routingKey),
                            1, 0, &properties,
                            amqp_bytes_t(
                                len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
                    }
                }
            }
        }
        try check(status, "publishing to \(message.destination)")
        lastHeartbeatSent = .now
    }

    private func settle(_ settlement: Settlement) throws(ConnectionFailure) {
        guard settlement.generation == generation, let record = consumerByChannel[settlement.channel] else {
            settlement.completion(.failure(.deliveryStale(deliveryTag: settlement.deliveryTag)))
            return
        }
        if case .ack(multiple: false) = settlement.kind {
            // Sent at the end of the pass, with the other acks of this channel (UnsettledDeliveries).
            acksToSend[settlement.channel, default: []].append(settlement)
            return
        }
        try sendAcks(on: settlement.channel)  // the acks asked for before this go before it
        let status: Int32
        switch settlement.kind {
        case .ack(let multiple):
            status = amqp_basic_ack(state, settlement.channel, settlement.deliveryTag, multiple ? 1 : 0)
            record.unsettled.settledDirectly(settlement.deliveryTag, multiple: multiple)
            ackFrames.add(1, ordering: .relaxed)
        case .nack(let requeue, let multiple):
            status = amqp_basic_nack(
                state, settlement.channel, settlement.deliveryTag, multiple ? 1 : 0, requeue ? 1 : 0)
            record.unsettled.settledDirectly(settlement.deliveryTag, multiple: multiple)
        case .reject:
            status = amqp_basic_reject(state, settlement.channel, settlement.deliveryTag, 0)
            record.unsettled.settledDirectly(settlement.deliveryTag, multiple: false)
        }
        do {
            try check(status, "settling delivery \(settlement.deliveryTag)")
        } catch {
            settlement.completion(.failure(.connectionLost(error.reason)))
            throw error
        }
        lastHeartbeatSent = .now
        settlement.completion(.success(()))
    }

    /// Sends the acks asked for in this pass, on every channel.
    private func sendAcks() throws(ConnectionFailure) {
        for channel in Array(acksToSend.keys) { try sendAcks(on: channel) }
    }

    /// Sends the acks asked for on `channel`: one `multiple` frame for those that settle its oldest open
    /// deliveries, one frame for each of the others. Each asker hears once its ack is on the socket.
    private func sendAcks(on channel: UInt16) throws(ConnectionFailure) {
        guard let settlements = acksToSend.removeValue(forKey: channel) else { return }
        guard let record = consumerByChannel[channel] else {
            for settlement in settlements {
                settlement.completion(.failure(.deliveryStale(deliveryTag: settlement.deliveryTag)))
            }
            return
        }
        for frame in record.unsettled.ackFrames(for: settlements.map(\.deliveryTag)) {
            let status = amqp_basic_ack(state, channel, frame.tag, frame.multiple ? 1 : 0)
            do {
                try check(status, "acking delivery \(frame.tag)")
            } catch {
                for settlement in settlements { settlement.completion(.failure(.connectionLost(error.reason))) }
                throw error
            }
            ackFrames.add(1, ordering: .relaxed)
        }
        lastHeartbeatSent = .now
        for settlement in settlements { settlement.completion(.success(())) }
    }

    /// Fails the acks not sent yet (the connection or their channel is gone: the broker redelivers).
    private func failAcks(on channel: UInt16? = nil, with error: (UInt64) -> BrokerError) {
        let channels = channel.map { [$0] } ?? Array(acksToSend.keys)
        for channel in channels {
            for settlement in acksToSend.removeValue(forKey: channel) ?? [] {
                settlement.completion(.failure(error(settlement.deliveryTag)))
            }
        }
    }

    // MARK: Frames

    /// Handles frames the library already holds (queued by an RPC, or left in its read buffer).
    private func drainFrames() throws(ConnectionFailure) {
        while amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0 {
            guard try readOneFrame() else { return }
        }
    }

    /// When deliveries came in, waits briefly for the ones right behind them, so that the consuming task
    /// is woken once for a batch instead of once per message (each wake-up costs more than the message).
    /// A command waiting (an ack, a publish) ends the wait at once.
    private func gatherDeliveries() throws(ConnectionFailure) {
        guard !settings.url.tls else { return }  // TLS is polled in slices already
        for _ in 0..<Self.gatherRounds {
            guard consumerByChannel.values.contains(where: \.hasPending) else { return }
            var fds = [
                pollfd(fd: socketFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
            ]
            guard poll(&fds, 2, 1) > 0, fds[1].revents == 0, fds[0].revents != 0 else { return }
            lastReceived = .now
            try readAvailableFrames()
        }
    }

    /// At most this many 1 ms waits for more deliveries before handing over what came.
    static let gatherRounds = 4

    /// Handles every frame that can be read without waiting.
    private func readAvailableFrames() throws(ConnectionFailure) {
        while try readOneFrame() {}
    }

    /// Reads and handles one frame if one is there; false when none is.
    private func readOneFrame() throws(ConnectionFailure) -> Bool {
        var frame = amqp_frame_t()
        var immediately = timeval(tv_sec: 0, tv_usec: 0)
        let status = amqp_simple_wait_frame_noblock(state, &frame, &immediately)
        if status == AMQP_STATUS_TIMEOUT.rawValue { return false }
        try check(status, "reading a frame")
        lastReceived = .now
        try handle(frame)
        return true
    }

    private func handle(_ frame: amqp_frame_t) throws(ConnectionFailure) {
        var frame = frame
        let method = squall_amqp_frame_method(&frame)
        let decoded = squall_amqp_frame_decoded(&frame)
        let channel = frame.channel
        switch method {
        case AMQP_BASIC_DELIVER_METHOD:
            let deliver = decoded!.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            let tag = deliver.delivery_tag
            let redelivered = deliver.redelivered != 0
            let exchange = Self.string(deliver.exchange)
            let routingKey = Self.string(deliver.routing_key)
            var message = amqp_message_t()
            let read = amqp_read_message(state, channel, &message, 0)
            guard squall_amqp_reply_ok(read) != 0 else {
                throw ConnectionFailure(reason: "reading a delivery: \(describe(read))")
            }
            defer { amqp_destroy_message(&message) }
            guard let record = consumerByChannel[channel] else { return }
            record.unsettled.delivered(tag)
            let body = message.body.len > 0 ? Data(bytes: message.body.bytes, count: message.body.len) : Data()
            let count = Self.deliveryCount(message.properties)
            record.deliver(
                Delivery(
                    body: body, redelivered: redelivered, deliveryCount: count ?? (redelivered ? nil : 0),
                    deliveryTag: tag, exchange: exchange, routingKey: routingKey, queue: record.queueName,
                    channel: channel, generation: generation, connection: self))
        case AMQP_BASIC_ACK_METHOD where channel == publishChannel:
            let ack = decoded!.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            for ((batch, index, destination), outcome) in confirms.acked(ack.delivery_tag, multiple: ack.multiple != 0)
            {
                batch.settle(index, Self.error(for: outcome, destination: destination))
            }
        case AMQP_BASIC_NACK_METHOD where channel == publishChannel:
            let nack = decoded!.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            for ((batch, index, destination), outcome) in confirms.nacked(
                nack.delivery_tag, multiple: nack.multiple != 0)
            {
                batch.settle(index, Self.error(for: outcome, destination: destination))
            }
        case AMQP_BASIC_RETURN_METHOD:
            let returned = decoded!.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let code = Int(returned.reply_code)
            let text = Self.string(returned.reply_text)
            var message = amqp_message_t()
            let read = amqp_read_message(state, channel, &message, 0)
            guard squall_amqp_reply_ok(read) != 0 else {
                throw ConnectionFailure(reason: "reading a returned message: \(describe(read))")
            }
            defer { amqp_destroy_message(&message) }
            if message.properties._flags & amqp_flags_t(AMQP_BASIC_MESSAGE_ID_FLAG) != 0,
                let sequence = UInt64(Self.string(message.properties.message_id))
            {
                confirms.returned(sequence: sequence, replyCode: code, replyText: text)
            }
        case AMQP_CHANNEL_CLOSE_METHOD:
            let close = decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            try check(squall_amqp_send_channel_close_ok(state, channel), "answering channel.close")
            try channelClosedByBroker(channel, code: Int(close.reply_code), text: Self.string(close.reply_text))
        case AMQP_CONNECTION_CLOSE_METHOD:
            let close = decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            _ = squall_amqp_send_connection_close_ok(state)
            throw ConnectionFailure(
                reason: "broker closed the connection (\(close.reply_code) \(Self.string(close.reply_text)))")
        case AMQP_BASIC_CANCEL_METHOD:
            // The broker cancelled a consumer (its queue was deleted): end that stream.
            if let record = consumerByChannel.removeValue(forKey: channel) {
                failAcks(on: channel) { .deliveryStale(deliveryTag: $0) }
                consumers.removeValue(forKey: record.id)
                amqp_channel_close(state, channel, AMQP_REPLY_SUCCESS)
                record.finish(
                    throwing: BrokerError.channelClosed(
                        context: "consuming \(record.queueName)", replyCode: 0,
                        replyText: "consumer cancelled by broker"
                    ))
            }
        default:
            break
        }
    }

    private func channelClosedByBroker(_ channel: UInt16, code: Int, text: String) throws(ConnectionFailure) {
        if channel == publishChannel {
            // e.g. a publish to a missing exchange (404): everything unconfirmed on it is lost.
            for (batch, index, destination) in confirms.reset() {
                batch.settle(
                    index, .channelClosed(context: "publishing to \(destination)", replyCode: code, replyText: text))
            }
            try openPublishChannel()
        } else if channel == rpcChannel {
            channelWasClosed(channel)
        } else if let record = consumerByChannel.removeValue(forKey: channel) {
            failAcks(on: channel) { .deliveryStale(deliveryTag: $0) }
            record.channel = 0
            // 404/403: the queue is gone or forbidden, so the stream ends. Anything else (406 when
            // an ack outlasted the broker's consumer_timeout) restarts the consumer on a fresh
            // channel: the broker redelivers the message and the late ack throws deliveryStale.
            if code != 404 && code != 403 {
                logger.info(
                    "broker closed a consumer's channel; consuming again",
                    metadata: ["amqp.queue": "\(record.queueName)", "amqp.reply": "\(code) \(text)"])
                do {
                    try startConsumer(record)
                    return
                } catch {
                    if case .connection(let failure) = error { throw failure }
                }
            }
            consumers.removeValue(forKey: record.id)
            record.finish(
                throwing: BrokerError.channelClosed(
                    context: "consuming \(record.queueName)", replyCode: code, replyText: text))
        }
    }

    // MARK: Teardown

    /// The connection is dead: free it, fail publishes in flight (retryable), keep consumers for
    /// the next connection (the broker redelivers their unacked messages).
    private func abandonConnection(with error: BrokerError) {
        destroyConnection()
        for (batch, index, _) in confirms.reset() { batch.settle(index, error) }
        failAcks { _ in error }
        for record in consumers.values { record.channel = 0 }
        consumerByChannel = [:]
    }

    private func closeGracefully() {
        if state != nil {
            for record in consumers.values { record.finish() }
            consumers = [:]
            failAcks { _ in .shutDown }
            consumerByChannel = [:]
            amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        }
        for (batch, index, _) in confirms.reset() { batch.settle(index, .shutDown) }
        destroyConnection()
    }

    private func destroyConnection() {
        if let state {
            amqp_destroy_connection(state)
        }
        state = nil
        socketFD = -1
    }

    // MARK: Helpers

    private func check(_ status: Int32, _ context: String) throws(ConnectionFailure) {
        guard status == AMQP_STATUS_OK.rawValue else {
            throw ConnectionFailure(reason: "\(context): \(Self.statusText(status))")
        }
    }

    private func describe(_ reply: amqp_rpc_reply_t) -> String {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL: return "ok"
        case AMQP_RESPONSE_NONE: return "no reply"
        case AMQP_RESPONSE_LIBRARY_EXCEPTION: return Self.statusText(reply.library_error)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD {
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                return "broker closed the connection (\(close.reply_code) \(Self.string(close.reply_text)))"
            }
            if reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD {
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                return "broker closed the channel (\(close.reply_code) \(Self.string(close.reply_text)))"
            }
            return "broker exception (method \(reply.reply.id))"
        default: return "unknown reply"
        }
    }

    private static func error(for outcome: ConfirmTracker<PublishToken>.Outcome, destination: String) -> BrokerError? {
        switch outcome {
        case .confirmed: nil
        case .nacked: .publishNacked(destination: destination)
        case .returned(let code, let text): .publishReturned(destination: destination, replyCode: code, replyText: text)
        }
    }

    private static func deliveryCount(_ properties: amqp_basic_properties_t) -> Int? {
        guard properties._flags & amqp_flags_t(AMQP_BASIC_HEADERS_FLAG) != 0,
            let entries = properties.headers.entries
        else { return nil }
        for index in 0..<Int(properties.headers.num_entries) where string(entries[index].key) == "x-delivery-count" {
            var found: Int32 = 0
            let value = withUnsafePointer(to: entries[index].value) { squall_amqp_field_integer($0, &found) }
            return found != 0 ? Int(value) : nil
        }
        return nil
    }

    private static func statusText(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }

    /// Why opening the socket failed; TLS failures say which check failed and against what.
    private static func openFailureText(_ status: Int32, url: AMQPURL, trusted: String) -> String {
        switch status {
        case AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue:
            "TLS: the broker's certificate could not be verified against \(trusted)"
        case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue:
            "TLS: the broker's certificate does not name the host \"\(url.host)\" (rabbitmq-c 0.11 matches "
                + "only the DNS names of the certificate, never its IP addresses: connect by a DNS name)"
        case AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue:
            "TLS handshake failed (is port \(url.port) a TLS listener?)"
        default: statusText(status)
        }
    }

    /// OpenSSL's default CA bundle file (`SSL_CERT_FILE` when set, as OpenSSL itself reads it).
    static var systemCABundle: String {
        if let name = X509_get_default_cert_file_env(), let path = getenv(name), path.pointee != 0 {
            return String(cString: path)
        }
        return String(cString: X509_get_default_cert_file())
    }

    static func string(_ bytes: amqp_bytes_t) -> String {
        guard bytes.len > 0, let pointer = bytes.bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: bytes.len), as: UTF8.self)
    }

    private static func makeTimeval(_ duration: Duration) -> timeval {
        let (seconds, attoseconds) = duration.components
        return timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

/// C strings that live until this object goes away: arguments of one rabbitmq-c call.
private final class CStrings {
    private var pointers: [UnsafeMutablePointer<CChar>] = []

    func cString(_ text: String) -> UnsafePointer<CChar> {
        let pointer = strdup(text)!
        pointers.append(pointer)
        return UnsafePointer(pointer)
    }

    func bytes(_ text: String) -> amqp_bytes_t {
        squall_amqp_bytes(cString(text))
    }

    deinit {
        for pointer in pointers { free(pointer) }
    }
}

extension Duration {
    fileprivate var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
