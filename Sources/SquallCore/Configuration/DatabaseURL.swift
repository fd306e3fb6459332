/// Where PostgreSQL is: `postgres://user:pass@host:port/db?sslmode=…` (`SQUALL_DATABASE_URL`).
public struct DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    public static let sslModes: Set<String> = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    public var host: String
    public var port: Int
    public var user: String?
    public var password: Secret?
    public var database: String
    public var sslMode: String?

    public init(parsing text: String, setting: String = "SQUALL_DATABASE_URL") throws(ConfigurationError) {
        let url = try ServiceURL(parsing: text, setting: setting)
        guard url.scheme == "postgres" || url.scheme == "postgresql" else {
            throw ConfigurationError(
                setting: setting, reason: "scheme \"\(url.scheme)\" is not postgres:// or postgresql://")
        }
        host = url.host
        port = url.port ?? 5432
        user = url.user
        password = url.password
        guard !url.path.isEmpty, !url.path.contains("/") else {
            throw ConfigurationError(setting: setting, reason: "database name is missing (postgres://host/DATABASE)")
        }
        database = url.path
        for item in url.query where item.name != "sslmode" && item.name != "connect_timeout" {
            throw ConfigurationError(setting: setting, reason: "query parameter \"\(item.name)\" is not supported")
        }
        sslMode = url.queryValue("sslmode")
        if let sslMode, !Self.sslModes.contains(sslMode) {
            throw ConfigurationError(
                setting: setting,
                reason: "sslmode \"\(sslMode)\" is not one of \(Self.sslModes.sorted().joined(separator: ", "))")
        }
    }

    /// The URL with the password masked.
    public var description: String {
        var text = "postgres://"
        if let user { text += user + (password == nil ? "" : ":\(Secret.mask)") + "@" }
        text += host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        text += "/\(database)"
        if let sslMode { text += "?sslmode=\(sslMode)" }
        return text
    }

    /// Keyword/value pairs for `PQconnectdbParams`: no string is spliced, so no quoting can go wrong.
    public var connectionParameters: [(keyword: String, value: String)] {
        var parameters: [(String, String)] = [
            ("host", host), ("port", String(port)), ("dbname", database),
            ("application_name", "squall"), ("connect_timeout", "10"),
        ]
        if let user { parameters.append(("user", user)) }
        if let password { parameters.append(("password", password.revealed)) }
        if let sslMode { parameters.append(("sslmode", sslMode)) }
        return parameters
    }
}
