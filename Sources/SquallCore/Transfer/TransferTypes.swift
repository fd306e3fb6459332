/// One thing the transfer engine is asked to do: copy `source` to `destination`.
///
/// The Consumer builds one from each job message; `squallctl cp` builds one from its arguments.
public struct TransferRequest: Sendable, Equatable {
    public var source: TransferLocation
    public var destination: TransferLocation
    /// Lowercase hex SHA-256 the source bytes must have (from the manifest); checked before the
    /// upload completes, and a mismatch aborts it.
    public var expectedSHA256: String?
    /// Whether the destination is asked first (a HEAD) if it already holds the bytes. With
    /// ``TransferOptions/createOnly`` a caller that expects the destination empty may leave it out: an
    /// object that fits one PUT then goes at once, and only a create-only write answered 412 asks what is
    /// there (a skip when it is the same bytes); a larger one is asked about when the source's GET has
    /// said its length, before any part goes. Without `createOnly` the destination is always asked first.
    public var checksDestinationFirst: Bool

    public init(
        source: TransferLocation, destination: TransferLocation, expectedSHA256: String? = nil,
        checksDestinationFirst: Bool = true
    ) {
        self.source = source
        self.destination = destination
        self.expectedSHA256 = expectedSHA256
        self.checksDestinationFirst = checksDestinationFirst
    }
}

/// Where bytes come from or go to.
public enum TransferLocation: Sendable, Equatable, CustomStringConvertible {
    /// An `http://` or `https://` URL (sources only).
    case http(String)
    /// An object in S3 or an S3-compatible service.
    case s3(bucket: String, key: String)
    /// A local file (`file://` or a plain path), as `aws s3 cp` allows.
    case file(path: String)

    /// Parses what an operator or a manifest wrote: `http(s)://…`, `s3://bucket/key`, `file:///path` or a path.
    ///
    /// Any other scheme (`ftp://`, `gopher://`, `dict://`) is refused by name: it is never passed to libcurl.
    public static func parse(_ text: String) throws(TransferError) -> TransferLocation {
        let lowered = text.lowercased()
        if lowered.hasPrefix("http://") || lowered.hasPrefix("https://") { return .http(text) }
        if lowered.hasPrefix("s3://") {
            let rest = text.dropFirst("s3://".count)
            guard let slash = rest.firstIndex(of: "/"), slash != rest.startIndex,
                rest.index(after: slash) != rest.endIndex
            else {
                throw TransferError(
                    code: "bad_url", message: "\(text): an S3 location is s3://bucket/key", isPermanent: true)
            }
            return .s3(bucket: String(rest[..<slash]), key: String(rest[rest.index(after: slash)...]))
        }
        if lowered.hasPrefix("file://") { return .file(path: String(text.dropFirst("file://".count))) }
        if let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://") {
            throw TransferError(
                code: "unsupported_scheme",
                message: "\(text): scheme \(text[..<colon]) is not allowed (http, https, s3 or a local path)",
                isPermanent: true)
        }
        guard !text.isEmpty else {
            throw TransferError(code: "bad_url", message: "empty location", isPermanent: true)
        }
        return .file(path: text)
    }

    public var description: String {
        switch self {
        case .http(let url): url
        case .s3(let bucket, let key): "s3://\(bucket)/\(key)"
        case .file(let path): path
        }
    }
}

/// How the engine moves bytes. The defaults are the Consumer's.
public struct TransferOptions: Sendable, Equatable {
    /// Bytes per multipart part (at least S3's 5 MiB; grown for large known sizes to stay within 10,000 parts).
    public var partSize: Int
    /// Parts in flight at once for one transfer. Memory is bounded by `partSize × concurrency`.
    public var concurrency: Int
    /// Attempts per request (the first one included) on a retryable error.
    public var maxAttempts: Int
    /// Cap of the exponential backoff between attempts (full jitter below it).
    public var maxBackoff: Duration
    public var connectTimeout: Duration
    /// A transfer slower than `lowSpeedLimit` bytes/s for `lowSpeedTime` is treated as stalled and retried.
    public var lowSpeedLimit: Int
    public var lowSpeedTime: Duration
    public var maxRedirects: Int
    /// Whether sources in loopback and private ranges may be fetched (never link-local or metadata addresses).
    public var allowPrivateSources: Bool
    /// Create the destination only if it does not exist yet (`If-None-Match: *`). The Consumer sets it, so a
    /// stale writer cannot replace an object another attempt finished; `squallctl cp` overwrites, as `aws s3 cp` does.
    public var createOnly: Bool
    /// The least time between two progress events.
    public var progressInterval: Duration
    /// S3 requests other than object downloads (PUTs, parts, HEADs, listings) the engine has in flight at
    /// once, all its transfers together; the rest wait their turn. 0: no limit.
    public var maxS3Requests: Int

    public init(
        partSize: Int = 8 << 20, concurrency: Int = 4, maxAttempts: Int = 5, maxBackoff: Duration = .seconds(20),
        connectTimeout: Duration = .seconds(10), lowSpeedLimit: Int = 1024, lowSpeedTime: Duration = .seconds(30),
        maxRedirects: Int = 5, allowPrivateSources: Bool = false, createOnly: Bool = false,
        progressInterval: Duration = .milliseconds(500), maxS3Requests: Int = 0
    ) {
        self.partSize = partSize
        self.concurrency = concurrency
        self.maxAttempts = maxAttempts
        self.maxBackoff = maxBackoff
        self.connectTimeout = connectTimeout
        self.lowSpeedLimit = lowSpeedLimit
        self.lowSpeedTime = lowSpeedTime
        self.maxRedirects = maxRedirects
        self.allowPrivateSources = allowPrivateSources
        self.createOnly = createOnly
        self.progressInterval = progressInterval
        self.maxS3Requests = maxS3Requests
    }
}

/// How far a transfer has got.
public struct TransferProgress: Sendable, Equatable {
    public var bytesDone: Int64
    /// Unknown for a source without a length.
    public var bytesTotal: Int64?
    public var bytesPerSecond: Double

    public init(bytesDone: Int64, bytesTotal: Int64?, bytesPerSecond: Double) {
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.bytesPerSecond = bytesPerSecond
    }
}

/// What a running transfer tells its caller (the Consumer turns these into packets and metrics).
public enum TransferEvent: Sendable, Equatable {
    /// At most once per `progressInterval`.
    case progress(TransferProgress)
    /// A request failed with a retryable error and will be tried again; `reason` is a stable code
    /// (`http_503`, `connection_reset`, `timeout`, `slow_down`, …) for the retries-by-reason metric.
    case retrying(reason: String, attempt: Int)
}

/// How a transfer that did not fail ended.
public struct TransferReport: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        /// The bytes were copied and verified.
        case done
        /// The destination already held the same bytes (same size and SHA-256): nothing was copied.
        case skipped
    }

    public var outcome: Outcome
    /// The object's size.
    public var bytes: Int64
    /// The destination's ETag, when the destination is S3.
    public var etag: String?
    /// Lowercase hex SHA-256 of the whole object.
    public var sha256: String
    /// Bytes fetched from the source by this run (less than `bytes` when a previous upload was resumed).
    public var bytesFetched: Int64

    public init(outcome: Outcome, bytes: Int64, etag: String?, sha256: String, bytesFetched: Int64) {
        self.outcome = outcome
        self.bytes = bytes
        self.etag = etag
        self.sha256 = sha256
        self.bytesFetched = bytesFetched
    }
}

/// Why a transfer failed: a stable machine-readable `code` (`http_404`, `checksum_mismatch`,
/// `address_refused`, `retries_exhausted`, `cancelled`, …) and a message for the operator that names
/// the input at fault. Neither ever holds a credential.
public struct TransferError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var message: String
    /// Whether trying again later cannot help (404, 403, checksum mismatch, bad URL, refused address).
    public var isPermanent: Bool

    public init(code: String, message: String, isPermanent: Bool) {
        self.code = code
        self.message = message
        self.isPermanent = isPermanent
    }

    public static let cancelled = TransferError(
        code: "cancelled", message: "the transfer was cancelled", isPermanent: true)

    public var description: String { "\(code): \(message)" }
}
