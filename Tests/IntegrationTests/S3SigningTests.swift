import Foundation
import Logging
import SquallCore
import Testing

@testable import SquallTestSupport

private let MiB = TransferRig.mebibyte

/// The engine's S3 requests as S3 itself would check them. moto checks no signature, so the rig's fault
/// proxy rebuilds each request's canonical form the way S3 does (Tests/Fixtures/s3_fault_proxy.py,
/// `--verify-sigv4`, proved on AWS's own worked examples) and refuses the ones whose signature does
/// not match: a key S3 would read differently from how libcurl signed it fails here, not in production.
@Suite("S3 requests signed as S3 checks them", .needs("SQUALL_S3_ENDPOINT"), .timeLimit(.minutes(3)))
struct S3SigningTests {
    /// Keys whose bytes SigV4 encodes in every way it can: reserved marks, a space and a plus (S3 reads
    /// `+` in a path as a plus), non-ASCII, a literal percent, an empty segment, and dot segments,
    /// which S3 keeps as part of the name.
    static let keys = [
        "with space/plus+and&amp=equals;semi,comma.bin",
        "ünï/日本語 ファイル.bin",
        "dots/../up/./here.bin",
        "marks/!*'()$@:~[]{}^`|.bin",
        "double//slash.bin",
        "%41 literal percent.bin",
    ]

    @Test("single PUTs, a multipart upload, a skip and an S3 source, all to awkward keys, pass S3's signature check")
    func awkwardKeysAreSignedAsS3ReadsThem() async throws {
        try await TransferRig.with("signing", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            for (index, key) in Self.keys.enumerated() {
                _ = try await rig.copy(rig.http(size: 1000 + index, seed: 40 + index), to: key)
            }
            // Multipart (create, parts, complete) to a key with a space, a plus and an ampersand, then the
            // same transfer again: a HEAD and the tags' GET find it there, and it is skipped.
            let large = "big parts/a+b&c.bin"
            _ = try await rig.copy(rig.http(size: 11 * MiB, seed: 50), to: large)
            let (again, _) = try await rig.copy(rig.http(size: 11 * MiB, seed: 50), to: large)
            #expect(again.outcome == .skipped)
            // An S3 object as the source: its HEAD and GET.
            let copied = "copied/ünï+ %.bin"
            _ = try await rig.copy(rig.bucket.location(Self.keys[1]), to: copied)

            let stats = try await proxy.stats()
            #expect(stats.signatureFailures.isEmpty, "\(stats.signatureFailures.map(\.description))")
            for method in ["PUT", "POST", "HEAD", "GET"] {
                #expect((stats.methods[method]?.requests ?? 0) > 0, "no \(method) went through the check")
            }
            // Stored under exactly the names asked for: no dot segment squashed, no byte read differently.
            #expect(Set(try await rig.bucket.keys()) == Set(Self.keys + [large, copied]))
            for (index, key) in Self.keys.enumerated() {
                try await rig.expectStored(key, size: 1000 + index, seed: 40 + index)
            }
            try await rig.expectStored(large, size: 11 * MiB, seed: 50)
            try await rig.expectStored(copied, size: 1001, seed: 41)
        }
    }

    @Test("the check refuses a request signed with another secret key: 403, permanent, nothing stored")
    func wrongSecretIsRefused() async throws {
        try await TransferRig.with("signing-refused", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            var s3 = try S3TestBucket.s3Configuration(endpoint: proxy.baseURL)
            s3.credentials?.secretAccessKey = Secret("not-the-secret-key")
            let (error, failures) = try await Self.refusedTransfer(rig, s3: s3, seed: 60)
            #expect(error?.message.contains("403") == true, "\(String(describing: error))")
            #expect(failures.first?.verdict == "mismatch", "\(failures.map(\.description))")
        }
    }

    @Test("a credential scoped to another region than the endpoint's is refused: 400, permanent, nothing stored")
    func wrongRegionIsRefused() async throws {
        try await TransferRig.with("signing-region", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            var s3 = try S3TestBucket.s3Configuration(endpoint: proxy.baseURL)
            #expect(s3.region != "ap-southeast-2", "the rig's proxy expects the configured region")
            s3.region = "ap-southeast-2"
            let (error, failures) = try await Self.refusedTransfer(rig, s3: s3, seed: 61)
            // The first request is the destination HEAD: as from S3, its error has no body to name a code.
            #expect(error?.message.contains("400") == true, "\(String(describing: error))")
            #expect(failures.first?.verdict == "wrong-region", "\(failures.map(\.description))")
            #expect(failures.first?.canonicalRequest == "ap-southeast-2", "\(failures.map(\.description))")
        }
    }

    /// Transfers 1,000 bytes with `s3`, which the rig's proxy should refuse: checks that the transfer
    /// failed as permanent and stored nothing, and returns its error and the proxy's refusals.
    private static func refusedTransfer(
        _ rig: TransferRig, s3: S3Configuration, seed: Int
    ) async throws -> (error: TransferError?, failures: [ProxyStats.SignatureFailure]) {
        let proxy = try #require(rig.proxy)
        let engine = TransferEngine(s3: s3, options: TransferRig.options, logger: Logger(label: "test.signing"))
        var failure: TransferError?
        do throws(TransferError) {
            let report = try await engine.transfer(
                TransferRequest(source: rig.http(size: 1000, seed: seed), destination: rig.bucket.location("refused")),
                events: { _ in })
            Issue.record("a transfer the proxy should refuse succeeded: \(report)")
        } catch {
            #expect(error.isPermanent, "\(error)")
            failure = error
        }
        #expect(try await rig.bucket.keys().isEmpty)
        return (failure, try await proxy.stats().signatureFailures)
    }
}
