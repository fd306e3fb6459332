import Testing

@testable import SquallCore

@Suite("squallctl cp: arguments are checked before anything runs")
struct CopyInvocationTests {
    @Test("http source and S3 destination with every option become the engine's request and options")
    func fullInvocation() throws {
        let hex = String(repeating: "AB", count: 32)
        let invocation = try CopyInvocation(
            source: "https://example.com/data.bin", destination: "s3://bucket/dir/data.bin", partSize: "16MiB",
            concurrency: 8, sha256: hex, maxAttempts: 3, allowPrivateSources: true, createOnly: true,
            progressInterval: .seconds(2))
        #expect(
            invocation.request
                == TransferRequest(
                    source: .http("https://example.com/data.bin"),
                    destination: .s3(bucket: "bucket", key: "dir/data.bin"),
                    expectedSHA256: hex.lowercased()))
        #expect(invocation.options.partSize == 16 << 20)
        #expect(invocation.options.concurrency == 8)
        #expect(invocation.options.maxAttempts == 3)
        #expect(invocation.options.allowPrivateSources)
        #expect(invocation.options.createOnly)
        #expect(invocation.options.progressInterval == .seconds(2))
    }

    @Test("unset options keep the engine's defaults, but for 8 parts in flight where a Consumer's job has 4")
    func defaults() throws {
        let invocation = try CopyInvocation(source: "/tmp/a.bin", destination: "s3://b/k")
        #expect(invocation.request.source == .file(path: "/tmp/a.bin"))
        #expect(invocation.request.expectedSHA256 == nil)
        var expected = TransferOptions()
        #expect(expected.concurrency == 4)
        expected.concurrency = 8
        #expect(invocation.options == expected)
    }

    @Test(
        "a bad location is refused naming the argument and the input",
        arguments: [
            ("ftp://host/file", "s3://b/k", "SOURCE: ftp://host/file: scheme ftp is not allowed"),
            ("gopher://x/y", "s3://b/k", "SOURCE: gopher://x/y: scheme gopher is not allowed"),
            ("s3://bucket-only", "s3://b/k", "SOURCE: s3://bucket-only: an S3 location is s3://bucket/key"),
            ("http://a/b", "dict://c/d", "DEST: dict://c/d: scheme dict is not allowed"),
            ("http://a/b", "https://c/d", "DEST: https://c/d: an http(s) URL is a source only"),
            ("/tmp/a", "/tmp/b", "DEST: /tmp/a → /tmp/b: one side must be S3 or http(s)"),
            ("", "s3://b/k", "SOURCE: empty location"),
        ])
    func badLocation(source: String, destination: String, expected: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try CopyInvocation(source: source, destination: destination)
        }
        #expect(error?.description.hasPrefix(expected) == true, "\(String(describing: error))")
    }

    @Test(
        "sizes are bytes or binary K, M, G",
        arguments: [
            ("8388608", 8_388_608), ("8M", 8 << 20), ("8MiB", 8 << 20), ("8mb", 8 << 20), ("512K", 512 << 10),
            ("1G", 1 << 30), (" 5 MiB ", 5 << 20), ("100b", 100),
        ])
    func sizes(text: String, bytes: Int) throws {
        #expect(try CopyInvocation.byteCount(text, setting: "--part-size") == bytes)
    }

    @Test(
        "a size that is not one is refused quoting it",
        arguments: ["8XB", "", "M", "-5M", "1.5M", "eight", "99999999999999999999G"])
    func badSizes(text: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try CopyInvocation(source: "http://a/b", destination: "s3://b/k", partSize: text)
        }
        #expect(error?.setting == "--part-size")
        #expect(error?.reason.contains("\"\(text)\"") == true, "\(String(describing: error))")
    }

    @Test("part sizes outside S3's 5 MiB to 5 GiB are refused", arguments: ["4M", "5242879", "6G"])
    func partSizeBounds(text: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try CopyInvocation(source: "http://a/b", destination: "s3://b/k", partSize: text)
        }
        #expect(error?.description == "--part-size: \(text) is outside S3's part sizes, 5 MiB to 5 GiB")
    }

    @Test("the smallest and largest parts S3 takes are accepted", arguments: ["5M", "5G"])
    func partSizeEdges(text: String) throws {
        _ = try CopyInvocation(source: "http://a/b", destination: "s3://b/k", partSize: text)
    }

    @Test(
        "an expected SHA-256 must be 64 hex digits",
        arguments: [
            "abc", String(repeating: "g", count: 64), String(repeating: "a", count: 63),
            String(repeating: "a", count: 65),
        ])
    func badSHA256(text: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try CopyInvocation(source: "http://a/b", destination: "s3://b/k", sha256: text)
        }
        #expect(error?.setting == "--sha256")
        #expect(error?.reason.hasPrefix("\"\(text)\" is not a SHA-256") == true, "\(String(describing: error))")
    }

    @Test("concurrency, attempts and the progress interval must be in range")
    func ranges() {
        #expect(throws: ConfigurationError(setting: "--concurrency", reason: "0 parts in flight is outside 1...64")) {
            try CopyInvocation(source: "http://a/b", destination: "s3://b/k", concurrency: 0)
        }
        #expect(throws: ConfigurationError(setting: "--max-attempts", reason: "0 is outside 1...100")) {
            try CopyInvocation(source: "http://a/b", destination: "s3://b/k", maxAttempts: 0)
        }
        #expect(throws: ConfigurationError(setting: "--progress-interval", reason: "must be more than 0 seconds")) {
            try CopyInvocation(source: "http://a/b", destination: "s3://b/k", progressInterval: .zero)
        }
    }

    @Test(
        "each failure maps to the documented exit status",
        arguments: [
            (TransferError(code: "http_404", message: "", isPermanent: true), CopyExitStatus.failed),
            (TransferError(code: "address_refused", message: "", isPermanent: true), .failed),
            (TransferError(code: "checksum_mismatch", message: "", isPermanent: true), .integrity),
            (TransferError(code: "length_mismatch", message: "", isPermanent: false), .integrity),
            (TransferError(code: "retries_exhausted", message: "", isPermanent: false), .unavailable),
            (TransferError(code: "unsupported_scheme", message: "", isPermanent: true), .usage),
            (TransferError.cancelled, .cancelled),
        ])
    func exitStatus(error: TransferError, status: CopyExitStatus) {
        #expect(CopyExitStatus(error) == status)
    }

    @Test("the help text documents every exit status")
    func helpListsEveryStatus() {
        for status in CopyExitStatus.allCases {
            #expect(CopyExitStatus.helpText.contains("\(status.rawValue) "), "\(status)")
        }
    }
}
