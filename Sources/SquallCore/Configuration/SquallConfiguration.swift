/// Everything a Squall executable is configured with, after flags and environment are merged.
///
/// Built once in `main` (see ``CommonOptions``) and passed down: nothing below `main` reads the
/// environment. Its `description` is safe to log: every secret is masked.
public struct SquallConfiguration: Sendable, CustomStringConvertible {
    public var databaseURL: DatabaseURL?
    public var amqpURL: AMQPURL?
    public var s3: S3Configuration
    public var httpPort: Int?
    /// The address the endpoint binds: all interfaces by default (containers), loopback for local runs.
    public var httpHost: String
    public var nodeName: String
    public var logFormat: LogFormat
    /// Whether sources in loopback and private ranges may be fetched (never link-local/metadata).
    public var allowPrivateSources: Bool
    /// Prepended to every queue and exchange name (see ``Topology``); empty in a normal deployment.
    public var queuePrefix: String = ""

    /// The broker names this configuration uses.
    public var topology: Topology { Topology(prefix: queuePrefix) }

    public init(
        databaseURL: DatabaseURL? = nil, amqpURL: AMQPURL? = nil, s3: S3Configuration = S3Configuration(),
        httpPort: Int? = nil, httpHost: String = "0.0.0.0", nodeName: String, logFormat: LogFormat = .text,
        allowPrivateSources: Bool = false
    ) {
        self.databaseURL = databaseURL
        self.amqpURL = amqpURL
        self.s3 = s3
        self.httpPort = httpPort
        self.httpHost = httpHost
        self.nodeName = nodeName
        self.logFormat = logFormat
        self.allowPrivateSources = allowPrivateSources
    }

    /// The database URL, or an error telling the operator how to set it.
    public func requireDatabaseURL() throws(ConfigurationError) -> DatabaseURL {
        guard let databaseURL else {
            throw ConfigurationError(setting: "SQUALL_DATABASE_URL", reason: "is not set (or pass --database-url)")
        }
        return databaseURL
    }

    /// The broker URL, or an error telling the operator how to set it.
    public func requireAMQPURL() throws(ConfigurationError) -> AMQPURL {
        guard let amqpURL else {
            throw ConfigurationError(setting: "SQUALL_AMQP_URL", reason: "is not set (or pass --amqp-url)")
        }
        return amqpURL
    }

    public var description: String {
        [
            "database=\(databaseURL.map(String.init(describing:)) ?? "unset")",
            "amqp=\(amqpURL.map(String.init(describing:)) ?? "unset")",
            "s3.endpoint=\(s3.endpoint ?? "aws")",
            "s3.region=\(s3.region)",
            "s3.path-style=\(s3.pathStyle)",
            "s3.credentials=\(s3.credentials.map(String.init(describing:)) ?? "none")",
            "http-port=\(httpPort.map(String.init) ?? "off")",
            "http-host=\(httpHost)",
            "node=\(nodeName)",
            "log-format=\(logFormat.rawValue)",
            "allow-private-sources=\(allowPrivateSources)",
            "queue-prefix=\(queuePrefix.isEmpty ? "none" : queuePrefix)",
        ].joined(separator: " ")
    }
}

/// How logs are written: human text lines, or one JSON object per line for log collectors.
public enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json
}

/// Where and how S3 is reached.
public struct S3Configuration: Sendable, Equatable {
    /// `http(s)://host:port` of an S3-compatible service; `nil` means AWS.
    public var endpoint: String?
    /// The SigV4 signing region.
    public var region: String
    /// Path-style addressing (`endpoint/bucket/key`), which emulators and MinIO need.
    public var pathStyle: Bool
    public var credentials: S3Credentials?

    public init(
        endpoint: String? = nil, region: String = "us-east-1", pathStyle: Bool = false,
        credentials: S3Credentials? = nil
    ) {
        self.endpoint = endpoint
        self.region = region
        self.pathStyle = pathStyle
        self.credentials = credentials
    }
}

/// AWS-style credentials; the secret parts are ``Secret``s.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: Secret
    public var sessionToken: Secret?

    public init(accessKeyID: String, secretAccessKey: Secret, sessionToken: Secret? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// The access key id's first four characters only: enough to tell keys apart in a log.
    public var description: String {
        "\(accessKeyID.prefix(4))…(secret \(Secret.mask)\(sessionToken == nil ? "" : ", session token \(Secret.mask)"))"
    }
}
