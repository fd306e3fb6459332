import Crypto
import Foundation
import Testing

@testable import SquallCore

@Suite("Transfer engine: addresses a source may reach")
struct AddressPolicyTests {
    let strict = AddressPolicy(allowPrivate: false)
    let lenient = AddressPolicy(allowPrivate: true)

    @Test(
        "link-local, metadata, unspecified, multicast and broadcast are refused even when private ranges are allowed",
        arguments: [[169, 254, 169, 254], [169, 254, 0, 1], [0, 0, 0, 0], [224, 0, 0, 1], [255, 255, 255, 255]])
    func alwaysRefusedIPv4(_ bytes: [UInt8]) {
        #expect(strict.judge(ipv4: bytes) != .allowed)
        #expect(lenient.judge(ipv4: bytes) != .allowed)
    }

    @Test(
        "loopback and private ranges are refused unless allowed",
        arguments: [
            [127, 0, 0, 1], [127, 1, 2, 3], [10, 1, 2, 3], [172, 16, 0, 1], [172, 31, 255, 1], [192, 168, 1, 1],
            [100, 64, 0, 1],
        ])
    func privateIPv4(_ bytes: [UInt8]) {
        #expect(strict.judge(ipv4: bytes) != .allowed)
        #expect(lenient.judge(ipv4: bytes) == .allowed)
    }

    @Test("public addresses are allowed, and the neighbours of private ranges are public")
    func publicIPv4() {
        for bytes: [UInt8] in [
            [93, 184, 216, 34], [172, 15, 0, 1], [172, 32, 0, 1], [100, 128, 0, 1], [8, 8, 8, 8],
        ] {
            #expect(strict.judge(ipv4: bytes) == .allowed, "\(bytes)")
        }
    }

    static func ipv6(_ text: String) -> [UInt8] {
        var address = in6_addr()
        #expect(inet_pton(AF_INET6, text, &address) == 1, "\(text)")
        return withUnsafeBytes(of: address) { Array($0) }
    }

    @Test("IPv6: the EC2 metadata address, link-local and multicast are always refused")
    func alwaysRefusedIPv6() {
        for text in ["fd00:ec2::254", "fe80::1", "febf::1", "ff02::1", "::"] {
            #expect(lenient.judge(ipv6: Self.ipv6(text)) != .allowed, "\(text)")
        }
    }

    @Test("IPv4 reached through IPv6 spellings is judged as the IPv4 address: mapped, compatible, NAT64")
    func embeddedIPv4() {
        #expect(lenient.judge(ipv6: Self.ipv6("::ffff:169.254.169.254")) != .allowed)
        #expect(lenient.judge(ipv6: Self.ipv6("64:ff9b::a9fe:a9fe")) != .allowed)
        #expect(strict.judge(ipv6: Self.ipv6("::ffff:127.0.0.1")) != .allowed)
        #expect(strict.judge(ipv6: Self.ipv6("::ffff:10.0.0.1")) != .allowed)
        #expect(strict.judge(ipv6: Self.ipv6("::ffff:93.184.216.34")) == .allowed)
    }

    @Test("IPv6 loopback and unique-local are private; global unicast is allowed")
    func privateIPv6() {
        for text in ["::1", "fc00::1", "fd12:3456::1"] {
            #expect(strict.judge(ipv6: Self.ipv6(text)) != .allowed, "\(text)")
            #expect(lenient.judge(ipv6: Self.ipv6(text)) == .allowed, "\(text)")
        }
        #expect(strict.judge(ipv6: Self.ipv6("2606:2800:220:1:248:1893:25c8:1946")) == .allowed)
    }
}

@Suite("Transfer engine: part sizes, retries, S3 answers")
struct TransferPlanTests {
    @Test("parts are whole MiB, at least 5 MiB, and grow so that no object needs more than 10,000")
    func partSizes() {
        #expect(PartPlan.partSize(requested: 8 << 20, objectSize: nil) == 8 << 20)
        #expect(PartPlan.partSize(requested: 1 << 20, objectSize: 100) == 5 << 20)
        #expect(PartPlan.partSize(requested: (5 << 20) + 1, objectSize: nil) == 6 << 20)
        let huge: Int64 = 200 << 30  // 200 GiB at 8 MiB would be 25,600 parts
        let size = PartPlan.partSize(requested: 8 << 20, objectSize: huge)
        #expect(Int64(size) * 10_000 >= huge)
        #expect(size % (1 << 20) == 0)
        #expect(PartPlan.partSize(requested: 8 << 20, objectSize: 80 << 30) == 9 << 20)
    }

    @Test("backoff grows exponentially to its cap, and full jitter scales it by the random fraction")
    func backoff() {
        let policy = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(1))
        #expect(policy.delay(afterAttempt: 1, random: 0.999_999) < .milliseconds(100))
        #expect(policy.delay(afterAttempt: 3, random: 0.5) == .milliseconds(200))
        #expect(policy.delay(afterAttempt: 20, random: 0.5) == .milliseconds(500))
        #expect(policy.delay(afterAttempt: 2, random: 0) == .zero)
    }

    static func reply(status: Int = 200, curl: Int = 0, body: String = "", refused: String? = nil) -> HTTPReply {
        HTTPReply(
            curlCode: curl, curlMessage: curl == 0 ? "" : "boom", status: status, headers: ReplyHeaders(),
            body: Array(body.utf8), bytesReceived: 0, refusedAddress: refused)
    }

    @Test("which replies are retried, with which reason, and which fail at once")
    func judging() {
        #expect(RetryPolicy.judge(Self.reply(), what: "GET x") == .success)
        #expect(RetryPolicy.judge(Self.reply(status: 503), what: "GET x") == .retry(reason: "http_503"))
        #expect(RetryPolicy.judge(Self.reply(status: 429), what: "GET x") == .retry(reason: "http_429"))
        let slowDown = "<Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>"
        #expect(
            RetryPolicy.judge(Self.reply(status: 503, body: slowDown), what: "PUT x") == .retry(reason: "slow_down"))
        let timeout = "<Error><Code>RequestTimeout</Code></Error>"
        #expect(
            RetryPolicy.judge(Self.reply(status: 400, body: timeout), what: "PUT x")
                == .retry(reason: "request_timeout"))
        #expect(RetryPolicy.judge(Self.reply(curl: 56), what: "GET x") == .retry(reason: "connection_reset"))
        #expect(RetryPolicy.judge(Self.reply(curl: 28), what: "GET x") == .retry(reason: "timeout"))
        for status in [400, 401, 403, 404, 410] {
            guard case .fail(let error) = RetryPolicy.judge(Self.reply(status: status), what: "GET http://h/a") else {
                Issue.record("\(status) is not permanent")
                continue
            }
            #expect(error.code == "http_\(status)")
            #expect(error.isPermanent)
            #expect(error.message.contains("GET http://h/a"))
        }
        guard
            case .fail(let refused) = RetryPolicy.judge(
                Self.reply(curl: 7, refused: "h connects to 169.254.169.254"), what: "GET x")
        else {
            Issue.record("a refused address is not a failure")
            return
        }
        #expect(refused.code == "address_refused")
        #expect(RetryPolicy.judge(Self.reply(curl: 42), what: "GET x") == .fail(.cancelled))
    }

    @Test("a multipart object's ETag is the MD5 of its parts' MD5s and their count, whatever order they finished in")
    func multipartETag() {
        let parts = [
            S3Client.CompletedPart(number: 2, etag: "\"3ea4e15b91a17dc76052c56cfcdf67a2\"", checksum: PartChecksum()),
            S3Client.CompletedPart(number: 1, etag: "\"3303e12af474ca11d85ed2966a932992\"", checksum: PartChecksum()),
        ]
        #expect(S3Client.multipartETag(of: parts) == "\"0732917abc3288784e318ac0aab1757a-2\"")
        let encrypted = [S3Client.CompletedPart(number: 1, etag: "\"not-an-md5\"", checksum: PartChecksum())]
        #expect(S3Client.multipartETag(of: encrypted) == nil)
    }

    @Test("S3 XML: values, repeated blocks and entities")
    func xml() {
        let text = """
            <ListMultipartUploadsResult><Upload><Key>a&amp;b</Key><UploadId>1</UploadId></Upload>\
            <Upload><Key>c</Key><UploadId>2</UploadId></Upload></ListMultipartUploadsResult>
            """
        let uploads = S3XML.blocks(of: "Upload", in: text)
        #expect(uploads.count == 2)
        #expect(S3XML.firstValue(of: "Key", in: uploads[0]) == "a&b")
        #expect(S3XML.values(of: "UploadId", in: text) == ["1", "2"])
        #expect(S3XML.decodeEntities("&lt;&#65;&#x42;&gt;") == "<AB>")
        #expect(
            S3Client.errorInBody(TransferPlanTests.reply(body: "<Error><Code>InternalError</Code></Error>"), what: "x")
                == .retry(reason: "internal_error"))
    }

    @Test("keys are URI-encoded byte by byte, slashes kept; path-style and virtual-hosted URLs")
    func addressing() {
        #expect(S3Client.encodePath("a b/ü+=.txt") == "a%20b/%C3%BC%2B%3D.txt")
        let multi = CurlMulti(name: "test")
        defer { multi.shutdown() }
        let timeouts = (connectMilliseconds: 1000, lowSpeedLimit: 1, lowSpeedSeconds: 1)
        let pathStyle = S3Client(
            configuration: S3Configuration(endpoint: "http://127.0.0.1:9000", pathStyle: true), multi: multi,
            retry: RetryPolicy(maxAttempts: 1, maxDelay: .zero), timeouts: timeouts)
        #expect(pathStyle.url(bucket: "b", key: "k/1") == "http://127.0.0.1:9000/b/k/1")
        #expect(pathStyle.url(bucket: "b", key: "", query: "uploads=") == "http://127.0.0.1:9000/b?uploads=")
        let aws = S3Client(
            configuration: S3Configuration(region: "eu-west-1"), multi: multi,
            retry: RetryPolicy(maxAttempts: 1, maxDelay: .zero), timeouts: timeouts)
        #expect(aws.url(bucket: "b", key: "k") == "https://b.s3.eu-west-1.amazonaws.com/k")
    }

    @Test("libcurl's upload buffer fits the body, within libcurl's 16 KiB floor and a 1 MiB ceiling")
    func uploadBuffer() {
        #expect(CurlRequest.uploadBufferSize(bodyBytes: 0) == 16 * 1024)
        #expect(CurlRequest.uploadBufferSize(bodyBytes: 4096) == 16 * 1024)
        #expect(CurlRequest.uploadBufferSize(bodyBytes: 100_000) == 100_000)
        #expect(CurlRequest.uploadBufferSize(bodyBytes: 8 << 20) == 1 << 20)
    }

    @Test("a PUT body below libcurl's 64 KiB initial-POST limit goes with the head, a larger one streams")
    func inlineBodies() {
        #expect(CurlRequest.sendsBodyInline(.none))
        #expect(CurlRequest.sendsBodyInline(.bytes([UInt8](repeating: 1, count: 65_535))))
        #expect(!CurlRequest.sendsBodyInline(.bytes([UInt8](repeating: 1, count: 65_536))))
        let part = PartBuffer(capacity: 1 << 20)
        part.count = 1 << 20
        #expect(!CurlRequest.sendsBodyInline(.part(part)))
    }
}

@Suite("Transfer engine: the resumable SHA-256")
struct ResumableSHA256Tests {
    @Test("it agrees with swift-crypto, and a state saved after whole blocks resumes to the same digest")
    func savedStateResumes() throws {
        let bytes = (0..<(3 << 20) + 1234).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        let expected = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        var whole = ResumableSHA256()
        whole.update(bytes)
        #expect(whole.hexDigest() == expected)

        var first = ResumableSHA256()
        first.update(Array(bytes[..<(1 << 20)]))
        let saved = try #require(first.savedState)
        var resumed = try #require(ResumableSHA256(restoring: saved))
        #expect(resumed.byteCount == 1 << 20)
        resumed.update(Array(bytes[(1 << 20)...]))
        #expect(resumed.hexDigest() == expected)

        var unaligned = ResumableSHA256()
        unaligned.update(Array(bytes[..<100]))
        #expect(unaligned.savedState == nil)
        #expect(ResumableSHA256(restoring: [1, 2, 3]) == nil)
    }

    @Test("a digest is 64 lowercase hex digits: no capitals, no other characters, no other length")
    func digestHex() {
        let digest = String(repeating: "0123456789abcdef", count: 4)
        #expect(ResumableSHA256.isDigestHex(digest))
        #expect(!ResumableSHA256.isDigestHex(digest.uppercased()))
        #expect(!ResumableSHA256.isDigestHex(String(digest.dropLast())))
        #expect(!ResumableSHA256.isDigestHex(digest + "0"))
        #expect(!ResumableSHA256.isDigestHex(String(digest.dropLast()) + "g"))
        // A fullwidth zero is a hex digit to `Character`; here it is three bytes that are not (61 + 3 = 64 bytes).
        #expect(!ResumableSHA256.isDigestHex(String(digest.dropLast(3)) + "\u{FF10}"))
        #expect(!ResumableSHA256.isDigestHex(""))
    }
}

@Suite("Transfer engine: source ETags as metadata")
struct BareETagTests {
    @Test("quotes and the weakness mark go, wherever they are, and nothing else does")
    func bare() {
        #expect(Copy.bare("\"abc\"") == "abc")
        #expect(Copy.bare("W/\"abc-12\"") == "abc-12")
        #expect(Copy.bare("abc") == "abc")
        #expect(Copy.bare("\"a/W/b\"") == "a/b")
        #expect(Copy.bare("\"W\"/") == "W/")
        #expect(Copy.bare("W") == "W")
        #expect(Copy.bare("\"é\"") == "é")
        #expect(Copy.bare("") == "")
    }
}

@Suite("Transfer engine: response head lines")
struct ReplyHeaderLineTests {
    static func parse(_ text: String) -> ReplyHeaders.Line {
        Array(text.utf8).withUnsafeBytes { ReplyHeaders.parse(line: $0) }
    }

    @Test("a status line starts a response, with its code; a malformed one has code 0")
    func statusLines() {
        #expect(Self.parse("HTTP/1.1 200 OK\r\n") == .status(200))
        #expect(Self.parse("HTTP/1.1 404 Not Found\r\n") == .status(404))
        #expect(Self.parse("HTTP/2 503\r\n") == .status(503))
        #expect(Self.parse("HTTP/1.1 100 Continue\r\n") == .status(100))
        #expect(Self.parse("HTTP/1.1 20 OK\r\n") == .status(0))
        #expect(Self.parse("HTTP/1.1\r\n") == .status(0))
    }

    @Test("a field's name is lowercased and its value trimmed; blank lines and junk are neither")
    func fields() {
        #expect(Self.parse("Content-Length: 4096\r\n") == .field(name: "content-length", value: "4096"))
        #expect(Self.parse("ETag:\t\"abc\"  \r\n") == .field(name: "etag", value: "\"abc\""))
        #expect(
            Self.parse("X-Amz-Meta-Squall-Sha256: ab:cd\r\n")
                == .field(name: "x-amz-meta-squall-sha256", value: "ab:cd"))
        #expect(Self.parse("Empty:\r\n") == .field(name: "empty", value: ""))
        #expect(Self.parse("\r\n") == .other)
        #expect(Self.parse("no colon here\r\n") == .other)
    }
}
