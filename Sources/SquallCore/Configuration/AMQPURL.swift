/// Where RabbitMQ is: `amqp://user:pass@host:port/vhost`, or `amqps://` for TLS (`SQUALL_AMQP_URL`).
public struct AMQPURL: Sendable, Equatable, CustomStringConvertible {
    public var tls: Bool
    public var host: String
    public var port: Int
    public var user: String
    public var password: Secret
    /// The virtual host, percent-decoded (`%2F` is `/`, the default).
    public var virtualHost: String
    /// The heartbeat to ask the broker for, in seconds (`?heartbeat=N`, default 30; 0 turns it off).
    public var heartbeatSeconds: Int
    /// Verify the broker's certificate (`amqps` only; `?verify=0` turns it off for test brokers).
    public var verifyPeer: Bool
    /// A CA bundle to verify the broker with (`?cacertfile=/path`).
    public var caCertificatePath: String?

    public init(parsing text: String, setting: String = "SQUALL_AMQP_URL") throws(ConfigurationError) {
        let url = try ServiceURL(parsing: text, setting: setting)
        switch url.scheme {
        case "amqp": tls = false
        case "amqps": tls = true
        default:
            throw ConfigurationError(setting: setting, reason: "scheme \"\(url.scheme)\" is not amqp:// or amqps://")
        }
        host = url.host
        port = url.port ?? (tls ? 5671 : 5672)
        user = url.user ?? "guest"
        password = url.password ?? Secret("guest")
        // An absent path means the default vhost "/"; "/%2F" spells it too; "/name" is "name".
        virtualHost = url.path.isEmpty ? "/" : url.path
        heartbeatSeconds = 30
        verifyPeer = true
        for item in url.query {
            switch item.name {
            case "heartbeat":
                guard let seconds = Int(item.value), (0...3600).contains(seconds) else {
                    throw ConfigurationError(
                        setting: setting, reason: "heartbeat \"\(item.value)\" is not a number of seconds (0...3600)")
                }
                heartbeatSeconds = seconds
            case "verify":
                verifyPeer = !["0", "false", "no", "verify_none"].contains(item.value.lowercased())
            case "cacertfile":
                caCertificatePath = item.value
            default:
                throw ConfigurationError(setting: setting, reason: "query parameter \"\(item.name)\" is not supported")
            }
        }
    }

    /// The URL with the password masked.
    public var description: String {
        let encodedHost = host.contains(":") ? "[\(host)]" : host
        let vhost = virtualHost == "/" ? "%2F" : virtualHost
        return "\(tls ? "amqps" : "amqp")://\(user):\(Secret.mask)@\(encodedHost):\(port)/\(vhost)"
    }
}
