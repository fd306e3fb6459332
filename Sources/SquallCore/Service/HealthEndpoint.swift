import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// The HTTP endpoint every Squall service runs: `/healthz`, `/readyz` and `/metrics`.
///
/// `/healthz` answers 200 while the process can answer at all (Kubernetes' liveness probe: a
/// restart fixes nothing else). `/readyz` answers 200 only when every ``ReadinessChecks`` check
/// passes and 503 with a JSON body naming the failing ones otherwise (the readiness probe: a
/// Consumer whose broker is down is alive but not ready). `/metrics` is the Prometheus text
/// exposition of `registry`. A lifecycle `Service`: it stops accepting connections on graceful
/// shutdown and finishes the requests in progress.
public struct HealthEndpoint: Service {
    public struct Configuration: Sendable {
        /// `0.0.0.0` in containers, so the kubelet and Prometheus reach it; `127.0.0.1` in tests.
        public var host: String
        /// 0 lets the system choose (tests read the bound port from `onListening`).
        public var port: Int

        public init(host: String = "0.0.0.0", port: Int) {
            self.host = host
            self.port = port
        }
    }

    public let configuration: Configuration
    private let readiness: ReadinessChecks
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger
    private let onListening: @Sendable (Int) async -> Void

    /// - Parameter onListening: called once the socket is bound, with the bound port.
    public init(
        configuration: Configuration, readiness: ReadinessChecks, registry: PrometheusCollectorRegistry,
        logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.readiness = readiness
        self.registry = registry
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let router = Router()
        let readiness = self.readiness
        let registry = self.registry
        router.get("healthz") { _, _ in
            Self.response(.ok, contentType: "text/plain; charset=utf-8", body: "ok\n")
        }
        router.get("readyz") { _, _ in
            let report = await readiness.evaluate()
            return Self.response(
                report.isReady ? .ok : .serviceUnavailable, contentType: "application/json",
                body: report.json + "\n")
        }
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        let logger = self.logger
        let onListening = self.onListening
        let application = Application(
            router: router,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("http endpoint listening", metadata: ["http.port": "\(port)"])
                await onListening(port)
            },
            logger: logger)
        try await application.run()
    }

    private static func response(_ status: HTTPResponse.Status, contentType: String, body: String) -> Response {
        Response(
            status: status, headers: [.contentType: contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
