import CCurl
import Foundation

/// One libcurl easy handle running one ``HTTPCall``: its options, its callbacks, what it received.
///
/// Created anywhere, but configured, run and finished only on the ``CurlMulti`` thread; the
/// callbacks reach it through the handle's user-data pointers.
final class CurlRequest: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    let request: HTTPCall
    var completion: (@Sendable (HTTPReply) -> Void)?
    private(set) var isPrepared = false
    private(set) var isFinished = false

    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    private var errorBufferPointer: UnsafeMutablePointer<CChar>
    private var uploadOffset = 0
    private var status = 0
    private var headers = ReplyHeaders()
    private var body: [UInt8] = []
    private var bytesReceived: Int64 = 0
    private var streamStarted = false
    private var streamRefused = false
    private var bodyOverflow = false
    private var refusedAddress: String?
    /// Strings libcurl keeps pointers to until cleanup (it copies most, but not all, options).
    private var retained: [UnsafeMutablePointer<CChar>] = []

    init(_ request: HTTPCall) {
        self.request = request
        easy = curl_easy_init()
        errorBufferPointer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBufferPointer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit {
        curl_easy_cleanup(easy)
        if let headerList { curl_slist_free_all(headerList) }
        errorBufferPointer.deallocate()
        for pointer in retained { free(pointer) }
    }

    /// Sets every option; returns a failure message when libcurl refuses one (e.g. a malformed URL).
    func prepare() -> String? {
        isPrepared = true
        let this = Unmanaged.passUnretained(self).toOpaque()
        var failures: [String] = []
        func check(_ code: CURLcode, _ what: String) {
            if code != CURLE_OK { failures.append("\(what): \(String(cString: curl_easy_strerror(code)))") }
        }
        func string(_ option: CURLoption, _ value: String, _ what: String) {
            check(squall_easy_setopt_string(easy, option, value), what)
        }
        func long(_ option: CURLoption, _ value: Int, _ what: String) {
            check(squall_easy_setopt_long(easy, option, value), what)
        }

        string(CURLOPT_URL, request.url, "URL")
        long(CURLOPT_PATH_AS_IS, request.sendsPathAsIs ? 1 : 0, "path as is")
        check(squall_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBufferPointer), "error buffer")
        long(CURLOPT_NOSIGNAL, 1, "nosignal")
        string(CURLOPT_PROTOCOLS_STR, request.allowsFile ? "file" : "http,https", "protocols")
        if request.allowsFile { status = 200 }  // no HTTP status line: a readable file is a 200
        string(CURLOPT_REDIR_PROTOCOLS_STR, "http,https", "redirect protocols")
        // Never an ambient proxy from the environment: an operator configures one explicitly or none.
        string(CURLOPT_PROXY, "", "proxy")
        long(CURLOPT_CONNECTTIMEOUT_MS, request.connectTimeoutMilliseconds, "connect timeout")
        long(CURLOPT_LOW_SPEED_LIMIT, request.lowSpeedLimit, "low speed limit")
        long(CURLOPT_LOW_SPEED_TIME, request.lowSpeedSeconds, "low speed time")
        long(CURLOPT_TCP_KEEPALIVE, 1, "keepalive")
        // libcurl allocates both buffers for every request. Large ones pay for streaming big bodies
        // (256 KiB file writes, 1 MiB reads from a part); for S3's short answers and small bodies they
        // only cost a large malloc per request, each of which also makes glibc consolidate its heap.
        if case .stream = request.sink { long(CURLOPT_BUFFERSIZE, 256 * 1024, "receive buffer") }
        if request.method == .put || request.method == .post {
            long(CURLOPT_UPLOAD_BUFFERSIZE, Self.uploadBufferSize(bodyBytes: request.body.count), "upload buffer")
        }

        check(squall_easy_setopt_write_function(easy, curlWrite), "write function")
        check(squall_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, this), "write data")
        check(squall_easy_setopt_header_function(easy, curlHeader), "header function")
        check(squall_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, this), "header data")

        var headerLines = request.headers.map { "\($0.name): \($0.value)" }
        // libcurl 7.88 sends `Expect: 100-continue` with every PUT body; waiting for the 100 would cost
        // a round trip (or a 1 s wait) per request, so the body follows at once. The header cannot be
        // left out with an empty `Expect:` line: libcurl 7.88 would sign that header, which it never
        // sends, and AWS refuses a signed header the request lacks (curl issue 11664).
        long(CURLOPT_EXPECT_100_TIMEOUT_MS, 0, "expect-100 timeout")
        let sendsInline = request.method == .put && Self.sendsBodyInline(request.body)
        switch request.method {
        case .get:
            break
        case .head:
            long(CURLOPT_NOBODY, 1, "HEAD")
        case .delete:
            string(CURLOPT_CUSTOMREQUEST, "DELETE", "DELETE")
        case .put where sendsInline:
            // libcurl's POST path with the method named PUT: a body this small goes out in the same write
            // as the head, with no `Expect: 100-continue`, so the server needs no interim 100 and reads one
            // segment (docs/transfer.md, "Small bodies"). libcurl keeps its own copy of the bytes.
            string(CURLOPT_CUSTOMREQUEST, "PUT", "PUT")
            long(CURLOPT_POST, 1, "PUT")
            check(squall_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)), "size")
            check(withInlineBody { squall_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, $0) }, "body")
            // Else the POST path would announce a form; S3 stores this type when none is given.
            if !request.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
                headerLines.append("Content-Type: \(Self.defaultContentType)")
            }
        case .put:
            long(CURLOPT_UPLOAD, 1, "PUT")
            check(squall_easy_setopt_off(easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.count)), "size")
        case .post:
            long(CURLOPT_POST, 1, "POST")
            check(squall_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)), "size")
        }
        if request.method == .post || (request.method == .put && !sendsInline) {
            check(squall_easy_setopt_read_function(easy, curlRead), "read function")
            check(squall_easy_setopt_pointer(easy, CURLOPT_READDATA, this), "read data")
            check(squall_easy_setopt_seek_function(easy, curlSeek), "seek function")
            check(squall_easy_setopt_pointer(easy, CURLOPT_SEEKDATA, this), "seek data")
        }
        if let signing = request.signing {
            string(CURLOPT_AWS_SIGV4, "aws:amz:\(signing.region):s3", "sigv4")
            string(CURLOPT_USERNAME, signing.accessKeyID, "access key")
            string(CURLOPT_PASSWORD, signing.secretAccessKey.revealed, "secret key")
            if let token = signing.sessionToken { headerLines.append("x-amz-security-token: \(token.revealed)") }
        }
        if let policy = request.sourcePolicy {
            long(CURLOPT_FOLLOWLOCATION, policy.maxRedirects > 0 ? 1 : 0, "follow redirects")
            long(CURLOPT_MAXREDIRS, policy.maxRedirects, "redirect limit")
            check(squall_easy_setopt_opensocket_function(easy, curlOpenSocket), "open socket function")
            check(squall_easy_setopt_pointer(easy, CURLOPT_OPENSOCKETDATA, this), "open socket data")
        }
        for line in headerLines { headerList = curl_slist_append(headerList, line) }
        check(squall_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList), "headers")
        return failures.isEmpty ? nil : failures.joined(separator: "; ")
    }

    /// The largest PUT body sent in the request's first write (libcurl appends a POST body below 64 KiB
    /// to the head); a larger one streams from the read callback after the head.
    static let inlineBodyLimit = 64 * 1024 - 1

    /// The content type S3 gives an object stored without one.
    static let defaultContentType = "binary/octet-stream"

    static func sendsBodyInline(_ body: HTTPCall.Body) -> Bool {
        body.count <= inlineBodyLimit
    }

    /// Calls `body` with the start of the request's body bytes (never nil, also for an empty body).
    private func withInlineBody<Result>(_ body: (UnsafeMutableRawPointer) -> Result) -> Result {
        switch request.body {
        case .bytes(let bytes) where !bytes.isEmpty:
            // libcurl only reads through the pointer (it copies the bytes before setopt returns).
            return bytes.withUnsafeBytes { body(UnsafeMutableRawPointer(mutating: $0.baseAddress!)) }
        case .part(let part) where part.count > 0:
            return body(part.storage.baseAddress!)
        default:
            var empty: UInt8 = 0
            return withUnsafeMutablePointer(to: &empty) { body(UnsafeMutableRawPointer($0)) }
        }
    }

    /// The upload buffer for a body of `bodyBytes`: the body itself where it fits libcurl's range
    /// (16 KiB to 2 MiB), at most 1 MiB.
    static func uploadBufferSize(bodyBytes: Int) -> Int {
        min(max(bodyBytes, 16 * 1024), 1024 * 1024)
    }

    /// Delivers the outcome once; `message` overrides libcurl's error text.
    func finish(curlCode: Int, message: String?) {
        guard !isFinished else { return }
        isFinished = true
        var finalStatus = status
        if isPrepared {
            var code = 0
            if squall_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK, code != 0 {
                finalStatus = code
            }
            if request.allowsFile && curlCode == 0 { finalStatus = 200 }
        }
        var text = message ?? String(cString: errorBufferPointer)
        if text.isEmpty && curlCode != 0 { text = String(cString: curl_easy_strerror(CURLcode(UInt32(curlCode)))) }
        if bodyOverflow { text = "response body larger than \(Self.keepLimit(request)) bytes" }
        let response = HTTPReply(
            curlCode: curlCode, curlMessage: text, status: finalStatus, headers: headers, body: body,
            bytesReceived: bytesReceived, refusedAddress: refusedAddress)
        let completion = self.completion
        self.completion = nil
        completion?(response)
    }

    private static func keepLimit(_ request: HTTPCall) -> Int {
        if case .keep(let limit) = request.sink { return limit }
        return 64 * 1024
    }

    // MARK: Callbacks (on the multi thread)

    fileprivate func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        if case .stream(let stream) = request.sink, (200..<300).contains(status) {
            if !streamStarted {
                streamStarted = true
                streamRefused = !stream.responseStarted(status: status, headers: headers)
            }
            if streamRefused { return 0 }
            switch stream.receive(bytes) {
            case .accepted:
                bytesReceived += Int64(bytes.count)
                return bytes.count
            case .pause:
                return Int(CURL_WRITEFUNC_PAUSE)
            case .abort:
                return 0
            }
        }
        // Kept bodies, and the body of an error answer to a streamed request (for its message).
        let limit = Self.keepLimit(request)
        guard body.count + bytes.count <= limit else {
            bodyOverflow = true
            return 0
        }
        body.append(contentsOf: bytes)
        bytesReceived += Int64(bytes.count)
        return bytes.count
    }

    fileprivate func header(_ line: UnsafeRawBufferPointer) -> Int {
        switch ReplyHeaders.parse(line: line) {
        case .status(let code):
            // A new response (after a redirect or a 100 Continue): forget the previous one's headers.
            headers = ReplyHeaders()
            status = code
        case .field(let name, let value):
            headers.values[name] = value
        case .other:
            break
        }
        return line.count
    }

    fileprivate func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let source: UnsafeRawBufferPointer
        switch request.body {
        case .none: return 0
        case .bytes(let bytes):
            return bytes.withUnsafeBytes { copy(from: $0, into: buffer) }
        case .part(let part): source = part.bytes
        }
        return copy(from: source, into: buffer)
    }

    private func copy(from source: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let count = min(buffer.count, source.count - uploadOffset)
        guard count > 0 else { return 0 }
        buffer.baseAddress!.copyMemory(from: source.baseAddress! + uploadOffset, byteCount: count)
        uploadOffset += count
        return count
    }

    fileprivate func seek(to offset: Int) -> Int32 {
        guard offset >= 0, offset <= request.body.count else { return 1 }  // CURL_SEEKFUNC_FAIL
        uploadOffset = offset
        return 0  // CURL_SEEKFUNC_OK
    }

    fileprivate func vet(_ address: UnsafeMutablePointer<curl_sockaddr>) -> Bool {
        guard let policy = request.sourcePolicy?.addresses else { return true }
        let family = address.pointee.family
        let verdict: AddressPolicy.Verdict
        let text: String
        switch family {
        case AF_INET:
            let bytes = withUnsafeBytes(of: &address.pointee.addr) { raw -> [UInt8] in
                let ipv4 = raw.load(as: sockaddr_in.self)
                return withUnsafeBytes(of: ipv4.sin_addr) { Array($0) }
            }
            verdict = policy.judge(ipv4: bytes)
            text = bytes.map(String.init).joined(separator: ".")
        case AF_INET6:
            let bytes = withUnsafeMutablePointer(to: &address.pointee.addr) { pointer -> [UInt8] in
                UnsafeRawPointer(pointer).withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) }
                }
            }
            verdict = policy.judge(ipv6: bytes)
            text = Self.ipv6Text(bytes)
        default:
            verdict = .refused("address family \(family)")
            text = "?"
        }
        if case .refused(let kind) = verdict {
            let host = URLComponents(string: request.url)?.host ?? request.url
            refusedAddress = "\(host) connects to \(text), a \(kind)"
            return false
        }
        return true
    }

    private static func ipv6Text(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        let text = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: text, as: UTF8.self)
    }
}

// libcurl's C callbacks: each finds its request in the user-data pointer and calls a method on it.

private let curlWrite: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, user in
    let request = Unmanaged<CurlRequest>.fromOpaque(user!).takeUnretainedValue()
    return request.write(UnsafeRawBufferPointer(start: data, count: size * count))
}

private let curlHeader: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, user in
    let request = Unmanaged<CurlRequest>.fromOpaque(user!).takeUnretainedValue()
    return request.header(UnsafeRawBufferPointer(start: data, count: size * count))
}

private let curlRead: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    buffer, size, count, user in
    let request = Unmanaged<CurlRequest>.fromOpaque(user!).takeUnretainedValue()
    return request.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: size * count))
}

private let curlSeek: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, Int32) -> Int32 = {
    user, offset, origin in
    let request = Unmanaged<CurlRequest>.fromOpaque(user!).takeUnretainedValue()
    guard origin == SEEK_SET else { return 2 }  // CURL_SEEKFUNC_CANTSEEK
    return request.seek(to: Int(offset))
}

private let curlOpenSocket:
    @convention(c) (UnsafeMutableRawPointer?, curlsocktype, UnsafeMutablePointer<curl_sockaddr>?) -> curl_socket_t = {
        user, purpose, address in
        let request = Unmanaged<CurlRequest>.fromOpaque(user!).takeUnretainedValue()
        guard let address, request.vet(address) else { return -1 }  // CURL_SOCKET_BAD
        return socket(address.pointee.family, address.pointee.socktype, address.pointee.protocol)
    }
