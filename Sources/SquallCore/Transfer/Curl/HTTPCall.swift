/// One HTTP request as the engine asks libcurl for it, and what came back.
///
/// Plain values: the S3 and source code build requests, ``CurlMulti`` runs them, and the retry
/// policy reads the responses; none of them sees a libcurl handle.
struct HTTPCall: Sendable {
    enum Method: String, Sendable { case get = "GET", head = "HEAD", put = "PUT", post = "POST", delete = "DELETE" }

    /// The request body: nothing, bytes owned by the request, or a part buffer lent for the request.
    enum Body: Sendable {
        case none
        case bytes([UInt8])
        case part(PartBuffer)

        var count: Int {
            switch self {
            case .none: 0
            case .bytes(let bytes): bytes.count
            case .part(let buffer): buffer.count
            }
        }
    }

    var method: Method
    var url: String
    var headers: [(name: String, value: String)] = []
    var body: Body = .none
    /// SigV4 signing (S3 requests); nil for plain sources.
    var signing: Signing?
    /// Source requests: the connected address is vetted, redirects are followed up to this many times.
    var sourcePolicy: SourcePolicy?
    /// Where response body bytes go: kept (up to a limit) or handed to a stream.
    var sink: Sink = .keep(limit: 1 << 20)
    var connectTimeoutMilliseconds: Int = 10_000
    var lowSpeedLimit: Int = 1024
    var lowSpeedSeconds: Int = 30
    /// Allows the `file://` scheme: only for a local path the operator named as the source.
    var allowsFile = false
    /// Sends the path as written, `.` and `..` segments included (S3 requests). In an object key they
    /// are part of the name: squashed the way a browser would, `a/../b` writes the object `b`, and with
    /// path-style addressing `/bucket/../other/k` writes into another bucket.
    var sendsPathAsIs = false

    init(method: Method, url: String) {
        self.method = method
        self.url = url
    }

    struct Signing: Sendable {
        var region: String
        var accessKeyID: String
        var secretAccessKey: Secret
        var sessionToken: Secret?
    }

    struct SourcePolicy: Sendable {
        var addresses: AddressPolicy
        var maxRedirects: Int
    }

    enum Sink: Sendable {
        /// Keep the body, failing the request when it grows past `limit` bytes.
        case keep(limit: Int)
        /// Hand each chunk to the stream; it may ask to pause.
        case stream(any ResponseStream)
    }
}

/// Where a streamed response body goes, called on the transfer thread as bytes arrive.
protocol ResponseStream: AnyObject, Sendable {
    /// The response head arrived (status and headers of the final response, after redirects).
    /// Returning false stops the transfer (e.g. a 404 whose body is not wanted).
    func responseStarted(status: Int, headers: ReplyHeaders) -> Bool
    /// Takes `bytes`; `.pause` means none of them were taken and they will be offered again after
    /// ``CurlMulti/resume(_:)``.
    func receive(_ bytes: UnsafeRawBufferPointer) -> StreamVerdict
}

enum StreamVerdict: Sendable {
    case accepted
    case pause
    /// Stop the transfer: the stream has what it needs, or saw something wrong (it knows what).
    case abort
}

/// Response headers, names lowercased; a repeated header keeps its last value.
struct ReplyHeaders: Sendable, Equatable {
    var values: [String: String] = [:]

    subscript(name: String) -> String? { values[name.lowercased()] }

    /// One line of a response head, as libcurl's header callback hands it over.
    enum Line: Equatable {
        /// `HTTP/1.1 200 OK`: a response starts (again, after a redirect or a `100 Continue`).
        case status(Int)
        /// `Name: value`, the name lowercased, the value without surrounding blanks.
        case field(name: String, value: String)
        /// The blank line ending the head, or anything else.
        case other
    }

    /// Parses a head line byte by byte: this runs for every header of every response, and Foundation's
    /// string trimming cost a Consumer an eighth of its CPU on small objects.
    static func parse(line: UnsafeRawBufferPointer) -> Line {
        let bytes = line.bindMemory(to: UInt8.self)
        func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        var start = 0
        var end = bytes.count
        while start < end, isBlank(bytes[start]) { start += 1 }
        while end > start, isBlank(bytes[end - 1]) { end -= 1 }
        guard start < end else { return .other }
        let text = UnsafeBufferPointer(rebasing: bytes[start..<end])
        if text.starts(with: "HTTP/".utf8) {
            // The status code is the second field: `HTTP/1.1 200 OK`, `HTTP/2 404`.
            guard let space = text.firstIndex(of: 0x20) else { return .status(0) }
            var code = 0
            var digits = 0
            var index = space + 1
            while index < text.count, (0x30...0x39).contains(text[index]) {
                code = code * 10 + Int(text[index] - 0x30)
                digits += 1
                index += 1
            }
            return .status(digits == 3 ? code : 0)
        }
        guard let colon = text.firstIndex(of: UInt8(ascii: ":")) else { return .other }
        var valueStart = colon + 1
        while valueStart < text.count, isBlank(text[valueStart]) { valueStart += 1 }
        let name = String(
            decoding: UnsafeBufferPointer(rebasing: text[..<colon]).lazy.map(Self.lowercase), as: UTF8.self)
        let value = String(decoding: UnsafeBufferPointer(rebasing: text[valueStart...]), as: UTF8.self)
        return .field(name: name, value: value)
    }

    private static func lowercase(_ byte: UInt8) -> UInt8 {
        (0x41...0x5A).contains(byte) ? byte + 0x20 : byte
    }
}

/// How a request ended: libcurl's own result, and the HTTP exchange when there was one.
struct HTTPReply: Sendable {
    /// libcurl's result code (0 when the exchange completed, whatever its HTTP status).
    var curlCode: Int
    /// libcurl's error text for a non-zero `curlCode`, e.g. "Connection reset by peer".
    var curlMessage: String
    var status: Int
    var headers: ReplyHeaders
    var body: [UInt8]
    /// Body bytes received by this request (kept or streamed).
    var bytesReceived: Int64
    /// Set when the vetting of a connected address refused it: the reason, naming the host.
    var refusedAddress: String?

    var bodyText: String { String(decoding: body, as: UTF8.self) }
}
