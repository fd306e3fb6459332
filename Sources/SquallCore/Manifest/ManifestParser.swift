import Foundation

/// One job of a manifest, validated.
public struct ManifestEntry: Sendable, Equatable {
    /// The line it came from, as an editor counts (the CSV header is line 1).
    public var line: Int
    public var source: String
    public var destination: String
    public var priority: Int32
    /// Lowercase hex SHA-256 the fetched bytes must have.
    public var sha256: String?

    public init(line: Int, source: String, destination: String, priority: Int32 = 0, sha256: String? = nil) {
        self.line = line
        self.source = source
        self.destination = destination
        self.priority = priority
        self.sha256 = sha256
    }
}

/// What is wrong with one line of a manifest.
public struct ManifestProblem: Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var reason: String

    public init(line: Int, reason: String) {
        self.line = line
        self.reason = reason
    }

    public var description: String { "manifest line \(line): \(reason)" }
}

/// A manifest that cannot be submitted: its first problems in line order, and how many there are.
///
/// A manifest is accepted whole or not at all, so every bad line is reported at once (up to a
/// limit) and the operator fixes them in one go.
public struct ManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problems: [ManifestProblem]
    public var totalCount: Int

    public init(problems: [ManifestProblem], totalCount: Int) {
        self.problems = problems
        self.totalCount = totalCount
    }

    public var description: String {
        var lines = problems.map(\.description)
        if totalCount > problems.count { lines.append("and \(totalCount - problems.count) more") }
        return lines.joined(separator: "\n")
    }
}

/// Reads a manifest one line at a time and validates each job, holding only what validation needs.
///
/// The format is detected from the first non-blank line: `{` starts JSON Lines
/// (`{"source":…,"destination":…,"priority":…,"sha256":…}`), anything else must be the CSV header
/// `source,destination[,priority][,sha256]` (columns in any order, fields may be quoted with `"`).
/// Blank lines are skipped but counted, so line numbers match an editor's. Duplicate destinations
/// are found through a 128-bit digest of each, so a million lines cost a few tens of megabytes.
public struct ManifestParser: Sendable {
    public enum Format: String, Sendable {
        case csv
        case jsonLines = "json-lines"
    }

    /// Priorities a manifest may give; higher runs first.
    public static let priorities: ClosedRange<Int32> = -1000...1000

    public private(set) var format: Format?
    /// Lines read so far.
    public private(set) var lineNumber = 0
    /// Valid jobs read so far.
    public private(set) var entryCount = 0
    /// The first problems, up to the limit.
    public private(set) var problems: [ManifestProblem] = []
    public private(set) var problemCount = 0
    private let problemLimit: Int
    private var columns: Columns?
    private var headerBroken = false
    private var destinations: [DestinationKey: Int] = [:]

    public init(problemLimit: Int = 20) {
        self.problemLimit = problemLimit
    }

    /// Parses a whole manifest held in memory.
    public static func parse(_ text: String, problemLimit: Int = 20) throws(ManifestError) -> [ManifestEntry] {
        var parser = ManifestParser(problemLimit: problemLimit)
        var entries: [ManifestEntry] = []
        text.enumerateLines { line, _ in
            if let entry = parser.read(line: Substring(line)) { entries.append(entry) }
        }
        try parser.finish()
        return entries
    }

    /// Reads the next line (without its line break). Returns the job it holds, or nil for the
    /// header, a blank line or a bad line (recorded in ``problems``).
    public mutating func read(line rawLine: Substring) -> ManifestEntry? {
        lineNumber += 1
        var line = rawLine
        // Byte tests, not Character ones: a million lines must not pay for grapheme breaking.
        if line.utf8.last == UInt8(ascii: "\r") { line = line.dropLast() }
        if lineNumber == 1, line.hasPrefix("\u{FEFF}") { line = line.dropFirst() }
        if line.utf8.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { return nil }

        if format == nil {
            if line.first == "{" {
                format = .jsonLines
            } else {
                format = .csv
                readHeader(line)
                return nil
            }
        }
        let fields: Fields
        switch format! {
        case .csv:
            guard let columns, !headerBroken else { return nil }
            guard let parsed = csvFields(line, columns: columns) else { return nil }
            fields = parsed
        case .jsonLines:
            guard let parsed = jsonFields(line) else { return nil }
            fields = parsed
        }
        return validate(fields)
    }

    /// Ends the manifest: throws every problem found, or that it holds no job.
    public func finish() throws(ManifestError) {
        if problemCount > 0 {
            throw ManifestError(problems: problems, totalCount: problemCount)
        }
        if entryCount == 0 {
            throw ManifestError(
                problems: [ManifestProblem(line: max(lineNumber, 1), reason: "the manifest holds no job")],
                totalCount: 1)
        }
    }

    // MARK: Formats

    private struct Columns: Sendable {
        var source: Int
        var destination: Int
        var priority: Int?
        var sha256: Int?
        var count: Int
    }

    private struct Fields {
        var source: String
        var destination: String
        var priority: String?
        var sha256: String?
    }

    private mutating func readHeader(_ line: Substring) {
        guard let names = splitCSV(line) else {
            headerBroken = true
            return
        }
        let lowered = names.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let expected = "expected the CSV header source,destination[,priority][,sha256]"
        var positions: [String: Int] = [:]
        for (index, name) in lowered.enumerated() {
            guard ["source", "destination", "priority", "sha256"].contains(name) else {
                let looksLikeData = name.contains("://") || name.hasPrefix("/")
                problem(
                    looksLikeData
                        ? "the CSV header is missing (\(expected))"
                        : "column \"\(names[index])\" is not known (\(expected))")
                headerBroken = true
                return
            }
            guard positions[name] == nil else {
                problem("column \"\(name)\" appears twice in the header")
                headerBroken = true
                return
            }
            positions[name] = index
        }
        guard let source = positions["source"], let destination = positions["destination"] else {
            problem("the header lacks \(positions["source"] == nil ? "source" : "destination") (\(expected))")
            headerBroken = true
            return
        }
        columns = Columns(
            source: source, destination: destination, priority: positions["priority"], sha256: positions["sha256"],
            count: lowered.count)
    }

    private mutating func csvFields(_ line: Substring, columns: Columns) -> Fields? {
        guard let values = splitCSV(line) else { return nil }
        guard values.count == columns.count else {
            problem("has \(values.count) field\(values.count == 1 ? "" : "s"), the header has \(columns.count)")
            return nil
        }
        func optional(_ index: Int?) -> String? {
            guard let index else { return nil }
            let value = Self.trimmed(values[index])
            return value.isEmpty ? nil : value
        }
        return Fields(
            source: Self.trimmed(values[columns.source]), destination: Self.trimmed(values[columns.destination]),
            priority: optional(columns.priority), sha256: optional(columns.sha256))
    }

    /// The field without surrounding white space; Foundation's trimming only when an end is not
    /// plain ASCII, which is rare and slow.
    private static func trimmed(_ value: String) -> String {
        guard let first = value.utf8.first, let last = value.utf8.last else { return value }
        func plain(_ byte: UInt8) -> Bool { byte > 0x20 && byte < 0x7f }
        if plain(first) && plain(last) { return value }
        return value.trimmingCharacters(in: .whitespaces)
    }

    /// Splits one CSV line; fields quoted with `"` may hold commas and `""` for a quote.
    private mutating func splitCSV(_ line: Substring) -> [String]? {
        // Most lines quote nothing: split their bytes on commas.
        if !line.utf8.contains(UInt8(ascii: "\"")) {
            return line.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).map {
                String(Substring($0))
            }
        }
        var fields: [String] = []
        var field = ""
        var quoted = false
        var wasQuoted = false
        var index = line.startIndex
        while index < line.endIndex {
            let character = line[index]
            if quoted {
                if character == "\"" {
                    let next = line.index(after: index)
                    if next < line.endIndex, line[next] == "\"" {
                        field.append("\"")
                        index = next
                    } else {
                        quoted = false
                    }
                } else {
                    field.append(character)
                }
            } else if character == "," {
                fields.append(field)
                field = ""
                wasQuoted = false
            } else if character == "\"" && field.allSatisfy({ $0 == " " }) && !wasQuoted {
                field = ""
                quoted = true
                wasQuoted = true
            } else if wasQuoted && character != " " {
                problem("unexpected text after a closing quote in field \(fields.count + 1)")
                return nil
            } else {
                field.append(character)
            }
            index = line.index(after: index)
        }
        guard !quoted else {
            problem("field \(fields.count + 1) has an unclosed quote")
            return nil
        }
        fields.append(field)
        return fields
    }

    private mutating func jsonFields(_ line: Substring) -> Fields? {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(line.utf8))
        } catch {
            problem("is not a JSON object")
            return nil
        }
        guard let dictionary = object as? [String: Any] else {
            problem("is not a JSON object")
            return nil
        }
        for key in dictionary.keys.sorted() where !["source", "destination", "priority", "sha256"].contains(key) {
            problem("field \"\(key)\" is not known (expected source, destination, priority, sha256)")
            return nil
        }
        guard let source = dictionary["source"] as? String else {
            problem(dictionary["source"] == nil ? "field \"source\" is missing" : "field \"source\" is not a string")
            return nil
        }
        guard let destination = dictionary["destination"] as? String else {
            problem(
                dictionary["destination"] == nil
                    ? "field \"destination\" is missing" : "field \"destination\" is not a string")
            return nil
        }
        var priority: String?
        if let value = dictionary["priority"], !(value is NSNull) {
            guard let number = value as? NSNumber, !(value is Bool), number.doubleValue == number.doubleValue.rounded()
            else {
                problem("field \"priority\" is not an integer")
                return nil
            }
            priority = String(number.int64Value)
        }
        var sha256: String?
        if let value = dictionary["sha256"], !(value is NSNull) {
            guard let text = value as? String else {
                problem("field \"sha256\" is not a string")
                return nil
            }
            sha256 = text
        }
        return Fields(source: source, destination: destination, priority: priority, sha256: sha256)
    }

    // MARK: Validation

    private mutating func validate(_ fields: Fields) -> ManifestEntry? {
        var reasons: [String] = []
        if let reason = Self.sourceProblem(fields.source) { reasons.append(reason) }
        if let reason = Self.destinationProblem(fields.destination) { reasons.append(reason) }
        var priority: Int32 = 0
        if let text = fields.priority {
            if let value = Int32(text), Self.priorities.contains(value) {
                priority = value
            } else {
                reasons.append(
                    "priority \"\(text)\" is not an integer in \(Self.priorities.lowerBound)...\(Self.priorities.upperBound)"
                )
            }
        }
        var sha256: String?
        if let text = fields.sha256 {
            let lowered = text.lowercased()
            if ResumableSHA256.isDigestHex(lowered) {
                sha256 = lowered
            } else {
                reasons.append("sha256 \"\(text)\" is not 64 hexadecimal digits")
            }
        }
        if reasons.isEmpty {
            let key = DestinationKey(fields.destination)
            if let first = destinations[key] {
                reasons.append("destination \"\(fields.destination)\" is already the destination of line \(first)")
            } else {
                destinations[key] = lineNumber
            }
        }
        guard reasons.isEmpty else {
            problem(reasons.joined(separator: "; "))
            return nil
        }
        entryCount += 1
        return ManifestEntry(
            line: lineNumber, source: fields.source, destination: fields.destination, priority: priority,
            sha256: sha256)
    }

    private mutating func problem(_ reason: String) {
        problemCount += 1
        if problems.count < problemLimit { problems.append(ManifestProblem(line: lineNumber, reason: reason)) }
    }

    static func sourceProblem(_ source: String) -> String? {
        guard !source.isEmpty else { return "source is empty" }
        guard source.utf8.count <= 8192 else { return "source is longer than 8192 bytes" }
        guard !hasControlCharacter(source) else {
            return "source \"\(source.debugDescription.dropFirst().dropLast())\" holds control characters"
        }
        guard let schemeEnd = schemeSeparator(in: source) else {
            // A local path, as `aws s3 cp` allows.
            return nil
        }
        let scheme = source[..<schemeEnd.lowerBound].lowercased()
        let rest = source[schemeEnd.upperBound...]
        switch scheme {
        case "http", "https":
            let host = rest.utf8.prefix {
                $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#")
            }
            guard !host.isEmpty, host.first != UInt8(ascii: ":") else {
                return "source \"\(source)\": the host is missing"
            }
            guard !source.utf8.contains(UInt8(ascii: " ")) else {
                return "source \"\(source)\": URLs cannot contain spaces"
            }
            return nil
        case "s3":
            return s3Problem(source, role: "source")
        default:
            return "source \"\(source)\": scheme \"\(scheme)\" is not http, https or s3"
        }
    }

    /// Whether `text` holds a Unicode control character (general category Cc); ASCII text is
    /// checked byte by byte, which is what a million-line manifest mostly is.
    private static func hasControlCharacter(_ text: String) -> Bool {
        var ascii = true
        for byte in text.utf8 {
            if byte < 0x20 || byte == 0x7f { return true }
            if byte >= 0x80 { ascii = false }
        }
        return !ascii && text.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// The range of the first `://` in `text`, found in its bytes (the separator is ASCII).
    private static func schemeSeparator(in text: String) -> Range<String.Index>? {
        let bytes = text.utf8
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: ":") {
                let slash = bytes.index(after: index)
                if slash < bytes.endIndex, bytes[slash] == UInt8(ascii: "/") {
                    let second = bytes.index(after: slash)
                    if second < bytes.endIndex, bytes[second] == UInt8(ascii: "/") {
                        return index..<bytes.index(after: second)
                    }
                }
            }
            index = bytes.index(after: index)
        }
        return nil
    }

    static func destinationProblem(_ destination: String) -> String? {
        guard !destination.isEmpty else { return "destination is empty" }
        let scheme = destination.utf8.prefix(5).map { (65...90).contains($0) ? $0 | 0x20 : $0 }
        guard scheme.elementsEqual("s3://".utf8) else {
            return "destination \"\(destination)\" is not s3://bucket/key"
        }
        return s3Problem(destination, role: "destination")
    }

    private static func s3Problem(_ url: String, role: String) -> String? {
        let rest = url.dropFirst(5)
        guard let slash = rest.firstIndex(of: "/") else { return "\(role) \"\(url)\" has no key (s3://bucket/key)" }
        let bucket = String(rest[..<slash])
        let key = rest[rest.index(after: slash)...]
        if let reason = bucketProblem(bucket) { return "\(role) \"\(url)\": \(reason)" }
        guard !key.isEmpty else { return "\(role) \"\(url)\" has no key (s3://bucket/key)" }
        guard key.utf8.count <= 1024 else { return "\(role) \"\(url)\": the key is longer than 1024 bytes" }
        return nil
    }

    /// Why `bucket` is not a valid S3 bucket name (the general-purpose bucket rules), or nil.
    public static func bucketProblem(_ bucket: String) -> String? {
        let bytes = Array(bucket.utf8)
        guard !bytes.isEmpty else { return "the bucket name is missing" }
        func allowed(_ byte: UInt8) -> Bool {
            (97...122).contains(byte) || (48...57).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "-")
        }
        if let bad = bytes.first(where: { !allowed($0) }) {
            let shown = String(decoding: [bad], as: UTF8.self)
            let what = (65...90).contains(bad) ? "uppercase \"\(shown)\"" : "\"\(shown)\""
            return "bucket names are lowercase letters, digits, dots and hyphens (\"\(bucket)\" has \(what))"
        }
        guard (3...63).contains(bytes.count) else {
            return "bucket names are 3 to 63 characters long (\"\(bucket)\" has \(bytes.count))"
        }
        func alphanumeric(_ byte: UInt8) -> Bool { (97...122).contains(byte) || (48...57).contains(byte) }
        guard alphanumeric(bytes.first!), alphanumeric(bytes.last!) else {
            return "bucket names begin and end with a letter or digit (\"\(bucket)\")"
        }
        guard !bucket.contains("..") else { return "bucket names have no two adjacent dots (\"\(bucket)\")" }
        let parts = bucket.split(separator: ".")
        if parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) {
            return "bucket names are not IP addresses (\"\(bucket)\")"
        }
        if bucket.hasPrefix("xn--") || bucket.hasPrefix("sthree-") || bucket.hasSuffix("-s3alias")
            || bucket.hasSuffix("--ol-s3")
        {
            return
                "bucket names cannot use the reserved prefixes xn--, sthree- or suffixes -s3alias, --ol-s3 (\"\(bucket)\")"
        }
        return nil
    }
}

/// A destination's identity for the duplicate check: 128 bits of its SHA-256, not the whole string.
private struct DestinationKey: Hashable, Sendable {
    let high: UInt64
    let low: UInt64

    init(_ destination: String) {
        var destination = destination
        let digest = destination.withUTF8 { ResumableSHA256.digest(of: UnsafeRawBufferPointer($0)) }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (index, byte) in digest.enumerated() where index < 16 {
            if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        self.high = high
        self.low = low
    }
}
