import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization

/// What every service executable does in `main` before its own work: configuration, logging, identity.
public enum ServiceLauncher {
    /// The default node name: host name and process id, unique across a swarm of pods.
    public static func defaultNodeName() -> String {
        "\(ProcessInfo.processInfo.hostName)-\(getpid())"
    }

    /// Resolves `options` against the process environment and bootstraps logging, or exits with the error.
    ///
    /// A configuration error is printed to standard error, naming the variable or flag, and the
    /// process exits 64 (EX_USAGE) before anything else starts.
    public static func configure(_ options: CommonOptions, role: Heartbeat.Role) -> (SquallConfiguration, Logger) {
        let configuration: SquallConfiguration
        do {
            configuration = try options.resolve(
                environment: ProcessInfo.processInfo.environment, defaultNodeName: defaultNodeName())
        } catch {
            FileHandle.standardError.write(Data("squall-\(role.rawValue): \(error)\n".utf8))
            exit(64)
        }
        SquallLogHandler.bootstrap(format: configuration.logFormat)
        var logger = Logger(label: "squall-\(role.rawValue)")
        logger[metadataKey: "node"] = "\(configuration.nodeName)"
        logger.info("starting", metadata: ["configuration": "\(configuration)"])
        return (configuration, logger)
    }

    /// Makes swift-metrics record into a Prometheus registry and returns it, for ``healthEndpoint(_:readiness:registry:logger:)``.
    ///
    /// Call once, in `main` (swift-metrics allows one bootstrap per process); later calls return the
    /// same registry. Tests never call it: they pass their own `PrometheusCollectorRegistry`.
    public static func bootstrapMetrics() -> PrometheusCollectorRegistry {
        bootstrappedRegistry.withLock { registry in
            if let registry { return registry }
            let created = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: created))
            registry = created
            return created
        }
    }

    private static let bootstrappedRegistry = Mutex<PrometheusCollectorRegistry?>(nil)

    /// The health/readiness/metrics endpoint as a service to run, or none when `httpPort` is off.
    public static func healthEndpoint(
        _ configuration: SquallConfiguration, readiness: ReadinessChecks, registry: PrometheusCollectorRegistry,
        logger: Logger
    ) -> [any Service] {
        guard let port = configuration.httpPort else { return [] }
        return [
            HealthEndpoint(
                configuration: .init(host: configuration.httpHost, port: port), readiness: readiness,
                registry: registry, logger: logger)
        ]
    }

    /// Runs `services` until SIGTERM or SIGINT, then shuts them down gracefully within `gracePeriod`.
    public static func run(
        _ services: [any Service], gracePeriod: Duration = .seconds(25), logger: Logger
    ) async throws {
        var configuration = ServiceGroupConfiguration(
            services: ([RunningMarker(logger: logger)] + services).map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = gracePeriod
        let group = ServiceGroup(configuration: configuration)
        try await group.run()
        logger.info("stopped")
    }
}

/// Logs "running" once the service group has trapped SIGTERM and SIGINT and started its services.
///
/// ServiceGroup installs its signal handlers before it starts any service, so this line is the
/// moment from which a signal means a graceful shutdown; before it, SIGTERM kills the process with
/// the default action. Scripts and tests that signal a service wait for this line, not "starting".
struct RunningMarker: Service {
    let logger: Logger

    func run() async throws {
        logger.info("running")
        try? await gracefulShutdown()
    }
}

/// A service that does nothing until shutdown: holds a process open while its real work is not built yet.
public struct IdleService: Service {
    public init() {}

    public func run() async throws {
        try? await gracefulShutdown()
    }
}
