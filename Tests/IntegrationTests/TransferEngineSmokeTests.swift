import Foundation
import Logging
import Testing

@testable import SquallCore
@testable import SquallTestSupport

/// The engine moving real bytes: from the source fixture and local files into moto and back, each
/// object read back in full and compared by SHA-256 (moto checks no checksum itself).
@Suite("Transfer engine: smoke", .needs("SQUALL_S3_ENDPOINT"))
struct TransferEngineSmokeTests {
    static func engine(partSize: Int = 5 << 20, createOnly: Bool = false) throws -> TransferEngine {
        let environment = ServiceEnvironment.environment
        return TransferEngine(
            s3: S3Configuration(
                endpoint: try ServiceEnvironment.value("SQUALL_S3_ENDPOINT"), region: "us-east-1", pathStyle: true,
                credentials: S3Credentials(
                    accessKeyID: environment["AWS_ACCESS_KEY_ID"] ?? "squall-dev",
                    secretAccessKey: Secret(environment["AWS_SECRET_ACCESS_KEY"] ?? "squall-dev-secret"))),
            options: TransferOptions(
                partSize: partSize, concurrency: 3, maxAttempts: 3, maxBackoff: .milliseconds(200),
                allowPrivateSources: true, createOnly: createOnly, progressInterval: .milliseconds(50)),
            logger: Logger(label: "test"))
    }

    static func bucket(_ engine: TransferEngine) async throws -> String {
        let name = "smoke-\(UUID().uuidString.prefix(8).lowercased())"
        try await engine.createBucket(name)
        return name
    }

    /// The stored object's SHA-256, read back with a plain GET.
    static func storedSHA256(bucket: String, key: String, into path: String) async throws -> String {
        let engine = try engine()
        let report = try await engine.transfer(
            TransferRequest(source: .s3(bucket: bucket, key: key), destination: .file(path: path)))
        return report.sha256
    }

    @Test("a small object goes as one PUT, a 12 MiB one as a multipart upload, a chunked one too; each byte-exact")
    func sizes() async throws {
        let source = try SourceServerFixture()
        defer { source.stop() }
        let engine = try Self.engine()
        let bucket = try await Self.bucket(engine)
        for (size, seed, chunked) in [(1000, 1, false), (12 << 20, 2, false), (11 << 20 + 17, 3, true), (0, 4, false)] {
            let key = "object-\(seed)"
            let report = try await engine.transfer(
                TransferRequest(
                    source: .http(source.url(size: size, seed: seed, chunked: chunked).absoluteString),
                    destination: .s3(bucket: bucket, key: key)))
            let expected = try await source.sha256(size: size, seed: seed)
            #expect(report.outcome == .done)
            #expect(report.bytes == Int64(size))
            #expect(report.sha256 == expected)
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("smoke-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: copy) }
            #expect(try await Self.storedSHA256(bucket: bucket, key: key, into: copy) == expected, "size \(size)")
            let metadata = try #require(try await engine.headObject(bucket: bucket, key: key)).metadata
            #expect(metadata["squall-sha256"] == expected)
        }
    }

    @Test("a second transfer of the same source is skipped with a HEAD, fetching nothing")
    func skip() async throws {
        let source = try SourceServerFixture()
        defer { source.stop() }
        let engine = try Self.engine()
        let bucket = try await Self.bucket(engine)
        let request = TransferRequest(
            source: .http(source.url(size: 7 << 20, seed: 9).absoluteString), destination: .s3(bucket: bucket, key: "k")
        )
        #expect(try await engine.transfer(request).outcome == .done)
        try await source.reset()
        let again = try await engine.transfer(request)
        #expect(again.outcome == .skipped)
        #expect(try await source.stats().bytesSent == 0)
    }

    @Test("with the manifest's sha256, an object already holding it is skipped without a request to the source")
    func skipByExpectedDigest() async throws {
        let source = try SourceServerFixture()
        defer { source.stop() }
        let engine = try Self.engine()
        let bucket = try await Self.bucket(engine)
        let url = source.url(size: 6000, seed: 10).absoluteString
        let first = try await engine.transfer(
            TransferRequest(source: .http(url), destination: .s3(bucket: bucket, key: "d")))
        #expect(first.outcome == .done)
        try await source.reset()
        let again = try await engine.transfer(
            TransferRequest(
                source: .http(url), destination: .s3(bucket: bucket, key: "d"), expectedSHA256: first.sha256))
        #expect(again.outcome == .skipped)
        #expect(try await source.stats().requests == 0, "the source was asked although the digest decided")
        // Another expected digest is not a skip: the source is fetched, and its bytes do not match it.
        let other = String(repeating: "0", count: 64)
        await #expect(throws: TransferError.self) {
            try await engine.transfer(
                TransferRequest(source: .http(url), destination: .s3(bucket: bucket, key: "d"), expectedSHA256: other))
        }
        #expect(try await source.stats().requests > 0)
    }

    @Test("a local file larger than the parts in flight streams into a multipart upload and back out, byte-exact")
    func localFileRoundTrip() async throws {
        let engine = try Self.engine()
        let bucket = try await Self.bucket(engine)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smoke-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // 26 MiB: six parts of 5 MiB through a pool of three buffers, so the file reader must wait for uploads.
        var bytes = [UInt8](repeating: 0, count: 26 << 20)
        for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: (index &* 2_654_435_761) >> 13) }
        let source = folder.appendingPathComponent("in.bin").path
        try Data(bytes).write(to: URL(fileURLWithPath: source))
        let expected = bytes.withUnsafeBytes { ResumableSHA256.hex(ResumableSHA256.digest(of: $0)) }
        let up = try await engine.transfer(
            TransferRequest(source: .file(path: source), destination: .s3(bucket: bucket, key: "file")))
        #expect(up.sha256 == expected)
        let copy = folder.appendingPathComponent("out.bin").path
        #expect(try await Self.storedSHA256(bucket: bucket, key: "file", into: copy) == expected)
        #expect(FileManager.default.contentsEqual(atPath: source, andPath: copy))
    }
}
