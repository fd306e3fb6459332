import ArgumentParser

/// The settings every executable shares, each a flag and an environment variable (the flag wins).
///
/// Executables embed it with `@OptionGroup` and call ``resolve(environment:)`` in `main`.
public struct CommonOptions: ParsableArguments, Sendable {
    @Option(
        name: .customLong("database-url"),
        help: "PostgreSQL URL postgres://user:pass@host:port/db?sslmode=… (env SQUALL_DATABASE_URL).")
    public var databaseURL: String?

    @Option(
        name: .customLong("amqp-url"),
        help: "RabbitMQ URL amqp://user:pass@host:port/vhost, amqps:// for TLS (env SQUALL_AMQP_URL).")
    public var amqpURL: String?

    @Option(name: .customLong("s3-endpoint"), help: "S3 endpoint URL; empty means AWS (env SQUALL_S3_ENDPOINT).")
    public var s3Endpoint: String?

    @Option(name: .customLong("s3-region"), help: "Region for SigV4 signing, default us-east-1 (env SQUALL_S3_REGION).")
    public var s3Region: String?

    @Option(
        name: .customLong("s3-path-style"),
        help: "1 for path-style addressing, for emulators and MinIO (env SQUALL_S3_PATH_STYLE).")
    public var s3PathStyle: String?

    @Option(name: .customLong("aws-access-key-id"), help: "S3 access key id (env AWS_ACCESS_KEY_ID).")
    public var awsAccessKeyID: String?

    @Option(
        name: .customLong("aws-secret-access-key"),
        help: "S3 secret key (env AWS_SECRET_ACCESS_KEY; prefer the environment: flags show in ps).")
    public var awsSecretAccessKey: String?

    @Option(
        name: .customLong("aws-session-token"),
        help: "S3 session token (env AWS_SESSION_TOKEN; prefer the environment).")
    public var awsSessionToken: String?

    @Option(
        name: .customLong("http-port"),
        help: "Port of the health and metrics endpoint; 0 or unset turns it off (env SQUALL_HTTP_PORT).")
    public var httpPort: String?

    @Option(
        name: .customLong("http-host"),
        help: "Address the health and metrics endpoint binds, default 0.0.0.0 (env SQUALL_HTTP_HOST).")
    public var httpHost: String?

    @Option(
        name: .customLong("node-name"), help: "This node's identity, default host name and pid (env SQUALL_NODE_NAME).")
    public var nodeName: String?

    @Option(
        name: .customLong("log-format"), help: "text (default) or json, one object per line (env SQUALL_LOG_FORMAT).")
    public var logFormat: String?

    @Option(
        name: .customLong("allow-private-sources"),
        help:
            "1 to allow sources in loopback and private ranges; metadata addresses stay refused (env SQUALL_ALLOW_PRIVATE_SOURCES)."
    )
    public var allowPrivateSources: String?

    @Option(
        name: .customLong("queue-prefix"),
        help:
            "Prefix of every queue and exchange name, empty by default; lets several deployments or tests share one broker (env SQUALL_QUEUE_PREFIX)."
    )
    public var queuePrefix: String?

    public init() {}

    /// Merges flags over `environment` and validates every value, naming the flag or variable at fault.
    public func resolve(
        environment: [String: String], defaultNodeName: String
    ) throws(ConfigurationError) -> SquallConfiguration {
        func pick(_ flag: String?, _ flagName: String, _ variable: String) -> (value: String, setting: String)? {
            if let flag { return (flag, "--\(flagName)") }
            if let value = environment[variable], !value.isEmpty { return (value, variable) }
            return nil
        }

        var configuration = SquallConfiguration(nodeName: defaultNodeName)
        if let (value, setting) = pick(databaseURL, "database-url", "SQUALL_DATABASE_URL") {
            configuration.databaseURL = try DatabaseURL(parsing: value, setting: setting)
        }
        if let (value, setting) = pick(amqpURL, "amqp-url", "SQUALL_AMQP_URL") {
            configuration.amqpURL = try AMQPURL(parsing: value, setting: setting)
        }
        if let (value, setting) = pick(s3Endpoint, "s3-endpoint", "SQUALL_S3_ENDPOINT") {
            let url = try ServiceURL(parsing: value, setting: setting)
            guard url.scheme == "http" || url.scheme == "https" else {
                throw ConfigurationError(
                    setting: setting, reason: "scheme \"\(url.scheme)\" is not http:// or https://")
            }
            guard url.user == nil else {
                throw ConfigurationError(setting: setting, reason: "must not carry credentials; use AWS_ACCESS_KEY_ID")
            }
            configuration.s3.endpoint = value.hasSuffix("/") ? String(value.dropLast()) : value
        }
        if let (value, setting) = pick(s3Region, "s3-region", "SQUALL_S3_REGION") {
            guard value.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw ConfigurationError(setting: setting, reason: "region \"\(value)\" is not a region name")
            }
            configuration.s3.region = value
        }
        if let (value, setting) = pick(s3PathStyle, "s3-path-style", "SQUALL_S3_PATH_STYLE") {
            configuration.s3.pathStyle = try Self.flag(value, setting: setting)
        }
        let accessKey = pick(awsAccessKeyID, "aws-access-key-id", "AWS_ACCESS_KEY_ID")
        let secretKey = pick(awsSecretAccessKey, "aws-secret-access-key", "AWS_SECRET_ACCESS_KEY")
        switch (accessKey, secretKey) {
        case (let access?, let secret?):
            let token = pick(awsSessionToken, "aws-session-token", "AWS_SESSION_TOKEN")
            configuration.s3.credentials = S3Credentials(
                accessKeyID: access.value, secretAccessKey: Secret(secret.value),
                sessionToken: token.map { Secret($0.value) })
        case (let access?, nil):
            throw ConfigurationError(
                setting: "AWS_SECRET_ACCESS_KEY", reason: "is not set although \(access.setting) is")
        case (nil, let secret?):
            throw ConfigurationError(setting: "AWS_ACCESS_KEY_ID", reason: "is not set although \(secret.setting) is")
        case (nil, nil):
            break
        }
        if let (value, setting) = pick(httpPort, "http-port", "SQUALL_HTTP_PORT") {
            guard let port = Int(value), (0...65535).contains(port) else {
                throw ConfigurationError(setting: setting, reason: "port \"\(value)\" is not a number in 0...65535")
            }
            configuration.httpPort = port == 0 ? nil : port
        }
        if let (value, setting) = pick(httpHost, "http-host", "SQUALL_HTTP_HOST") {
            guard !value.isEmpty, value.allSatisfy({ $0.isLetter || $0.isNumber || ".:-".contains($0) }) else {
                throw ConfigurationError(setting: setting, reason: "\"\(value)\" is not a host name or IP address")
            }
            configuration.httpHost = value
        }
        if let (value, setting) = pick(nodeName, "node-name", "SQUALL_NODE_NAME") {
            guard value.count <= 200, value.allSatisfy({ !$0.isWhitespace && !$0.isNewline }) else {
                throw ConfigurationError(
                    setting: setting, reason: "node name \"\(value)\" must be ≤ 200 characters without spaces")
            }
            configuration.nodeName = value
        }
        if let (value, setting) = pick(logFormat, "log-format", "SQUALL_LOG_FORMAT") {
            guard let format = LogFormat(rawValue: value.lowercased()) else {
                throw ConfigurationError(setting: setting, reason: "log format \"\(value)\" is not text or json")
            }
            configuration.logFormat = format
        }
        if let (value, setting) = pick(allowPrivateSources, "allow-private-sources", "SQUALL_ALLOW_PRIVATE_SOURCES") {
            configuration.allowPrivateSources = try Self.flag(value, setting: setting)
        }
        if let (value, setting) = pick(queuePrefix, "queue-prefix", "SQUALL_QUEUE_PREFIX") {
            guard value.count <= 100,
                value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) })
            else {
                throw ConfigurationError(
                    setting: setting, reason: "queue prefix \"\(value)\" must be ≤ 100 letters, digits, '.', '_' or '-'"
                )
            }
            configuration.queuePrefix = value
        }
        return configuration
    }

    private static func flag(_ value: String, setting: String) throws(ConfigurationError) -> Bool {
        switch value.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off", "": return false
        default: throw ConfigurationError(setting: setting, reason: "\"\(value)\" is not 1 or 0")
        }
    }
}
