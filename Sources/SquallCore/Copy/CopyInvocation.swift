/// What `squallctl cp` was asked to do, validated before anything runs.
///
/// Every argument is checked here, without I/O, so a typo (`ftp://…`, `--part-size 8XB`, a short
/// `--sha256`) is refused with a message naming the argument instead of surfacing halfway through a
/// transfer. The result is the engine's own request and options.
public struct CopyInvocation: Sendable, Equatable {
    public var request: TransferRequest
    public var options: TransferOptions

    /// S3's smallest part (except the last) and largest part.
    public static let partSizeRange = (5 << 20)...(5 << 30)
    /// More parts in flight than this only adds memory: one transfer rarely fills more connections.
    public static let concurrencyRange = 1...64
    /// Parts in flight when `--concurrency` is not given: twice the engine's default, which the
    /// Consumer uses for each of its jobs. One transfer alone gains from more connections (into the
    /// emulator, 8 took a 1 GiB upload from about 14.5 s to 10.5 s where 6 still took 14), for 64 MiB
    /// of part buffers; a Consumer multiplies its memory by its jobs in flight, so it keeps 4.
    public static let defaultConcurrency = 8
    public static let maxAttemptsRange = 1...100

    /// Checks the operator's arguments; unset ones keep ``TransferOptions``' defaults (parts in
    /// flight: ``defaultConcurrency``).
    public init(
        source: String, destination: String, partSize: String? = nil, concurrency: Int? = nil,
        sha256: String? = nil, maxAttempts: Int? = nil, allowPrivateSources: Bool = false, createOnly: Bool = false,
        progressInterval: Duration? = nil
    ) throws(ConfigurationError) {
        let from: TransferLocation
        let to: TransferLocation
        do {
            from = try TransferLocation.parse(source)
        } catch {
            throw ConfigurationError(setting: "SOURCE", reason: error.message)
        }
        do {
            to = try TransferLocation.parse(destination)
        } catch {
            throw ConfigurationError(setting: "DEST", reason: error.message)
        }
        if case .http = to {
            throw ConfigurationError(
                setting: "DEST", reason: "\(destination): an http(s) URL is a source only; copy to s3://bucket/key")
        }
        if case .file = from, case .file = to {
            throw ConfigurationError(
                setting: "DEST",
                reason: "\(source) → \(destination): one side must be S3 or http(s); use cp for local files")
        }

        var options = TransferOptions()
        options.concurrency = Self.defaultConcurrency
        if let partSize {
            let bytes = try Self.byteCount(partSize, setting: "--part-size")
            guard Self.partSizeRange.contains(bytes) else {
                throw ConfigurationError(
                    setting: "--part-size",
                    reason: "\(partSize) is outside S3's part sizes, 5 MiB to 5 GiB")
            }
            options.partSize = bytes
        }
        if let concurrency {
            guard Self.concurrencyRange.contains(concurrency) else {
                throw ConfigurationError(
                    setting: "--concurrency",
                    reason:
                        "\(concurrency) parts in flight is outside \(Self.concurrencyRange.lowerBound)...\(Self.concurrencyRange.upperBound)"
                )
            }
            options.concurrency = concurrency
        }
        if let maxAttempts {
            guard Self.maxAttemptsRange.contains(maxAttempts) else {
                throw ConfigurationError(
                    setting: "--max-attempts",
                    reason:
                        "\(maxAttempts) is outside \(Self.maxAttemptsRange.lowerBound)...\(Self.maxAttemptsRange.upperBound)"
                )
            }
            options.maxAttempts = maxAttempts
        }
        if let progressInterval {
            guard progressInterval > .zero else {
                throw ConfigurationError(setting: "--progress-interval", reason: "must be more than 0 seconds")
            }
            options.progressInterval = progressInterval
        }
        options.allowPrivateSources = allowPrivateSources
        options.createOnly = createOnly

        var expected: String?
        if let sha256 { expected = try Self.sha256Hex(sha256) }
        request = TransferRequest(source: from, destination: to, expectedSHA256: expected)
        self.options = options
    }

    /// `8388608`, `8M`, `8MiB`, `8MB`, `1G`, `512K`: suffixes are binary (`8MB` is 8 MiB), as aws-cli's
    /// `multipart_chunksize` reads them, because part sizes are always thought of in MiB.
    public static func byteCount(_ text: String, setting: String) throws(ConfigurationError) -> Int {
        let trimmed = text.trimmingWhitespace()
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).trimmingWhitespace().lowercased()
        let multipliers: [String: Int] = [
            "": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
            "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
        ]
        guard !digits.isEmpty, let value = Int(digits), let multiplier = multipliers[unit] else {
            throw ConfigurationError(
                setting: setting,
                reason: "\"\(text)\" is not a size: a number of bytes, or with K, M or G (binary: 8M = 8 MiB)")
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else {
            throw ConfigurationError(setting: setting, reason: "\"\(text)\" is too large")
        }
        return bytes
    }

    /// A SHA-256 as 64 hex digits, either case; returned lowercase, as the engine and S3 metadata compare it.
    public static func sha256Hex(_ text: String) throws(ConfigurationError) -> String {
        let trimmed = text.trimmingWhitespace()
        let lowered = trimmed.lowercased()
        guard ResumableSHA256.isDigestHex(lowered) else {
            let shown = trimmed.count > 80 ? String(trimmed.prefix(80)) + "…" : trimmed
            throw ConfigurationError(
                setting: "--sha256",
                reason: "\"\(shown)\" is not a SHA-256: 64 hex digits expected, got \(trimmed.count) characters")
        }
        return lowered
    }
}

/// How `squallctl cp` ends, as an exit status scripts can branch on (sysexits-style, like the other
/// subcommands: 64 for a bad argument or setting).
public enum CopyExitStatus: Int32, Sendable, CaseIterable {
    /// Copied and verified, or skipped because the destination already held the same bytes.
    case success = 0
    /// A permanent failure: the source or destination said no (404, 403, refused address, bad URL).
    /// Running again will not help until something changes.
    case failed = 1
    /// An argument or setting is wrong; nothing was transferred.
    case usage = 64
    /// The bytes are not what they should be (expected SHA-256 or length mismatch); the upload was aborted.
    case integrity = 65
    /// Retryable errors (network, 5xx, SlowDown) outlasted `--max-attempts`: running again later may succeed.
    case unavailable = 69
    /// Interrupted (SIGINT or SIGTERM); the multipart upload was aborted.
    case cancelled = 130

    /// The status for a failed transfer, from its error code and permanence.
    public init(_ error: TransferError) {
        if error.code == TransferError.cancelled.code {
            self = .cancelled
        } else if error.code.hasSuffix("_mismatch") || error.code == "checksum" {
            self = .integrity
        } else if error.code == "bad_url" || error.code == "unsupported_scheme" {
            self = .usage
        } else if error.isPermanent {
            self = .failed
        } else {
            self = .unavailable
        }
    }

    /// One line per status for `--help`.
    public static var helpText: String {
        """
        0 done or skipped; 1 failed permanently (404, 403, refused address); \
        64 bad argument or setting; 65 integrity failure (SHA-256 or length mismatch, upload aborted); \
        69 retryable errors outlasted --max-attempts (try again later); 130 interrupted (upload aborted).
        """
    }
}

extension StringProtocol {
    fileprivate func trimmingWhitespace() -> String {
        var text = Substring(self)
        while text.first?.isWhitespace == true { text.removeFirst() }
        while text.last?.isWhitespace == true { text.removeLast() }
        return String(text)
    }
}
