import CCurl
import Crypto
import Dispatch
import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// A bucket with a random name on the S3 emulator, for one test: created, inspected, emptied and deleted.
///
/// Its requests go straight to the emulator (never through a fault proxy) with libcurl's own SigV4, so
/// what a test reads back is what the emulator stores. moto checks neither signatures nor checksums:
/// a test proves an object right only by reading all of it back and hashing it, which ``readBack(_:)`` does.
final class S3TestBucket: Sendable {
    /// The emulator's endpoint (`SQUALL_S3_ENDPOINT`), without a trailing slash.
    let endpoint: String
    let name: String

    /// Creates `squall-<purpose>-<random>` on the emulator of `scripts/services env`.
    static func create(_ purpose: String) async throws -> S3TestBucket {
        var endpoint = try ServiceEnvironment.value("SQUALL_S3_ENDPOINT")
        if endpoint.hasSuffix("/") { endpoint.removeLast() }
        let name = "squall-\(purpose)-\(UInt64.random(in: 0...UInt64.max) % 1_000_000_000_000)"
        let bucket = S3TestBucket(endpoint: endpoint, name: name)
        let created = try await bucket.send("PUT", "")
        guard created.status == 200 else {
            throw FixtureError("creating bucket \(name) on \(endpoint): \(created.status) \(created.text)")
        }
        return bucket
    }

    private init(endpoint: String, name: String) {
        self.endpoint = endpoint
        self.name = name
    }

    /// The engine's settings for this emulator (or a fault proxy in front of it).
    static func s3Configuration(endpoint: URL? = nil) throws -> S3Configuration {
        let environment = ServiceEnvironment.environment
        let base = try endpoint?.absoluteString ?? ServiceEnvironment.value("SQUALL_S3_ENDPOINT")
        return S3Configuration(
            endpoint: base.hasSuffix("/") ? String(base.dropLast()) : base,
            region: environment["SQUALL_S3_REGION"] ?? "us-east-1", pathStyle: true,
            credentials: S3Credentials(
                accessKeyID: environment["AWS_ACCESS_KEY_ID"] ?? "squall-test",
                secretAccessKey: Secret(environment["AWS_SECRET_ACCESS_KEY"] ?? "squall-test-secret")))
    }

    func location(_ key: String) -> TransferLocation { .s3(bucket: name, key: key) }

    /// An object as stored, read back in full.
    struct StoredObject: Sendable, Equatable {
        var size: Int
        var sha256: String
    }

    /// Reads `key` in full and hashes it; nil when there is no such object.
    func readBack(_ key: String) async throws -> StoredObject? {
        let answer = try await send("GET", "/\(Self.escape(key))", hashBody: true)
        if answer.status == 404 { return nil }
        guard answer.status == 200, let digest = answer.sha256 else {
            throw FixtureError("GET \(name)/\(key): \(answer.status) \(answer.text)")
        }
        return StoredObject(size: answer.bodyBytes, sha256: digest)
    }

    /// The headers of `key` (names lowercased), or nil when there is no such object.
    func head(_ key: String) async throws -> [String: String]? {
        let answer = try await send("HEAD", "/\(Self.escape(key))")
        if answer.status == 404 { return nil }
        guard answer.status == 200 else { throw FixtureError("HEAD \(name)/\(key): \(answer.status)") }
        return answer.headers
    }

    /// Stores `data` under `key` with one PUT (and `metadata` as `x-amz-meta-*` headers).
    func put(_ key: String, _ data: Data, metadata: [String: String] = [:]) async throws {
        let headers = metadata.map { "x-amz-meta-\($0.key): \($0.value)" }
        let answer = try await send("PUT", "/\(Self.escape(key))", body: data, headers: headers)
        guard answer.status == 200 else { throw FixtureError("PUT \(name)/\(key): \(answer.status) \(answer.text)") }
    }

    /// Multipart uploads started and neither completed nor aborted, as (key, upload id).
    func incompleteUploads() async throws -> [(key: String, uploadID: String)] {
        let answer = try await send("GET", "?uploads=")
        guard answer.status == 200 else { throw FixtureError("ListMultipartUploads \(name): \(answer.status)") }
        return XMLElements.records(in: answer.text, element: "Upload").compactMap { record in
            guard let key = record["Key"], let id = record["UploadId"] else { return nil }
            return (key, id)
        }
    }

    /// The part numbers uploaded so far to `uploadID`.
    func parts(_ key: String, uploadID: String) async throws -> [Int] {
        let answer = try await send("GET", "/\(Self.escape(key))?uploadId=\(Self.escape(uploadID))")
        guard answer.status == 200 else { throw FixtureError("ListParts \(name)/\(key): \(answer.status)") }
        return XMLElements.records(in: answer.text, element: "Part").compactMap { $0["PartNumber"].flatMap { Int($0) } }
    }

    /// How many parts the engine's resume record for `key` says are stored (its `partsDone`), or nil
    /// when there is no record. The record's key is `.squall-resume/<sha256 of the key>` (docs/transfer.md).
    func recordedParts(_ key: String) async throws -> Int? {
        var hasher = SHA256Hasher()
        hasher.update(Data(key.utf8))
        let recordKey = ".squall-resume/" + hasher.hex()
        let answer = try await send("GET", "/\(Self.escape(recordKey))")
        if answer.status == 404 { return nil }
        guard answer.status == 200,
            let record = try? JSONSerialization.jsonObject(with: Data(answer.text.utf8)) as? [String: Any]
        else { throw FixtureError("GET \(name)/\(recordKey): \(answer.status) \(answer.text)") }
        return record["partsDone"] as? Int
    }

    /// Aborts every upload, deletes every object, deletes the bucket; errors are ignored (cleanup).
    func destroy() async {
        for upload in (try? await incompleteUploads()) ?? [] {
            _ = try? await send("DELETE", "/\(Self.escape(upload.key))?uploadId=\(Self.escape(upload.uploadID))")
        }
        if let listing = try? await send("GET", "?list-type=2") {
            for record in XMLElements.records(in: listing.text, element: "Contents") {
                if let key = record["Key"] { _ = try? await send("DELETE", "/\(Self.escape(key))") }
            }
        }
        _ = try? await send("DELETE", "")
    }

    /// Percent-encodes every byte of `text` but ASCII letters, digits, `-._~` and `/`.
    static func escape(_ text: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    /// Every object key in the bucket, as S3 lists them.
    func keys() async throws -> [String] {
        let answer = try await send("GET", "?list-type=2")
        guard answer.status == 200 else { throw FixtureError("ListObjectsV2 \(name): \(answer.status)") }
        return XMLElements.records(in: answer.text, element: "Contents").compactMap { $0["Key"] }.map {
            $0.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
                .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
                .replacingOccurrences(of: "&amp;", with: "&")
        }
    }

    // MARK: - One signed libcurl request, off Swift's cooperative pool

    struct Answer: Sendable {
        var status: Int
        var headers: [String: String]
        /// The body (up to 1 MiB kept), unless it was hashed.
        var body: Data
        var bodyBytes: Int
        var sha256: String?
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func send(
        _ method: String, _ pathAndQuery: String, body: Data? = nil, headers: [String] = [], hashBody: Bool = false
    ) async throws -> Answer {
        let url = "\(endpoint)/\(name)\(pathAndQuery)"
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(
                    with: Result {
                        try Self.perform(method: method, url: url, body: body, headers: headers, hashBody: hashBody)
                    })
            }
        }
    }

    private final class Exchange {
        var upload: Data
        var uploadOffset = 0
        var body = Data()
        var bodyBytes = 0
        var hasher: SHA256?
        var headers: [String: String] = [:]
        init(upload: Data, hash: Bool) {
            self.upload = upload
            hasher = hash ? SHA256() : nil
        }
    }

    private static func perform(
        method: String, url: String, body: Data?, headers: [String], hashBody: Bool
    ) throws -> Answer {
        let environment = ServiceEnvironment.environment
        guard let handle = curl_easy_init() else { throw FixtureError("curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }
        let exchange = Exchange(upload: body ?? Data(), hash: hashBody)
        let context = Unmanaged.passRetained(exchange)
        defer { context.release() }

        squall_easy_setopt_string(handle, CURLOPT_URL, url)
        squall_easy_setopt_long(handle, CURLOPT_PATH_AS_IS, 1)  // a key's `..` is a name, not a step up
        squall_easy_setopt_string(handle, CURLOPT_PROXY, "")
        if method == "HEAD" {
            squall_easy_setopt_long(handle, CURLOPT_NOBODY, 1)
        } else {
            squall_easy_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)
        }
        let region = environment["SQUALL_S3_REGION"] ?? "us-east-1"
        squall_easy_setopt_string(handle, CURLOPT_AWS_SIGV4, "aws:amz:\(region):s3")
        let user =
            "\(environment["AWS_ACCESS_KEY_ID"] ?? "squall-test"):\(environment["AWS_SECRET_ACCESS_KEY"] ?? "squall-test-secret")"
        squall_easy_setopt_string(handle, CURLOPT_USERPWD, user)
        var list: UnsafeMutablePointer<curl_slist>? = curl_slist_append(nil, "x-amz-content-sha256: UNSIGNED-PAYLOAD")
        for header in headers { list = curl_slist_append(list, header) }
        defer { curl_slist_free_all(list) }
        squall_easy_setopt_slist(handle, CURLOPT_HTTPHEADER, list)
        squall_easy_setopt_long(handle, CURLOPT_TIMEOUT, 120)
        squall_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, context.toOpaque())
        squall_easy_setopt_write_function(handle) { data, size, count, user in
            let exchange = Unmanaged<Exchange>.fromOpaque(user!).takeUnretainedValue()
            let bytes = UnsafeRawBufferPointer(start: data, count: size * count)
            exchange.bodyBytes += bytes.count
            if exchange.hasher != nil {
                exchange.hasher!.update(bufferPointer: bytes)
            } else if exchange.body.count < 1 << 20 {
                exchange.body.append(contentsOf: bytes.prefix((1 << 20) - exchange.body.count))
            }
            return size * count
        }
        squall_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, context.toOpaque())
        squall_easy_setopt_header_function(handle) { data, size, count, user in
            let exchange = Unmanaged<Exchange>.fromOpaque(user!).takeUnretainedValue()
            let line = String(decoding: UnsafeRawBufferPointer(start: data, count: size * count), as: UTF8.self)
            if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                exchange.headers[name] = line[line.index(after: colon)...].trimmingCharacters(
                    in: .whitespacesAndNewlines)
            }
            return size * count
        }
        if body != nil {
            squall_easy_setopt_long(handle, CURLOPT_UPLOAD, 1)
            squall_easy_setopt_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(exchange.upload.count))
            squall_easy_setopt_pointer(handle, CURLOPT_READDATA, context.toOpaque())
            squall_easy_setopt_read_function(handle) { data, size, count, user in
                let exchange = Unmanaged<Exchange>.fromOpaque(user!).takeUnretainedValue()
                let length = min(size * count, exchange.upload.count - exchange.uploadOffset)
                exchange.upload.copyBytes(
                    to: UnsafeMutableRawPointer(data!).assumingMemoryBound(to: UInt8.self),
                    from: exchange.uploadOffset..<(exchange.uploadOffset + length))
                exchange.uploadOffset += length
                return length
            }
        }
        let code = curl_easy_perform(handle)
        guard code == CURLE_OK else {
            throw FixtureError("\(method) \(url): \(String(cString: curl_easy_strerror(code)))")
        }
        var status = 0
        squall_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        let digest = exchange.hasher.map { $0.finalize().map { String(format: "%02x", $0) }.joined() }
        return Answer(
            status: status, headers: exchange.headers, body: exchange.body, bodyBytes: exchange.bodyBytes,
            sha256: digest)
    }
}

/// Just enough XML reading for S3's listings: the child elements of each `<element>` record.
enum XMLElements {
    static func records(in xml: String, element: String) -> [[String: String]] {
        var records: [[String: String]] = []
        var rest = xml[...]
        while let open = rest.range(of: "<\(element)>"),
            let close = rest.range(of: "</\(element)>", range: open.upperBound..<rest.endIndex)
        {
            let inner = rest[open.upperBound..<close.lowerBound]
            var record: [String: String] = [:]
            var scan = inner
            while let start = scan.range(of: "<"),
                let end = scan.range(of: ">", range: start.upperBound..<scan.endIndex)
            {
                let tag = String(scan[start.upperBound..<end.lowerBound])
                guard !tag.hasPrefix("/"), !tag.hasSuffix("/"),
                    let closing = scan.range(of: "</\(tag)>", range: end.upperBound..<scan.endIndex)
                else {
                    scan = scan[end.upperBound...]
                    continue
                }
                let value = scan[end.upperBound..<closing.lowerBound]
                if !value.contains("<") { record[tag] = String(value) }
                scan = value.contains("<") ? scan[end.upperBound...] : scan[closing.upperBound...]
            }
            records.append(record)
            rest = rest[close.upperBound...]
        }
        return records
    }
}

/// SHA-256 as the engine reports it: lowercase hex.
struct SHA256Hasher {
    private var inner = SHA256()

    mutating func update(_ data: Data) { inner.update(data: data) }

    func hex() -> String { inner.finalize().map { String(format: "%02x", $0) }.joined() }
}
