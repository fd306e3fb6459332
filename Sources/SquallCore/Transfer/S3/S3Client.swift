import COpenSSL
import Foundation

/// The S3 requests the engine makes, each one signed request with its retries: HEAD, PUT, the
/// multipart calls, a server-side copy, small GETs and DELETEs. Nothing here streams; part bodies
/// are lent ``PartBuffer``s.
struct S3Client: Sendable {
    let configuration: S3Configuration
    let multi: CurlMulti
    let retry: RetryPolicy
    let timeouts: (connectMilliseconds: Int, lowSpeedLimit: Int, lowSpeedSeconds: Int)
    /// Told about every retry, for the retries-by-reason metric.
    var onRetry: @Sendable (String, Int) -> Void = { _, _ in }

    /// The URL of `key` in `bucket` (or of the bucket when `key` is empty), with `query` already encoded.
    func url(bucket: String, key: String, query: String? = nil) -> String {
        let path = key.isEmpty ? "" : "/" + Self.encodePath(key)
        let base: String
        if let endpoint = configuration.endpoint {
            if configuration.pathStyle {
                base = "\(endpoint)/\(bucket)"
            } else {
                let schemeEnd = endpoint.range(of: "://")!
                base = "\(endpoint[..<schemeEnd.upperBound])\(bucket).\(endpoint[schemeEnd.upperBound...])"
            }
        } else {
            base = "https://\(bucket).s3.\(configuration.region).amazonaws.com"
        }
        return base + (path.isEmpty && configuration.pathStyle ? "" : (path.isEmpty ? "/" : path))
            + (query.map { "?\($0)" } ?? "")
    }

    /// URI-encodes a key as S3 and SigV4 expect: every byte but the unreserved ones and `/`.
    static func encodePath(_ key: String) -> String {
        encode(key, keeping: "/")
    }

    static func encode(_ text: String, keeping extra: String = "") -> String {
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
        let kept = Set(extra.utf8)
        var output = ""
        for byte in text.utf8 {
            if unreserved.contains(byte) || kept.contains(byte) {
                output.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                output += String(format: "%%%02X", byte)
            }
        }
        return output
    }

    func call(_ method: HTTPCall.Method, bucket: String, key: String, query: String? = nil) -> HTTPCall {
        var call = HTTPCall(method: method, url: url(bucket: bucket, key: key, query: query))
        call.sendsPathAsIs = true
        // S3 refuses a SigV4 request without it; a request with a body replaces it with its own.
        call.headers = [("x-amz-content-sha256", Self.emptyPayload)]
        if let credentials = configuration.credentials {
            call.signing = HTTPCall.Signing(
                region: configuration.region, accessKeyID: credentials.accessKeyID,
                secretAccessKey: credentials.secretAccessKey, sessionToken: credentials.sessionToken)
        }
        call.connectTimeoutMilliseconds = timeouts.connectMilliseconds
        call.lowSpeedLimit = timeouts.lowSpeedLimit
        call.lowSpeedSeconds = timeouts.lowSpeedSeconds
        return call
    }

    /// Sends `call` until it succeeds, fails permanently, or runs out of attempts.
    /// `accept` may turn a reply the policy calls a success into another verdict (a 200 carrying an `<Error>`).
    /// `expected` lists statuses that are answers rather than failures (404 for a HEAD, 412 for a conditional PUT).
    func send(
        _ call: HTTPCall, what: String, expected: Set<Int> = [],
        accept: @Sendable (HTTPReply) -> RetryPolicy.Verdict = { _ in .success }
    ) async throws(TransferError) -> HTTPReply {
        var attempt = 1
        while true {
            if Task.isCancelled { throw .cancelled }
            let reply = await multi.perform(call)
            if reply.curlCode == 0, reply.refusedAddress == nil, expected.contains(reply.status) { return reply }
            var verdict = RetryPolicy.judge(reply, what: what)
            if verdict == .success { verdict = accept(reply) }
            switch verdict {
            case .success:
                return reply
            case .fail(let error):
                throw error
            case .retry(let reason):
                guard attempt < retry.maxAttempts else {
                    throw TransferError(
                        code: reason,
                        message:
                            "\(what): gave up after \(attempt) attempts (last: \(reason)\(reply.curlCode != 0 ? ", \(reply.curlMessage)" : ""))",
                        isPermanent: false)
                }
                onRetry(reason, attempt)
                do {
                    try await Task.sleep(for: retry.delay(afterAttempt: attempt, random: Double.random(in: 0..<1)))
                } catch {
                    throw .cancelled
                }
                attempt += 1
            }
        }
    }

    // MARK: Objects

    struct ObjectHead: Sendable, Equatable {
        var size: Int64
        var etag: String?
        /// `x-amz-meta-*` values, names without the prefix.
        var metadata: [String: String]
    }

    /// The object's size, ETag and metadata, or nil when there is none.
    ///
    /// A multipart object carries Squall's digest as a tag rather than metadata (the digest is known only
    /// once the upload completes, and metadata cannot change without copying the object): when the HEAD
    /// says the object has tags and no digest in its metadata, its tags are read and merged in.
    func head(bucket: String, key: String) async throws(TransferError) -> ObjectHead? {
        let what = "HEAD s3://\(bucket)/\(key)"
        let reply = try await send(call(.head, bucket: bucket, key: key), what: what, expected: [404])
        guard var head = Self.objectHead(reply) else { return nil }
        if head.metadata["squall-sha256"] == nil, Int(reply.headers["x-amz-tagging-count"] ?? "0") ?? 0 > 0 {
            for (name, value) in try await tags(bucket: bucket, key: key) where head.metadata[name] == nil {
                head.metadata[name] = value
            }
        }
        return head
    }

    /// The object's tags.
    func tags(bucket: String, key: String) async throws(TransferError) -> [String: String] {
        let request = call(.get, bucket: bucket, key: key, query: "tagging=")
        let reply = try await send(request, what: "GetObjectTagging s3://\(bucket)/\(key)", expected: [404])
        guard reply.status == 200 else { return [:] }
        var tags: [String: String] = [:]
        for block in S3XML.blocks(of: "Tag", in: reply.bodyText) {
            if let name = S3XML.firstValue(of: "Key", in: block), let value = S3XML.firstValue(of: "Value", in: block) {
                tags[name] = value
            }
        }
        return tags
    }

    /// Sets the object's tags (replacing any), without rewriting the object.
    func putTags(bucket: String, key: String, tags: [String: String]) async throws(TransferError) {
        var xml = "<Tagging><TagSet>"
        for (name, value) in tags.sorted(by: { $0.key < $1.key }) {
            xml += "<Tag><Key>\(S3XML.escape(name))</Key><Value>\(S3XML.escape(value))</Value></Tag>"
        }
        xml += "</TagSet></Tagging>"
        let body = Array(xml.utf8)
        var request = call(.put, bucket: bucket, key: key, query: "tagging=")
        request.body = .bytes(body)
        request.headers = [
            ("Content-Type", "application/xml"),
            ("Content-MD5", Data(Self.md5(body)).base64EncodedString()),
            ("x-amz-content-sha256", body.withUnsafeBytes { ResumableSHA256.hex(ResumableSHA256.digest(of: $0)) }),
        ]
        _ = try await send(request, what: "PutObjectTagging s3://\(bucket)/\(key)")
    }

    static func objectHead(_ reply: HTTPReply) -> ObjectHead? {
        guard (200..<300).contains(reply.status) else { return nil }
        var metadata: [String: String] = [:]
        for (name, value) in reply.headers.values where name.hasPrefix("x-amz-meta-") {
            metadata[String(name.dropFirst("x-amz-meta-".count))] = value
        }
        return ObjectHead(
            size: Int64(reply.headers["content-length"] ?? "") ?? 0, etag: reply.headers["etag"], metadata: metadata)
    }

    /// PUTs a whole object whose SHA-256 (`sha256`, signed: the body is known whole by now) and CRC32C
    /// are known; returns its ETag, or nil when `conditional` (`If-None-Match: *`, create only) found an
    /// object already there (412).
    func put(
        bucket: String, key: String, body: HTTPCall.Body, sha256: [UInt8], checksum: PartChecksum,
        metadata: [String: String], conditional: Bool
    ) async throws(TransferError) -> String?? {
        var request = call(.put, bucket: bucket, key: key)
        request.body = body
        request.headers =
            Self.payloadHeaders(signing: ResumableSHA256.hex(sha256), checksum: checksum)
            + metadata.sorted { $0.key < $1.key }.map { ("x-amz-meta-\($0.key)", $0.value) }
        if conditional { request.headers.append(("If-None-Match", "*")) }
        let reply = try await send(request, what: "PUT s3://\(bucket)/\(key)", expected: [412])
        return reply.status == 412 ? nil : .some(reply.headers["etag"])
    }

    /// What SigV4 signs for the body (its SHA-256 in hex, or `UNSIGNED-PAYLOAD`) and the CRC32C that S3
    /// checks the body against before it stores anything (a damaged part is refused, then retried).
    static func payloadHeaders(signing payload: String, checksum: PartChecksum) -> [(name: String, value: String)] {
        [("x-amz-content-sha256", payload), ("x-amz-checksum-crc32c", checksum.base64)]
    }

    /// A part's body is not signed: hashing it with SHA-256 a second time (the whole object's digest runs
    /// anyway) would double the engine's CPU per byte; its CRC32C is checked by S3 instead.
    static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// The SHA-256 of no bytes: what a request without a body signs.
    static let emptyPayload = ResumableSHA256().hexDigest()

    func getSmall(bucket: String, key: String) async throws(TransferError) -> [UInt8]? {
        var request = call(.get, bucket: bucket, key: key)
        request.sink = .keep(limit: 1 << 20)
        let reply = try await send(request, what: "GET s3://\(bucket)/\(key)", expected: [404])
        return reply.status == 200 ? reply.body : nil
    }

    func delete(bucket: String, key: String) async throws(TransferError) {
        _ = try await send(call(.delete, bucket: bucket, key: key), what: "DELETE s3://\(bucket)/\(key)")
    }

    /// Creates a bucket (tests, `squallctl cp` into a fresh emulator); an existing one of ours is fine.
    func createBucket(_ bucket: String) async throws(TransferError) {
        _ = try await send(call(.put, bucket: bucket, key: ""), what: "CreateBucket \(bucket)", expected: [409])
    }

    // MARK: Multipart

    func createMultipartUpload(
        bucket: String, key: String, metadata: [String: String]
    ) async throws(TransferError) -> String {
        var request = call(.post, bucket: bucket, key: key, query: "uploads=")
        request.headers =
            [
                ("x-amz-content-sha256", Self.emptyPayload),
                ("x-amz-checksum-algorithm", "CRC32C"),
            ] + metadata.sorted { $0.key < $1.key }.map { ("x-amz-meta-\($0.key)", $0.value) }
        let what = "CreateMultipartUpload s3://\(bucket)/\(key)"
        let reply = try await send(request, what: what)
        guard let uploadID = S3XML.firstValue(of: "UploadId", in: reply.bodyText) else {
            throw TransferError(code: "s3_protocol", message: "\(what): no UploadId in the answer", isPermanent: false)
        }
        return uploadID
    }

    func uploadPart(
        bucket: String, key: String, uploadID: String, number: Int, part: PartBuffer, checksum: PartChecksum
    ) async throws(TransferError) -> String {
        let query = "partNumber=\(number)&uploadId=\(Self.encode(uploadID))"
        var request = call(.put, bucket: bucket, key: key, query: query)
        request.body = .part(part)
        request.headers = Self.payloadHeaders(signing: Self.unsignedPayload, checksum: checksum)
        let what = "UploadPart \(number) of s3://\(bucket)/\(key)"
        let reply = try await send(request, what: what)
        guard let etag = reply.headers["etag"] else {
            throw TransferError(code: "s3_protocol", message: "\(what): no ETag in the answer", isPermanent: false)
        }
        return etag
    }

    struct CompletedPart: Sendable, Equatable {
        var number: Int
        var etag: String
        var checksum: PartChecksum
    }

    /// Completes the upload; returns the object's ETag, or nil when `conditional` found an object
    /// already there (412). A 200 whose body is an `<Error>` is retried.
    func completeMultipartUpload(
        bucket: String, key: String, uploadID: String, parts: [CompletedPart], conditional: Bool
    ) async throws(TransferError) -> String?? {
        var xml = "<CompleteMultipartUpload>"
        for part in parts.sorted(by: { $0.number < $1.number }) {
            xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(S3XML.escape(part.etag))</ETag>"
            xml += "<ChecksumCRC32C>\(part.checksum.base64)</ChecksumCRC32C></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = Array(xml.utf8)
        var request = call(.post, bucket: bucket, key: key, query: "uploadId=\(Self.encode(uploadID))")
        request.body = .bytes(body)
        request.headers = [
            ("Content-Type", "application/xml"),
            ("x-amz-content-sha256", body.withUnsafeBytes { ResumableSHA256.hex(ResumableSHA256.digest(of: $0)) }),
        ]
        if conditional { request.headers.append(("If-None-Match", "*")) }
        // S3 may take minutes to assemble a large object, sending only whitespace meanwhile: the stall
        // limit meant for data transfers would give up on an answer that is on its way.
        request.lowSpeedSeconds = max(request.lowSpeedSeconds, Self.completeStallSeconds)
        let what = "CompleteMultipartUpload s3://\(bucket)/\(key)"
        let reply: HTTPReply
        do {
            reply = try await send(request, what: what, expected: [412]) { reply in
                Self.errorInBody(reply, what: what)
            }
        } catch {
            // A Complete whose answer was lost may still have completed; a retry then finds no upload
            // (NoSuchUpload). The object the parts make has a known ETag: if it is there, this upload made it.
            if let expected = Self.multipartETag(of: parts), let head = try? await head(bucket: bucket, key: key),
                head.etag == expected
            {
                return .some(head.etag)
            }
            throw error
        }
        if reply.status == 412 { return nil }
        return .some(S3XML.firstValue(of: "ETag", in: reply.bodyText) ?? reply.headers["etag"])
    }

    /// How long CompleteMultipartUpload may go without a byte before it counts as stalled.
    static let completeStallSeconds = 600

    /// The ETag S3 gives the object completed from `parts`: the MD5 of their MD5s, a dash and their
    /// count (nil when a part's ETag is not a plain MD5, as with some encryption settings).
    static func multipartETag(of parts: [CompletedPart]) -> String? {
        var digests: [UInt8] = []
        for part in parts.sorted(by: { $0.number < $1.number }) {
            let hex = Array(part.etag.utf8.filter { $0 != UInt8(ascii: "\"") })
            guard hex.count == 32 else { return nil }
            for index in stride(from: 0, to: 32, by: 2) {
                guard let byte = UInt8(String(decoding: hex[index..<index + 2], as: UTF8.self), radix: 16) else {
                    return nil
                }
                digests.append(byte)
            }
        }
        return "\"\(ResumableSHA256.hex(md5(digests)))-\(parts.count)\""
    }

    /// MD5, which S3 still asks for (Content-MD5, multipart ETags), from the OpenSSL the engine links anyway.
    static func md5(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(MD5_DIGEST_LENGTH))
        bytes.withUnsafeBufferPointer { input in
            digest.withUnsafeMutableBufferPointer { output in
                _ = MD5(input.baseAddress, input.count, output.baseAddress)
            }
        }
        return digest
    }

    /// S3 may answer 200 and then an `<Error>` body (CompleteMultipartUpload, CopyObject).
    static func errorInBody(_ reply: HTTPReply, what: String) -> RetryPolicy.Verdict {
        let text = reply.bodyText
        guard text.contains("<Error>"), let code = S3XML.firstValue(of: "Code", in: text) else { return .success }
        switch code {
        case "InternalError", "SlowDown", "RequestTimeout", "ServiceUnavailable":
            return .retry(reason: RetryPolicy.reasonForS3Code(code))
        default:
            let message = S3XML.firstValue(of: "Message", in: text) ?? ""
            return .fail(TransferError(code: "s3_\(code)", message: "\(what): \(code): \(message)", isPermanent: true))
        }
    }

    func abortMultipartUpload(bucket: String, key: String, uploadID: String) async throws(TransferError) {
        let request = call(.delete, bucket: bucket, key: key, query: "uploadId=\(Self.encode(uploadID))")
        _ = try await send(request, what: "AbortMultipartUpload s3://\(bucket)/\(key)", expected: [404])
    }

    struct UploadInProgress: Sendable, Equatable {
        var key: String
        var uploadID: String
    }

    /// Multipart uploads in progress whose key is exactly `key`.
    func uploadsInProgress(bucket: String, key: String) async throws(TransferError) -> [UploadInProgress] {
        let request = call(.get, bucket: bucket, key: "", query: "prefix=\(Self.encode(key))&uploads=")
        let reply = try await send(request, what: "ListMultipartUploads s3://\(bucket)/\(key)")
        return S3XML.blocks(of: "Upload", in: reply.bodyText).compactMap { block in
            guard let found = S3XML.firstValue(of: "Key", in: block), found == key,
                let id = S3XML.firstValue(of: "UploadId", in: block)
            else { return nil }
            return UploadInProgress(key: found, uploadID: id)
        }
    }

    struct UploadedPart: Sendable, Equatable {
        var number: Int
        var etag: String
        var size: Int64
    }

    /// The parts uploaded so far, or nil when the upload no longer exists.
    func listParts(bucket: String, key: String, uploadID: String) async throws(TransferError) -> [UploadedPart]? {
        var parts: [UploadedPart] = []
        var marker = 0
        while true {
            var query = "uploadId=\(Self.encode(uploadID))"
            if marker > 0 { query = "part-number-marker=\(marker)&" + query }
            let request = call(.get, bucket: bucket, key: key, query: query)
            let reply = try await send(request, what: "ListParts s3://\(bucket)/\(key)", expected: [404])
            if reply.status == 404 { return nil }
            let page = S3XML.blocks(of: "Part", in: reply.bodyText).compactMap { block -> UploadedPart? in
                guard let number = S3XML.firstValue(of: "PartNumber", in: block).flatMap({ Int($0) }),
                    let etag = S3XML.firstValue(of: "ETag", in: block),
                    let size = S3XML.firstValue(of: "Size", in: block).flatMap({ Int64($0) })
                else { return nil }
                return UploadedPart(number: number, etag: etag, size: size)
            }
            parts += page
            guard S3XML.firstValue(of: "IsTruncated", in: reply.bodyText) == "true", let last = page.last else { break }
            marker = last.number
        }
        return parts
    }
}
