import Foundation
import Logging
import SquallCore
import Testing

@testable import SquallTestSupport

/// One test's world for the transfer engine: an HTTP source fixture, a fresh bucket on the emulator and,
/// when asked, a fault proxy in front of the emulator that also checks every request's signature. Torn down by ``with(proxy:_:)`` however the test ends.
struct TransferRig: Sendable {
    let source: SourceServerFixture
    let bucket: S3TestBucket
    let proxy: S3FaultProxyFixture?

    static let mebibyte = 1 << 20

    /// The options the tests start from: small parts (moto's minimum) so multipart is cheap, short
    /// backoffs so retry tests are fast, frequent progress, loopback sources allowed (the fixtures are there).
    static let options = TransferOptions(
        partSize: 5 << 20, concurrency: 4, maxAttempts: 4, maxBackoff: .milliseconds(200),
        connectTimeout: .seconds(5), lowSpeedLimit: 1024, lowSpeedTime: .seconds(10), maxRedirects: 5,
        allowPrivateSources: true, createOnly: false, progressInterval: .milliseconds(100))

    /// Runs `body` with a rig named after `purpose`, then stops the fixtures and deletes the bucket.
    static func with(
        _ purpose: String, proxy: Bool = false, _ body: (TransferRig) async throws -> Void
    ) async throws {
        let source = try SourceServerFixture()
        defer { source.stop() }
        let bucket = try await S3TestBucket.create(purpose)
        var proxyFixture: S3FaultProxyFixture?
        do {
            if proxy {
                // The proxy checks every signature as S3 would: moto checks none.
                let s3 = try S3TestBucket.s3Configuration()
                proxyFixture = try S3FaultProxyFixture(
                    upstream: URL(string: bucket.endpoint)!,
                    verifyingWith: s3.credentials?.secretAccessKey.revealed, region: s3.region)
            }
            try await body(TransferRig(source: source, bucket: bucket, proxy: proxyFixture))
        } catch {
            proxyFixture?.stop()
            await bucket.destroy()
            throw error
        }
        proxyFixture?.stop()
        await bucket.destroy()
    }

    /// An engine writing to the emulator, through the fault proxy when the rig has one.
    /// The rig's options with create-only writes, as the Consumer's.
    static var createOnlyOptions: TransferOptions {
        var options = TransferRig.options
        options.createOnly = true
        return options
    }

    /// A request into `key` that leaves the destination HEAD out (``TransferRequest/checksDestinationFirst``).
    func unasked(_ source: TransferLocation, to key: String) -> TransferRequest {
        TransferRequest(source: source, destination: bucket.location(key), checksDestinationFirst: false)
    }

    func engine(_ options: TransferOptions = TransferRig.options) throws -> TransferEngine {
        var logger = Logger(label: "test.transfer")
        logger.logLevel = .debug
        return TransferEngine(
            s3: try S3TestBucket.s3Configuration(endpoint: proxy?.baseURL), options: options, logger: logger)
    }

    /// The source's URL of `/gen/<size>/<seed>` (or `/chunked/…`) as a transfer location.
    func http(
        size: Int, seed: Int, chunked: Bool = false, _ parameters: KeyValuePairs<String, String> = [:]
    )
        -> TransferLocation
    {
        .http(source.url(size: size, seed: seed, chunked: chunked, parameters: parameters).absoluteString)
    }

    /// Runs one transfer to its end and returns how it ended and every event it sent.
    func run(
        _ request: TransferRequest, options: TransferOptions = TransferRig.options
    ) async throws -> (result: Result<TransferReport, TransferError>, events: EventRecorder) {
        let engine = try engine(options)
        let recorder = EventRecorder()
        do throws(TransferError) {
            let report = try await engine.transfer(request, events: recorder.record)
            return (.success(report), recorder)
        } catch {
            return (.failure(error), recorder)
        }
    }

    /// Runs a transfer that must succeed and returns its report.
    func copy(
        _ source: TransferLocation, to key: String, expectedSHA256: String? = nil,
        options: TransferOptions = TransferRig.options, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> (report: TransferReport, events: EventRecorder) {
        let (result, events) = try await run(
            TransferRequest(source: source, destination: bucket.location(key), expectedSHA256: expectedSHA256),
            options: options)
        switch result {
        case .success(let report): return (report, events)
        case .failure(let error):
            Issue.record("transfer of \(source) to \(key) failed: \(error)", sourceLocation: sourceLocation)
            throw error
        }
    }

    /// Runs a transfer that must fail and returns its error.
    func failure(
        _ source: TransferLocation, to key: String, expectedSHA256: String? = nil,
        options: TransferOptions = TransferRig.options, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> (error: TransferError, events: EventRecorder) {
        let (result, events) = try await run(
            TransferRequest(source: source, destination: bucket.location(key), expectedSHA256: expectedSHA256),
            options: options)
        switch result {
        case .success(let report):
            Issue.record(
                "transfer of \(source) to \(key) succeeded (\(report)) but should fail", sourceLocation: sourceLocation)
            throw FixtureError("unexpected success")
        case .failure(let error):
            Self.expectNoSecret(in: error, sourceLocation: sourceLocation)
            return (error, events)
        }
    }

    /// The stored object is byte for byte the generated object `/gen/<size>/<seed>` (read back in full).
    func expectStored(
        _ key: String, size: Int, seed: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let stored = try await bucket.readBack(key)
        let expected = try await source.sha256(size: size, seed: seed)
        #expect(
            stored == S3TestBucket.StoredObject(size: size, sha256: expected),
            "s3://\(bucket.name)/\(key) is not /gen/\(size)/\(seed)", sourceLocation: sourceLocation)
    }

    /// Neither an object nor an incomplete multipart upload is left under `key`.
    func expectNothingLeft(_ key: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let stored = try await bucket.readBack(key)
        #expect(
            stored == nil, "s3://\(bucket.name)/\(key) exists: \(String(describing: stored))",
            sourceLocation: sourceLocation)
        let uploads = try await bucket.incompleteUploads().filter { $0.key == key }
        #expect(uploads.isEmpty, "incomplete uploads left for \(key): \(uploads)", sourceLocation: sourceLocation)
    }

    /// The bytes of `/gen/<size>/<seed>`, as the source serves them.
    func sourceBytes(size: Int, seed: Int) async throws -> [UInt8] {
        let (status, body) = try await source.process.request("GET", "gen/\(size)/\(seed)")
        guard status == 200, body.count == size else {
            throw FixtureError("GET /gen/\(size)/\(seed): \(status), \(body.count) bytes")
        }
        return Array(body)
    }

    /// The requests the proxy saw for `key`, in order.
    func proxyLog(_ key: String) async throws -> [ProxyStats.Entry] {
        guard let proxy else { return [] }
        let path = "/\(bucket.name)/\(key)"
        return try await proxy.stats().log.filter { $0.path == path }
    }

    /// Errors are shown to operators and stored in the database: they must never carry the secret key.
    static func expectNoSecret(in error: TransferError, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let secret = ServiceEnvironment.environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else { return }
        #expect(!error.message.contains(secret) && !error.code.contains(secret), sourceLocation: sourceLocation)
    }
}

/// The events a transfer sent, from whichever thread the engine called on.
final class EventRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [(at: ContinuousClock.Instant, event: TransferEvent)] = []

    var record: @Sendable (TransferEvent) -> Void {
        { [self] event in
            lock.lock()
            recorded.append((ContinuousClock.now, event))
            lock.unlock()
        }
    }

    var events: [TransferEvent] {
        lock.lock()
        defer { lock.unlock() }
        return recorded.map(\.event)
    }

    var progress: [(at: ContinuousClock.Instant, progress: TransferProgress)] {
        lock.lock()
        defer { lock.unlock() }
        return recorded.compactMap {
            if case .progress(let progress) = $0.event { return ($0.at, progress) }
            return nil
        }
    }

    var retries: [(reason: String, attempt: Int)] {
        events.compactMap {
            if case .retrying(let reason, let attempt) = $0 { return (reason, attempt) }
            return nil
        }
    }

    /// The most bytes any progress event reported so far.
    var bytesDone: Int64 { progress.map(\.progress.bytesDone).max() ?? 0 }
}

extension ProxyStats.Entry {
    var isUploadPart: Bool { method == "PUT" && query.contains("partNumber=") }
    var isCreateUpload: Bool { method == "POST" && query.contains("uploads") }
    var isComplete: Bool { method == "POST" && query.contains("uploadId=") }
    var isAbort: Bool { method == "DELETE" && query.contains("uploadId=") }
    var isSinglePut: Bool { method == "PUT" && !query.contains("uploadId=") }
    /// The `partNumber` of an UploadPart.
    var partNumber: Int? {
        URLComponents(string: "?" + query)?.queryItems?.first { $0.name == "partNumber" }?.value.flatMap { Int($0) }
    }
}

extension SourceStats {
    /// Body bytes served for `path` (`/gen/<size>/<seed>`), 0 when it was never asked for.
    func bytes(_ path: String) -> Int { paths[path]?.bytes ?? 0 }
    func requests(_ path: String, method: String = "GET") -> Int { paths[path]?.methods[method] ?? 0 }
}
