import Foundation
import Logging
import Testing

@testable import SquallCore
@testable import SquallTestSupport

/// `amqps://` against the development broker's TLS listener (`scripts/services`: a throw-away CA,
/// a certificate for `DNS:localhost, IP:127.0.0.1`, exported as `SQUALL_TEST_AMQPS_URL`).
///
/// The queues are cleaned up over the plain listener of the same broker (`SQUALL_AMQP_URL`).
@Suite("Broker over TLS (amqps://)", .needs("SQUALL_TEST_AMQPS_URL", "SQUALL_AMQP_URL"))
struct BrokerTLSTests {
    /// The TLS URL as `scripts/services env` prints it: host `localhost`, `?cacertfile=` its CA.
    static func tlsURLText() throws -> String { try ServiceEnvironment.value("SQUALL_TEST_AMQPS_URL") }

    static func tlsURL(heartbeat: Int = 5) throws -> AMQPURL {
        var url = try AMQPURL(parsing: try tlsURLText(), setting: "SQUALL_TEST_AMQPS_URL")
        url.heartbeatSeconds = heartbeat
        return url
    }

    static func broker(
        _ url: AMQPURL, topology: Topology, readyTimeout: Duration = .seconds(30), logger: Logger = BrokerFixture.logger
    ) -> Broker {
        Broker(
            configuration: Broker.Configuration(
                url: url, topology: topology,
                reconnect: ReconnectPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(1)),
                readyTimeout: readyTimeout, connectTimeout: .seconds(2)),
            logger: logger)
    }

    /// Starts a broker on `url` that must not connect; returns its error, how long `start()` took
    /// (it retries in the background until `readyTimeout`, 3 s), and every log line it wrote.
    static func failedStart(_ url: AMQPURL) async throws -> (error: BrokerError, elapsed: Duration, logs: [String]) {
        let logs = Collected<String>()
        let logger = Logger(label: "squall.test.broker.tls") { _ in CollectingLogHandler(lines: logs) }
        let broker = Self.broker(url, topology: BrokerFixture.topology(), readyTimeout: .seconds(3), logger: logger)
        let started = ContinuousClock.now
        var caught: BrokerError?
        do {
            try await broker.start()
        } catch {
            caught = error
        }
        let elapsed = started.duration(to: .now)
        await broker.shutdown()
        let error = try #require(caught, "start() succeeded on \(url)")
        return (error, elapsed, logs.all)
    }

    /// Neither the error (as text, and as reflected) nor any log line holds a password.
    static func expectNoSecret(
        _ error: BrokerError, logs: [String], passwords: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let texts = ["\(error)", String(reflecting: error), error.description] + logs
        for password in passwords {
            #expect(!password.isEmpty, sourceLocation: sourceLocation)
            for text in texts {
                #expect(!text.contains(password), "a password in: \(text)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("over amqps:// with the CA: a confirmed publish and a batch, consumed in order with their bodies, acked")
    func confirmedRoundTripOverTLS() async throws {
        let url = try Self.tlsURL()
        #expect(url.tls && url.verifyPeer && url.caCertificatePath != nil && url.host == "localhost")
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = Self.broker(url, topology: topology)
        try await broker.start()

        let deliveries = try await broker.consume(queue: topology.jobs, prefetch: 50)
        let body = "over TLS \(UUID().uuidString)"
        try await broker.publish(Data(text: body), to: .queue(topology.jobs))
        // Many frames at once: deliveries decrypted into OpenSSL's buffer, where poll() cannot see them.
        let count = 500
        try await broker.publishBatch(
            (0..<count).map { OutgoingMessage(body: Data(text: "tls-\($0)"), destination: .queue(topology.jobs)) })

        var iterator = deliveries.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        #expect(first.body.text == body)
        #expect(!first.redelivered)
        try await first.ack()
        var bodies: [String] = []
        while bodies.count < count {
            let delivery = try #require(try await iterator.next())
            bodies.append(delivery.body.text)
            try await delivery.ack()
        }
        #expect(bodies == (0..<count).map { "tls-\($0)" })
        #expect(try await eventually(timeout: .seconds(5)) { try await broker.queueDepth(topology.jobs) == 0 })
        #expect(broker.negotiatedHeartbeatSeconds == 5)
        #expect(broker.connectionsOpened == 1)
        await broker.shutdown()
    }

    @Test("over amqps:// a connection idle for three 5 s heartbeat intervals stays open and still publishes")
    func idleTLSConnectionKeepsHeartbeating() async throws {
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = Self.broker(try Self.tlsURL(heartbeat: 5), topology: topology)
        try await broker.start()
        try await Task.sleep(for: .seconds(15))
        #expect(broker.isReady)
        #expect(broker.connectionsOpened == 1, "the TLS connection dropped while idle (missed heartbeats?)")
        try await broker.publish(Data(text: "after idling"), to: .queue(topology.jobs))
        #expect(try await broker.queueDepth(topology.jobs) == 1)
        await broker.shutdown()
    }

    @Test("a certificate the CA file does not vouch for is refused, soon, with an error naming the verification")
    func foreignCARefused() async throws {
        let folder = try TLSScratch.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let foreignCA = try await TLSScratch.makeCA(in: folder)
        var url = try Self.tlsURL()
        url.caCertificatePath = foreignCA

        let (error, elapsed, logs) = try await Self.failedStart(url)
        #expect(
            error.description.contains(
                "TLS: the broker's certificate could not be verified against the CA file \"\(foreignCA)\""),
            "\(error)")
        #expect(error.isRetryable)
        #expect(elapsed < .seconds(15), "start() took \(elapsed)")
        Self.expectNoSecret(error, logs: logs, passwords: [url.password.revealed])
    }

    @Test("without ?cacertfile= the system CA bundle is what verifies, and it does not know the development CA")
    func systemBundleDoesNotKnowTheDevelopmentCA() async throws {
        var url = try Self.tlsURL()
        url.caCertificatePath = nil
        let bundle = AMQPConnection.systemCABundle
        let (error, elapsed, logs) = try await Self.failedStart(url)
        if FileManager.default.fileExists(atPath: bundle) {
            #expect(
                error.description.contains(
                    "TLS: the broker's certificate could not be verified against the system CA bundle \"\(bundle)\""),
                "\(error)")
        } else {
            #expect(
                error.description.contains("TLS: the system CA bundle \"\(bundle)\" could not be loaded"), "\(error)")
        }
        #expect(elapsed < .seconds(15), "start() took \(elapsed)")
        Self.expectNoSecret(error, logs: logs, passwords: [url.password.revealed])
    }

    @Test(
        "the system CA bundle is loaded when no ?cacertfile= is given: with SSL_CERT_FILE at the development CA, a child connects"
    )
    func systemBundleIsUsed() async throws {
        let ca = try ServiceEnvironment.value("SQUALL_TEST_AMQPS_CA")
        let text = try Self.tlsURLText()
        let withoutCA = String(text[..<(text.firstIndex(of: "?") ?? text.endIndex)])
        #expect(try AMQPURL(parsing: withoutCA).caCertificatePath == nil)
        let prefix = "t-\(UUID().uuidString.prefix(8).lowercased())."
        defer { BrokerFixture.delete(Topology(prefix: prefix)) }
        // bench/transport's measuring tool: 20 batched publishes, consumed and acked, then 5 single ones.
        let run = try await TLSScratch.offPool {
            try BuiltExecutable("TransportBench").run(
                [withoutCA, prefix, "20", "10", "10", "5", "5"], environment: ["SSL_CERT_FILE": ca])
        }
        #expect(run.status == 0, "\(run.output)")
        // Its last line is its JSON report: every message published, consumed and acked.
        let report = try #require(run.output.split(separator: "\n").last, "\(run.output)")
        let numbers = try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Double]
        #expect(numbers?["messages"] == 20 && numbers?["single_messages"] == 5, "\(run.output)")
    }

    @Test(
        "host-name verification: 127.0.0.1 is refused although the chain verifies (rabbitmq-c 0.11 matches DNS names only)"
    )
    func hostNameVerified() async throws {
        var url = try Self.tlsURL()
        url.host = "127.0.0.1"
        let (error, elapsed, logs) = try await Self.failedStart(url)
        #expect(
            error.description.contains("TLS: the broker's certificate does not name the host \"127.0.0.1\""), "\(error)"
        )
        #expect(!error.description.contains("could not be verified"), "the chain itself is trusted: \(error)")
        #expect(elapsed < .seconds(15), "start() took \(elapsed)")
        Self.expectNoSecret(error, logs: logs, passwords: [url.password.revealed])
    }

    @Test("?verify=0 connects to the same listener with no CA and by IP address, and round-trips a message")
    func verifyOffConnects() async throws {
        let text = try Self.tlsURLText()
        let base = String(text[..<(text.firstIndex(of: "?") ?? text.endIndex)])
        let at = try #require(base.range(of: "@localhost:"))
        let unverified = base.replacingCharacters(in: at, with: "@127.0.0.1:") + "?verify=0&heartbeat=5"
        let url = try AMQPURL(parsing: unverified)
        #expect(url.tls && !url.verifyPeer && url.caCertificatePath == nil && url.host == "127.0.0.1")
        let topology = BrokerFixture.topology()
        defer { BrokerFixture.delete(topology) }
        let broker = Self.broker(url, topology: topology)
        try await broker.start()
        let deliveries = try await broker.consume(queue: topology.jobs, prefetch: 1)
        let body = "unverified \(UUID().uuidString)"
        try await broker.publish(Data(text: body), to: .queue(topology.jobs))
        var iterator = deliveries.makeAsyncIterator()
        let delivery = try #require(try await iterator.next())
        #expect(delivery.body.text == body)
        try await delivery.ack()
        await broker.shutdown()
    }

    @Test("amqps:// to the plain AMQP listener fails soon as a TLS handshake failure")
    func tlsToPlainListenerFails() async throws {
        let plain = try BrokerFixture.url()
        var url = try Self.tlsURL()
        url.port = plain.port
        let (error, elapsed, logs) = try await Self.failedStart(url)
        #expect(error.description.contains("TLS handshake failed (is port \(plain.port) a TLS listener?)"), "\(error)")
        #expect(elapsed < .seconds(15), "start() took \(elapsed)")
        Self.expectNoSecret(error, logs: logs, passwords: [url.password.revealed])
    }

    @Test("a refused login over TLS names the user but neither the wrong password nor the right one")
    func refusedLoginKeepsPasswordsOut() async throws {
        let right = try Self.tlsURL().password.revealed
        var url = try Self.tlsURL()
        let wrong = "wrong-\(UUID().uuidString)"
        url.password = Secret(wrong)
        let (error, elapsed, logs) = try await Self.failedStart(url)
        #expect(error.description.contains("login as \(url.user)"), "\(error)")
        #expect(elapsed < .seconds(15), "start() took \(elapsed)")
        Self.expectNoSecret(error, logs: logs, passwords: [wrong, right])
    }
}

/// Keeps every log line (message and metadata) so a test can look for secrets in them.
struct CollectingLogHandler: LogHandler {
    let lines: Collected<String>
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { _, new in new }
        lines.append("\(event.level) \(event.message) \(all.map { "\($0.key)=\($0.value)" }.sorted())")
    }
}
