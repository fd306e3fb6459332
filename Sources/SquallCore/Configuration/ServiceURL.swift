/// The parts of a `scheme://user:password@host:port/path?query` URL, percent-decoded.
///
/// Foundation's `URL` accepts too much and explains too little; operators need to be told which
/// part of `SQUALL_DATABASE_URL` is wrong, so this parser reports the offending part by name.
public struct ServiceURL: Sendable, Equatable {
    public var scheme: String
    public var user: String?
    public var password: Secret?
    public var host: String
    public var port: Int?
    /// The path after the first `/`, percent-decoded; empty when absent.
    public var path: String
    /// Query items in order, percent-decoded.
    public var query: [(name: String, value: String)]

    public static func == (lhs: ServiceURL, rhs: ServiceURL) -> Bool {
        lhs.scheme == rhs.scheme && lhs.user == rhs.user && lhs.password == rhs.password && lhs.host == rhs.host
            && lhs.port == rhs.port && lhs.path == rhs.path
            && lhs.query.map { "\($0.name)=\($0.value)" } == rhs.query.map { "\($0.name)=\($0.value)" }
    }

    /// Parses `text`; errors name `setting` and never quote the password.
    public init(parsing text: String, setting: String) throws(ConfigurationError) {
        func fail(_ reason: String) -> ConfigurationError { ConfigurationError(setting: setting, reason: reason) }

        guard !text.isEmpty else { throw fail("is empty") }
        guard let schemeEnd = text.range(of: "://") else {
            throw fail("\"\(ServiceURL.masking(text))\" is not a URL (expected scheme://host)")
        }
        scheme = String(text[..<schemeEnd.lowerBound]).lowercased()
        guard !scheme.isEmpty, scheme.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" }) else {
            throw fail("scheme \"\(scheme)\" is not valid")
        }
        var rest = Substring(text[schemeEnd.upperBound...])

        var queryText: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            queryText = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var pathText: Substring = ""
        var hasPath = false
        if let slash = rest.firstIndex(of: "/") {
            pathText = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            hasPath = true
        }
        var authority = rest
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.decode(userInfo[..<colon], part: "user", setting: setting)
                password = Secret(
                    try Self.decode(userInfo[userInfo.index(after: colon)...], part: "password", setting: setting))
            } else {
                user = try Self.decode(userInfo, part: "user", setting: setting)
            }
        }

        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw fail("host \"\(authority)\" has an unclosed \"[\"")
            }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw fail("unexpected \"\(after)\" after host")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            portText = authority[authority.index(after: colon)...]
        } else {
            host = String(authority)
        }
        guard !host.isEmpty else { throw fail("host is missing") }
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw fail(
                    Int(portText) == nil
                        ? "port \"\(portText)\" is not a number" : "port \(portText) is outside 1...65535")
            }
            port = number
        }
        path = hasPath ? try Self.decode(pathText, part: "path", setting: setting) : ""
        query = []
        for item in queryText.split(separator: "&", omittingEmptySubsequences: true) {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try Self.decode(pair[0], part: "query", setting: setting)
            let value = pair.count > 1 ? try Self.decode(pair[1], part: "query", setting: setting) : ""
            query.append((name, value))
        }
    }

    /// The value of the first query item called `name`.
    public func queryValue(_ name: String) -> String? {
        query.first { $0.name == name }?.value
    }

    /// The URL as text with the password masked: safe for logs and errors.
    public var masked: String {
        var text = "\(scheme)://"
        if let user {
            text += Self.encode(user)
            if password != nil { text += ":\(Secret.mask)" }
            text += "@"
        }
        text += host.contains(":") ? "[\(host)]" : host
        if let port { text += ":\(port)" }
        if !path.isEmpty { text += "/" + Self.encode(path) }
        if !query.isEmpty { text += "?" + query.map { "\($0.name)=\($0.value)" }.joined(separator: "&") }
        return text
    }

    /// Masks whatever could be a password (after the first `:` of the part before the last `@`)
    /// in text that failed to parse, so that even a garbled URL is safe to quote.
    static func masking(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return text }
        let userStart = text.range(of: "://").map(\.upperBound) ?? text.startIndex
        guard userStart < at, let colon = text[userStart..<at].firstIndex(of: ":") else { return text }
        return String(text[...colon]) + Secret.mask + String(text[at...])
    }

    private static func decode(_ text: Substring, part: String, setting: String) throws(ConfigurationError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(Self.hexValue),
                    let low = iterator.next().flatMap(Self.hexValue)
                else {
                    let shown = part == "password" ? "" : " in \"\(text)\""
                    throw ConfigurationError(setting: setting, reason: "\(part) has a bad percent-escape\(shown)")
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            if scalar.properties.isAlphabetic && byte < 128 || (48...57).contains(byte) || "-._~".utf8.contains(byte) {
                out.unicodeScalars.append(scalar)
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
