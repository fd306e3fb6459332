import Foundation
import Testing

@testable import SquallCore
@testable import SquallTestSupport

/// The mission as a user sees it (the services issue's "Done when"): real Producer, Consumers,
/// Observer and Collector processes on the real servers, a batch submitted with squallctl, and the
/// outcome read back where an operator would: S3, `squallctl`, the audit trail in PostgreSQL.
@Suite(
    "A swarm end to end", .serialized, .needs("SQUALL_DATABASE_URL", "SQUALL_AMQP_URL", "SQUALL_S3_ENDPOINT"),
    .timeLimit(.minutes(10)))
struct SwarmEndToEndTests {
    /// One line of a manifest and what must become of it.
    struct Target {
        enum Expectation { case stored(size: Int, seed: Int), failed(code: String) }
        var source: URL
        var key: String
        var sha256: String?
        var expectation: Expectation

        var isGood: Bool {
            if case .stored = expectation { return true }
            return false
        }
    }

    static func manifest(_ targets: [Target], bucket: String) -> String {
        "source,destination,priority,sha256\n"
            + targets.map { "\($0.source.absoluteString),s3://\(bucket)/\($0.key),0,\($0.sha256 ?? "")" }
            .joined(separator: "\n") + "\n"
    }

    static func good(
        _ swarm: Swarm, count: Int, prefix: String, seed: Int, slow: Int? = nil, size: Int? = nil
    )
        -> [Target]
    {
        (0..<count).map { index in
            let bytes = size ?? 1024 + (index * 7919) % (128 * 1024)
            let parameters: KeyValuePairs<String, String> = slow.map { ["slow_bps": "\($0)"] } ?? [:]
            return Target(
                source: swarm.source.url(size: bytes, seed: seed + index, parameters: parameters),
                key: "\(prefix)/\(index)", sha256: nil, expectation: .stored(size: bytes, seed: seed + index))
        }
    }

    /// Every `.stored` target is in S3 with exactly the source's bytes.
    static func expectStored(_ targets: [Target], in swarm: Swarm) async throws {
        for target in targets {
            guard case .stored(let size, let seed) = target.expectation else { continue }
            let stored = try await swarm.storedSHA256(key: target.key)
            let expected = try await swarm.source.sha256(size: size, seed: seed)
            #expect(stored == expected, "s3://\(swarm.bucket)/\(target.key) from \(target.source)")
        }
    }

    /// Polls until `condition` holds or `timeout` passes.
    static func until(_ timeout: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    @Test(
        "300 targets: good ones byte-exact in S3, 404s and wrong checksums failed with their codes, wait exits 1, reset-failed puts them back, and a resubmission is all skipped"
    )
    func mixedBatch() async throws {
        let swarm = try await Swarm.make()
        defer { Task { await swarm.tearDown() } }
        var targets = Self.good(swarm, count: 280, prefix: "small", seed: 0)
        for index in 0..<5 {
            // Larger than one part (8 MiB by default): multipart uploads of two parts.
            let size = 9 * 1_048_576 + index * 4096
            targets.append(
                Target(
                    source: swarm.source.url(size: size, seed: 1000 + index), key: "large/\(index)", sha256: nil,
                    expectation: .stored(size: size, seed: 1000 + index)))
        }
        for index in 0..<10 {
            targets.append(
                Target(
                    source: swarm.source.url(size: 1000, seed: 2000 + index, parameters: ["status": "404"]),
                    key: "missing/\(index)", sha256: nil, expectation: .failed(code: "http_404")))
        }
        for index in 0..<5 {
            targets.append(
                Target(
                    source: swarm.source.url(size: 5000, seed: 3000 + index), key: "tampered/\(index)",
                    sha256: String(repeating: "ab", count: 32), expectation: .failed(code: "checksum_mismatch")))
        }
        try swarm.submit(batch: "mixed", manifest: Self.manifest(targets, bucket: swarm.bucket))
        try await swarm.startAll(consumerArguments: ["--concurrency", "8"])

        let waited = try await swarm.wait(batch: "mixed", timeout: 300)
        #expect(waited.status == 1, "squallctl wait: \(waited.output)\n\(swarm.logs())")
        try await Self.expectStored(targets, in: swarm)
        for key in ["missing/0", "tampered/0"] { #expect(try await swarm.storedSHA256(key: key) == nil) }

        let failed = try swarm.jobs(batch: "mixed", state: .failed)
        let codes = Dictionary(grouping: failed, by: { $0.errorCode ?? "none" }).mapValues(\.count)
        #expect(
            codes == ["http_404": 10, "checksum_mismatch": 5], "\(failed.map { ($0.destination, $0.errorMessage) })")
        #expect(try swarm.status(batch: "mixed").count(.done) == 285)
        #expect(try await swarm.incompleteUploads() == 0)

        // reset-failed with the Producer stopped, so the reset jobs stay pending where we can see them.
        let producer = try #require(swarm.process("producer"))
        producer.signal(SIGTERM)
        #expect(try await producer.waitForExit(timeout: .seconds(30)) == 0)
        let reset = try swarm.squallctl(["reset-failed", "--batch", "mixed"])
        #expect(reset.output.contains("reset 15 jobs of batch mixed to pending"), "\(reset.output)")
        #expect(try swarm.status(batch: "mixed").count(.pending) == 15)

        // The good targets again: each is already there, so each costs HEADs and nothing is fetched.
        let good = targets.filter(\.isGood)
        try await swarm.source.reset()
        try swarm.submit(batch: "again", manifest: Self.manifest(good, bucket: swarm.bucket))
        try await swarm.start("squall-producer", node: "producer-2")
        let again = try await swarm.wait(batch: "again", timeout: 300)
        #expect(again.status == 0, "\(again.output)")
        #expect(try swarm.status(batch: "again").count(.skipped) == good.count)
        // The reset jobs of "mixed" run again meanwhile: count only the paths of the resubmitted targets.
        let paths = Set(good.map(\.source.path))
        let fetched = try await swarm.source.stats().paths.filter { paths.contains($0.key) }.map(\.value.bytes)
        #expect(fetched.reduce(0, +) == 0, "bytes fetched again for already stored targets")
    }

    @Test(
        "a Consumer killed with SIGKILL while it holds jobs, and the Collector killed and restarted: every object arrives, no job settles twice"
    )
    func killedMidBatch() async throws {
        let swarm = try await Swarm.make()
        defer { Task { await swarm.tearDown() } }
        // Slow sources (about 2 s each), so the Consumers are holding jobs when one dies.
        let targets =
            Self.good(swarm, count: 40, prefix: "slow", seed: 100, slow: 100_000, size: 200_000)
            + Self.good(swarm, count: 80, prefix: "quick", seed: 200)
        try swarm.submit(batch: "kill", manifest: Self.manifest(targets, bucket: swarm.bucket))
        try await swarm.startAll(consumerArguments: ["--concurrency", "6"])

        let holding = try await Self.until(.seconds(60)) {
            try swarm.jobs(batch: "kill", state: .running).contains { $0.node == "consumer-1" }
        }
        #expect(holding, "consumer-1 never ran a job\n\(swarm.logs())")
        try await swarm.kill9("consumer-1")
        let someSettled = try await Self.until(.seconds(120)) { try swarm.status(batch: "kill").count(.done) >= 20 }
        #expect(someSettled)
        try await swarm.kill9("collector")
        try await swarm.start("squall-collector", node: "collector-2")

        let waited = try await swarm.wait(batch: "kill", timeout: 300)
        #expect(waited.status == 0, "\(waited.output)\n\(swarm.logs())")
        try await Self.expectStored(targets, in: swarm)
        // The audit trail: no job reached two different final states.
        let twice = try swarm.query(
            """
            SELECT job_id FROM job_events WHERE to_state IN ('done', 'skipped', 'failed', 'cancelled')
            GROUP BY job_id HAVING count(DISTINCT to_state) > 1
            """)
        #expect(twice.isEmpty, "jobs settled with different outcomes: \(twice)")
    }

    @Test("squallctl cancel mid-batch stops running transfers within seconds and leaves no incomplete multipart upload")
    func cancelMidBatch() async throws {
        let swarm = try await Swarm.make()
        defer { Task { await swarm.tearDown() } }
        // 12 MiB at 1 MB/s: multipart uploads (5 MiB parts) that take about 12 s each.
        let targets = Self.good(swarm, count: 12, prefix: "big", seed: 300, slow: 1_000_000, size: 12 << 20)
        try swarm.submit(batch: "doomed", manifest: Self.manifest(targets, bucket: swarm.bucket))
        try await swarm.startAll(consumerArguments: ["--concurrency", "3", "--part-size", "5MiB"])
        let uploading = try await Self.until(.seconds(60)) { try await swarm.incompleteUploads() > 0 }
        #expect(uploading, "no multipart upload began\n\(swarm.logs())")

        let cancelled = try swarm.squallctl(["cancel", "--batch", "doomed"])
        #expect(cancelled.status == 0, "\(cancelled.output)")
        #expect(cancelled.output.contains("told the Consumers"), "\(cancelled.output)")
        let started = ContinuousClock.now
        let clean = try await Self.until(.seconds(15)) { try await swarm.incompleteUploads() == 0 }
        #expect(clean, "multipart uploads still open 15 s after the cancel")
        let quiet = try await Self.until(.seconds(15)) {
            let running = swarm.logs().components(separatedBy: "\n").filter { $0.contains("transfer stopped") }
            return try swarm.status(batch: "doomed").count(.running) == 0 || !running.isEmpty
        }
        #expect(quiet)
        #expect(ContinuousClock.now - started < .seconds(20))
        let status = try swarm.status(batch: "doomed")
        #expect(status.count(.cancelled) + status.count(.done) == Int64(targets.count))
        #expect(try await swarm.wait(batch: "doomed", timeout: 60).status == 1)
    }

    @Test(
        "a Consumer stopped with SIGTERM while transferring exits within its grace period, and its jobs complete elsewhere"
    )
    func sigtermWhileTransferring() async throws {
        let swarm = try await Swarm.make()
        defer { Task { await swarm.tearDown() } }
        let targets = Self.good(swarm, count: 10, prefix: "term", seed: 400, slow: 200_000, size: 2_000_000)
        try swarm.submit(batch: "term", manifest: Self.manifest(targets, bucket: swarm.bucket))
        try await swarm.start("squall-producer", node: "producer")
        try await swarm.start("squall-observer", node: "observer")
        try await swarm.start("squall-collector", node: "collector")
        let first = try await swarm.start(
            "squall-consumer", node: "consumer-1", arguments: ["--concurrency", "4", "--grace-period", "3"])
        let busy = try await Self.until(.seconds(60)) {
            try swarm.jobs(batch: "term", state: .running).contains { $0.node == "consumer-1" }
        }
        #expect(busy)
        try await swarm.start("squall-consumer", node: "consumer-2", arguments: ["--concurrency", "4"])
        let stopping = ContinuousClock.now
        first.signal(SIGTERM)
        let status = try await first.waitForExit(timeout: .seconds(20))
        #expect(status == 0, "\(first.output.suffix(3000))")
        #expect(ContinuousClock.now - stopping < .seconds(8), "grace period 3 s")
        let waited = try await swarm.wait(batch: "term", timeout: 300)
        #expect(waited.status == 0, "\(waited.output)\n\(swarm.logs())")
        try await Self.expectStored(targets, in: swarm)
    }

    @Test(
        "a stale writer is fenced: a Consumer frozen past its lease while another finishes the job changes nothing when it resumes"
    )
    func staleWriterIsFenced() async throws {
        let swarm = try await Swarm.make()
        defer { Task { await swarm.tearDown() } }
        // About 8 s of transfer, a 4 s lease: the frozen node's lease runs out long before it could finish.
        let targets = Self.good(swarm, count: 1, prefix: "fence", seed: 500, slow: 750_000, size: 6_000_000)
        try swarm.submit(batch: "fence", manifest: Self.manifest(targets, bucket: swarm.bucket))
        try await swarm.start(
            "squall-producer", node: "producer", arguments: ["--lease", "4", "--rescue-interval", "1"])
        try await swarm.start("squall-observer", node: "observer", arguments: ["--lease", "4"])
        try await swarm.start("squall-collector", node: "collector")
        let stale = try await swarm.start("squall-consumer", node: "consumer-1", arguments: ["--concurrency", "1"])
        let running = try await Self.until(.seconds(60)) {
            try swarm.jobs(batch: "fence", state: .running).contains { $0.node == "consumer-1" }
        }
        #expect(running, "\(swarm.logs())")
        stale.signal(SIGSTOP)
        try await swarm.start("squall-consumer", node: "consumer-2", arguments: ["--concurrency", "1"])
        let waited = try await swarm.wait(batch: "fence", timeout: 180)
        #expect(waited.status == 0, "\(waited.output)\n\(swarm.logs())")
        let finished = try #require(try swarm.jobs(batch: "fence").first)
        #expect(finished.attempt >= 2)
        #expect(finished.node == "consumer-2")
        let key = targets[0].key
        let storedBefore = try await swarm.s3(.head, key)
        #expect(storedBefore.status == 200)

        stale.signal(SIGCONT)
        // Give the stale node time to finish its transfer and send its packets.
        try await Task.sleep(for: .seconds(15))
        let after = try #require(try swarm.jobs(batch: "fence").first)
        #expect(after.state == finished.state)
        #expect(after.attempt == finished.attempt)
        #expect(after.node == finished.node)
        #expect(after.etag == finished.etag)
        try await Self.expectStored(targets, in: swarm)
        let events = try swarm.query(
            "SELECT count(*) FROM job_events WHERE to_state IN ('done', 'skipped', 'failed') AND attempt < \(finished.attempt)"
        )
        #expect(events.first?.first == "0", "a stale attempt settled the job")
    }
}
