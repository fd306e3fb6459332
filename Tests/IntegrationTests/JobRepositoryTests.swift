import Foundation
@_spi(Benchmark) import SquallCore
import Testing

@testable import SquallTestSupport

/// The job repository against a real PostgreSQL, each test in a database of its own.
@Suite("Job repository", .needs("SQUALL_DATABASE_URL"))
struct JobRepositoryTests {
    // MARK: Migrations

    @Test("several migrators starting at once apply each migration exactly once")
    func concurrentMigrators() async throws {
        try await TestDatabase.with(migrated: false) { url in
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for index in 0..<6 {
                    group.addTask {
                        let repository = JobRepository(url: url, actor: "migrator-\(index)")
                        defer { Task { await repository.close() } }
                        return try await repository.migrate()
                    }
                }
                return try await group.reduce(into: [Int]()) { $0 += $1 }
            }
            #expect(applied.sorted() == Array(1...Migrations.latestVersion))
            #expect(try rawValue(url, "SELECT count(*) FROM schema_migrations") == String(Migrations.latestVersion))
            let again = JobRepository(url: url, actor: "late")
            #expect(try await again.migrate() == [])
            await again.close()
        }
    }

    @Test("the schema version reads 0 on an empty database, then each migration's version as it is applied")
    func schemaVersionFollowsMigrations() async throws {
        try await TestDatabase.with(migrated: false) { url in
            let repository = JobRepository(url: url, actor: "test")
            defer { Task { await repository.close() } }
            #expect(try await repository.schemaVersion() == 0, "no schema_migrations table yet")
            // The same connection, once the table is there: a failed first read prepared nothing stale.
            _ = try rawQuery(
                url,
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); INSERT INTO schema_migrations VALUES (1, 'first', now())"
            )
            #expect(try await repository.schemaVersion() == 1)
            _ = try rawQuery(url, "DROP TABLE schema_migrations")
            try await repository.migrate()
            #expect(try await repository.schemaVersion() == Migrations.latestVersion)
        }
    }

    @Test(
        "another tool's schema_migrations is refused by name, by migrate and the schema version alike, and nothing is written",
        arguments: [
            "CREATE TABLE schema_migrations (version character varying PRIMARY KEY); INSERT INTO schema_migrations VALUES ('20240101000000')",
            "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (20240101, false)",
        ])
    func foreignBookkeepingRefused(foreignTable: String) async throws {
        try await TestDatabase.with(migrated: false) { url in
            _ = try rawQuery(url, foreignTable)
            let repository = JobRepository(url: url, actor: "test")
            defer { Task { await repository.close() } }
            for attempt in ["migrate", "schemaVersion"] {
                do {
                    if attempt == "migrate" {
                        try await repository.migrate()
                    } else {
                        _ = try await repository.schemaVersion()
                    }
                    Issue.record("\(attempt) took another tool's schema_migrations for Squall's")
                } catch let error as PostgresError {
                    #expect(error.kind == .unexpectedResult, "\(attempt): \(error)")
                    #expect(
                        error.message.contains("a schema_migrations table that is not Squall's (columns: version "),
                        "\(attempt): \(error)")
                }
            }
            #expect(try rawValue(url, "SELECT to_regclass('jobs') IS NULL") == "t", "migrate went on into the database")
            #expect(try rawValue(url, "SELECT count(*) FROM schema_migrations") == "1")
        }
    }

    // MARK: Submit

    @Test("submit writes the batch and every job as pending, by COPY")
    func submitWritesJobs() async throws {
        try await TestDatabase.withRepository { repository, url in
            let batch = try await repository.submit(
                batchName: "first", manifest: .text(csvManifest(count: 250, priority: { Int32($0 % 3) })))
            #expect(batch.name == "first")
            #expect(batch.jobCount == 250)
            let status = try #require(try await repository.status(batch: "first").first)
            #expect(status.id == batch.id)
            #expect(status.count(.pending) == 250)
            #expect(status.jobCount == 250)
            let jobs = try await repository.jobs(batch: "first", limit: 3)
            #expect(jobs.map(\.destination) == (0..<3).map { "s3://squall-test/out/\($0).bin" })
            #expect(jobs.map(\.priority) == [0, 1, 2])
            #expect(jobs.allSatisfy { $0.state == .pending && $0.attempt == 0 && $0.maxAttempts == 5 })
        }
    }

    @Test("submit of JSON Lines keeps the checksum and priority")
    func submitJSONLines() async throws {
        try await TestDatabase.withRepository { repository, _ in
            let sha = String(repeating: "AB", count: 32)
            let manifest = """
                {"source":"s3://in-bucket/a","destination":"s3://out-bucket/a","priority":7,"sha256":"\(sha)"}

                {"source":"/data/local/b","destination":"s3://out-bucket/b"}
                """
            let batch = try await repository.submit(batchName: "jsonl", manifest: .text(manifest))
            #expect(batch.jobCount == 2)
            let jobs = try await repository.jobs(batch: "jsonl")
            #expect(jobs[0].expectedSHA256 == sha.lowercased())
            #expect(jobs[0].priority == 7)
            #expect(jobs[1].source == "/data/local/b")
            #expect(jobs[1].expectedSHA256 == nil)
        }
    }

    @Test("an invalid manifest is rejected whole, every bad line numbered, and nothing is inserted")
    func submitRejectsBadManifest() async throws {
        try await TestDatabase.withRepository { repository, url in
            let manifest = """
                source,destination,priority
                https://example.com/a,s3://good-bucket/a,1
                https://example.com/b,s3://good-bucket/b,2
                https://example.com/c,s3://Bad_Bucket/x,3
                ftp://example.com/d,s3://good-bucket/d,4
                https://example.com/e,s3://good-bucket/a,99999
                """
            let error = await #expect(throws: ManifestError.self) {
                try await repository.submit(batchName: "bad", manifest: .text(manifest))
            }
            #expect(error?.problems.map(\.line) == [4, 5, 6])
            #expect(
                error?.problems[0].description.hasPrefix("manifest line 4: destination \"s3://Bad_Bucket/x\"") == true)
            #expect(error?.problems[2].reason.contains("priority") == true)
            let jobRows = try rawValue(url, "SELECT count(*) FROM jobs")
            let batchRows = try rawValue(url, "SELECT count(*) FROM batches")
            #expect(jobRows == "0")
            #expect(batchRows == "0")
            await #expect(throws: JobRepositoryError.unknownBatch("bad")) {
                try await repository.status(batch: "bad")
            }
        }
    }

    @Test("a batch name can be used once")
    func duplicateBatchName() async throws {
        try await TestDatabase.withRepository { repository, _ in
            _ = try await repository.submit(batchName: "once", manifest: .text(csvManifest(count: 2)))
            await #expect(throws: JobRepositoryError.batchExists("once")) {
                try await repository.submit(batchName: "once", manifest: .text(csvManifest(count: 2)))
            }
        }
    }

    // MARK: Claim

    @Test("claim takes the highest priority first, then the oldest, and fences each claim with a new attempt")
    func claimOrder() async throws {
        try await TestDatabase.withRepository { repository, _ in
            _ = try await repository.submit(
                batchName: "order", manifest: .text(csvManifest(count: 10, priority: { $0 % 2 == 0 ? 0 : 5 })))
            let first = try await repository.claim(limit: 4, lease: .seconds(60))
            #expect(first.map(\.destination) == [1, 3, 5, 7].map { "s3://squall-test/out/\($0).bin" })
            #expect(first.allSatisfy { $0.attempt == 1 && $0.priority == 5 })
            let second = try await repository.claim(limit: 100, lease: .seconds(60))
            #expect(second.count == 6)
            #expect(second.first?.destination == "s3://squall-test/out/9.bin")
            #expect(try await repository.claim(limit: 100, lease: .seconds(60)).isEmpty)
            let status = try await repository.status(batch: "order")[0]
            #expect(status.count(.queued) == 10)
        }
    }

    @Test("many concurrent claimers on separate connections never get the same job")
    func concurrentClaimExclusivity() async throws {
        try await TestDatabase.with { url in
            let setup = JobRepository(url: url, actor: "setup")
            _ = try await setup.submit(batchName: "race", manifest: .text(csvManifest(count: 3000)))
            let claimed = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for index in 0..<8 {
                    group.addTask {
                        let repository = JobRepository(url: url, actor: "producer-\(index)")
                        defer { Task { await repository.close() } }
                        var mine: [Int64] = []
                        while true {
                            let jobs = try await repository.claim(limit: Int.random(in: 1...60), lease: .seconds(60))
                            if jobs.isEmpty { return mine }
                            mine += jobs.map(\.jobID)
                        }
                    }
                }
                return try await group.reduce(into: [[Int64]]()) { $0.append($1) }
            }
            let all = claimed.flatMap { $0 }
            #expect(all.count == 3000)
            #expect(Set(all).count == 3000)
            #expect(claimed.filter { !$0.isEmpty }.count > 1, "the claimers did not run concurrently")
            #expect(try rawValue(url, "SELECT count(*) FROM jobs WHERE state = 'queued' AND attempt = 1") == "3000")
            await setup.close()
        }
    }

    @Test("release puts a claim whose publish failed back to pending, but not a newer claim")
    func release() async throws {
        try await TestDatabase.withRepository { repository, _ in
            _ = try await repository.submit(batchName: "rel", manifest: .text(csvManifest(count: 2)))
            let jobs = try await repository.claim(limit: 2, lease: .seconds(60))
            var stale = jobs[1]
            stale.attempt -= 1
            #expect(try await repository.release([jobs[0], stale]) == 1)
            let status = try await repository.status(batch: "rel")[0]
            #expect(status.count(.pending) == 1)
            #expect(status.count(.queued) == 1)
            let again = try await repository.claim(limit: 5, lease: .seconds(60))
            #expect(again.map(\.jobID) == [jobs[0].jobID])
            #expect(again[0].attempt == 2)
        }
    }

    // MARK: Packets

    @Test("the pipelined one-by-one path keeps the guards: each statement applies only a newer packet")
    func pipelinedOneByOneKeepsGuards() async throws {
        try await TestDatabase.withRepository { repository, _ in
            _ = try await repository.submit(batchName: "pl", manifest: .text(csvManifest(count: 3)))
            let jobs = try await repository.claim(limit: 3, lease: .seconds(60)).sorted { $0.jobID < $1.jobID }
            var stale = ProgressPacket.make(jobs[2], at: 500, bytes: 7)
            stale.attempt = jobs[2].attempt - 1
            let packets: [ProgressPacket] = [
                .make(jobs[0], at: 100, bytes: 10), .make(jobs[0], at: 90, bytes: 9),
                .make(jobs[1], at: 100, bytes: 11),
                .make(jobs[1], at: 200, bytes: 22), stale,
            ]
            let applied = try await repository.applyProgressOneByOnePipelined(packets, lease: .seconds(60))
            #expect(applied == 3)
            let rows = try await repository.jobs(batch: "pl")
            #expect(rows.map(\.bytesDone) == [10, 22, 0])
            #expect(rows.map(\.state) == [.running, .running, .queued])
            // The connection is usable afterwards, outside pipeline mode.
            #expect(try await repository.status(batch: "pl")[0].count(.running) == 2)
        }
    }

    @Test("progress moves a queued job to running and forward only, for its current attempt")
    func progressGuards() async throws {
        try await TestDatabase.withRepository { repository, _ in
            _ = try await repository.submit(batchName: "p", manifest: .text(csvManifest(count: 1)))
            let job = try await repository.claim(limit: 1, lease: .seconds(60))[0]
            #expect(try await repository.applyProgress([.make(job, at: 100, bytes: 10)], lease: .seconds(60)) == 1)
            var row = try await repository.jobs(batch: "p")[0]
            #expect(row.state == .running)
            #expect(row.bytesDone == 10)
            #expect(row.size == 1000)

            // Older timestamp, same timestamp, stale attempt: nothing changes.
            #expect(try await repository.applyProgress([.make(job, at: 99, bytes: 5)], lease: .seconds(60)) == 0)
            #expect(try await repository.applyProgress([.make(job, at: 100, bytes: 6)], lease: .seconds(60)) == 0)
            var stale = ProgressPacket.make(job, at: 500, bytes: 7)
            stale.attempt = job.attempt - 1
            #expect(try await repository.applyProgress([stale], lease: .seconds(60)) == 0)
            row = try await repository.jobs(batch: "p")[0]
            #expect(row.bytesDone == 10)
            #expect(row.progressTimestamp == Timestamp(milliseconds: 100))

            // Within one batch, only the newest packet of a job counts.
            let applied = try await repository.applyProgress(
                [.make(job, at: 300, bytes: 30), .make(job, at: 200, bytes: 20)], lease: .seconds(60))
            #expect(applied == 1)
            row = try await repository.jobs(batch: "p")[0]
            #expect(row.bytesDone == 30)
        }
    }

    @Test("a claim says whether a job has finished into the destination: only done and skipped ones count")
    func claimMarksFreshDestinations() async throws {
        try await TestDatabase.withRepository { repository, _ in
            _ = try await repository.submit(batchName: "first", manifest: .text(csvManifest(count: 3)))
            let first = try await repository.claim(limit: 3, lease: .seconds(60))
            #expect(first.map(\.freshDestination) == [true, true, true])
            _ = try await repository.applyResults([
                .make(first[0], .done, at: 200), .make(first[1], .skipped, at: 200),
                .make(first[2], .failed, at: 200, errorCode: "http_404"),
            ])

            // The same destinations again, in another batch: the failed one is still fresh.
            _ = try await repository.submit(batchName: "again", manifest: .text(csvManifest(count: 4)))
            let again = try await repository.claim(limit: 4, lease: .seconds(60)).sorted { $0.jobID < $1.jobID }
            #expect(again.map(\.freshDestination) == [false, false, true, true])
        }
    }

    @Test("a result settles the job for its attempt; later packets never move it back")
    func resultsAreFinal() async throws {
        try await TestDatabase.withRepository { repository, url in
            _ = try await repository.submit(batchName: "r", manifest: .text(csvManifest(count: 2)))
            let jobs = try await repository.claim(limit: 2, lease: .seconds(60))
            _ = try await repository.applyProgress([.make(jobs[0], at: 100, bytes: 10)], lease: .seconds(60))

            let first = try await repository.applyResults([.make(jobs[0], .done, at: 200)])
            #expect(first.settled.map(\.jobID) == [jobs[0].jobID])
            #expect(first.settled[0].state == .done)
            #expect(first.finishedBatches.isEmpty)

            // Redelivered result, a different outcome, late progress: all ignored.
            let repeated = try await repository.applyResults([
                .make(jobs[0], .failed, at: 300, errorCode: "http_500")
            ])
            #expect(repeated.settled.isEmpty)
            #expect(try await repository.applyProgress([.make(jobs[0], at: 400, bytes: 1)], lease: .seconds(60)) == 0)
            let row = try await repository.jobs(batch: "r", state: .done)[0]
            #expect(row.bytesDone == 1000)
            #expect(row.etag == "\"etag-\(jobs[0].jobID)\"")
            #expect(row.resultTimestamp == Timestamp(milliseconds: 200))

            // The last job settling finishes the batch.
            let last = try await repository.applyResults([.make(jobs[1], .failed, at: 250, errorCode: "http_404")])
            #expect(last.finishedBatches.map(\.name) == ["r"])
            let failed = try await repository.jobs(batch: "r", state: .failed)[0]
            #expect(failed.errorCode == "http_404")
            #expect(failed.errorMessage == "failed with http_404")
            let status = try await repository.status(batch: "r")[0]
            #expect(status.finishedAt != nil)
            #expect(status.count(.done) == 1)
            #expect(status.count(.failed) == 1)

            // Every state change is in the audit trail, with who made it.
            let events = try rawQuery(
                url,
                "SELECT from_state, to_state, actor FROM job_events WHERE job_id = \(jobs[0].jobID) ORDER BY id")
            #expect(
                events == [
                    ["pending", "queued", "test"], ["queued", "running", "consumer-1"],
                    ["running", "done", "consumer-1"],
                ])
        }
    }

    @Test("shuffled packets of several attempts leave each row as the newest packet of the newest attempt")
    func shuffledPacketsProperty() async throws {
        try await TestDatabase.withRepository(maxAttempts: 10) { repository, _ in
            var generator = SystemRandomNumberGenerator()
            for round in 0..<5 {
                let name = "shuffle-\(round)"
                _ = try await repository.submit(batchName: name, manifest: .text(csvManifest(count: 40)))
                // Attempt 1 for every job; half of them on a lease that expires at once, so the
                // rescue puts them back and they are claimed again as attempt 2.
                let shortLease = try await repository.claim(limit: 20, lease: .milliseconds(1))
                let longLease = try await repository.claim(limit: 20, lease: .seconds(600))
                let future = Timestamp(milliseconds: Timestamp.now().milliseconds + 60_000)
                let rescued = try await repository.rescueExpired(now: future)
                #expect(rescued.requeued == 20, "\(rescued)")
                let reclaimed = try await repository.claim(limit: 40, lease: .seconds(600))
                #expect(reclaimed.count == 20 && reclaimed.allSatisfy { $0.attempt == 2 })
                let current = Dictionary(uniqueKeysWithValues: (longLease + reclaimed).map { ($0.jobID, $0) })

                var packets: [Any] = []
                for job in shortLease + longLease + reclaimed {
                    let count = Int.random(in: 1...6, using: &generator)
                    for _ in 0..<count {
                        let stamp = Int64.random(in: 1...10_000, using: &generator)
                        packets.append(ProgressPacket.make(job, at: stamp, bytes: stamp))
                    }
                    if Bool.random(using: &generator) {
                        let stamp = Int64.random(in: 1...10_000, using: &generator)
                        packets.append(ResultPacket.make(job, .done, at: stamp, bytes: 4242))
                    }
                }
                packets.shuffle(using: &generator)
                var index = 0
                while index < packets.count {
                    let size = Int.random(in: 1...15, using: &generator)
                    let chunk = packets[index..<min(index + size, packets.count)]
                    index += size
                    let progress = chunk.compactMap { $0 as? ProgressPacket }
                    let results = chunk.compactMap { $0 as? ResultPacket }
                    if Bool.random(using: &generator) {
                        _ = try await repository.applyProgress(progress, lease: .seconds(600))
                        _ = try await repository.applyResults(results)
                    } else {
                        _ = try await repository.applyResults(results)
                        _ = try await repository.applyProgress(progress, lease: .seconds(600))
                    }
                }
                let rows = try await repository.jobs(batch: name, limit: 100)
                for row in rows {
                    let attempt = try #require(current[row.id]).attempt
                    #expect(row.attempt == attempt)
                    let mine = packets.filter { packet in
                        if let progress = packet as? ProgressPacket {
                            return progress.jobID == row.id && progress.attempt == attempt
                        }
                        if let result = packet as? ResultPacket {
                            return result.jobID == row.id && result.attempt == attempt
                        }
                        return false
                    }
                    if let result = mine.compactMap({ $0 as? ResultPacket }).first {
                        #expect(row.state == .done, "job \(row.id)")
                        #expect(row.bytesDone == 4242)
                        #expect(row.resultTimestamp == result.timestamp)
                    } else if let newest = mine.compactMap({ $0 as? ProgressPacket }).max(by: {
                        $0.timestamp < $1.timestamp
                    }) {
                        #expect(row.state == .running, "job \(row.id)")
                        #expect(row.progressTimestamp == newest.timestamp)
                        #expect(row.bytesDone == newest.bytesDone)
                    } else {
                        #expect(row.state == .queued, "job \(row.id)")
                        #expect(row.progressTimestamp == Timestamp(milliseconds: 0))
                    }
                }
            }
        }
    }

    // MARK: Rescue, reset, cancel

    @Test("rescue puts expired jobs back to pending, and fails them once their attempts are used up")
    func rescue() async throws {
        try await TestDatabase.withRepository(maxAttempts: 2) { repository, _ in
            _ = try await repository.submit(batchName: "rescue", manifest: .text(csvManifest(count: 3)))
            let jobs = try await repository.claim(limit: 3, lease: .seconds(60))
            _ = try await repository.applyProgress([.make(jobs[0], at: 100, bytes: 1)], lease: .seconds(60))

            // Nothing has expired yet.
            #expect(try await repository.rescueExpired() == RescuedJobs(requeued: 0, exhausted: 0, finishedBatches: []))
            let later = Timestamp(milliseconds: Timestamp.now().milliseconds + 120_000)
            let first = try await repository.rescueExpired(now: later)
            #expect(first.requeued == 3)
            #expect(first.exhausted == 0)
            #expect(try await repository.status(batch: "rescue")[0].count(.pending) == 3)

            // A late result of the rescued attempt changes nothing.
            #expect(try await repository.applyResults([.make(jobs[0], .done, at: 200)]).settled.isEmpty)

            let second = try await repository.claim(limit: 3, lease: .seconds(60))
            #expect(second.allSatisfy { $0.attempt == 2 })
            _ = try await repository.applyResults([.make(second[2], .done, at: 300)])
            let final = try await repository.rescueExpired(now: later)
            #expect(final.requeued == 0)
            #expect(final.exhausted == 2)
            #expect(final.finishedBatches.map(\.name) == ["rescue"])
            let failed = try await repository.jobs(batch: "rescue", state: .failed)
            #expect(failed.count == 2)
            #expect(failed.allSatisfy { $0.errorCode == "attempts_exhausted" })
        }
    }

    @Test("reset-failed puts failed and cancelled jobs back to pending with fresh attempts")
    func resetFailed() async throws {
        try await TestDatabase.withRepository(maxAttempts: 1) { repository, url in
            _ = try await repository.submit(batchName: "reset", manifest: .text(csvManifest(count: 3)))
            let jobs = try await repository.claim(limit: 3, lease: .seconds(60))
            _ = try await repository.applyResults([
                .make(jobs[0], .failed, at: 10, errorCode: "http_503"), .make(jobs[1], .done, at: 10),
            ])
            _ = try await repository.cancel(batch: "reset")
            #expect(try await repository.status(batch: "reset")[0].cancelledAt != nil)

            #expect(try await repository.resetFailed(batch: "reset") == 2)
            let status = try await repository.status(batch: "reset")[0]
            #expect(status.count(.pending) == 2)
            #expect(status.count(.done) == 1)
            #expect(status.finishedAt == nil)
            #expect(status.cancelledAt == nil)
            let pending = try await repository.jobs(batch: "reset", state: .pending)
            #expect(pending.allSatisfy { $0.errorCode == nil && $0.maxAttempts == $0.attempt + 1 })
            #expect(
                try rawValue(
                    url, "SELECT count(*) FROM job_events WHERE detail = 'reset-failed' AND to_state = 'pending'")
                    == "2")
            await #expect(throws: JobRepositoryError.unknownBatch("nope")) {
                try await repository.resetFailed(batch: "nope")
            }
        }
    }

    @Test("cancel settles every unsettled job of the batch; late packets change nothing")
    func cancel() async throws {
        try await TestDatabase.withRepository { repository, _ in
            let batch = try await repository.submit(batchName: "stop", manifest: .text(csvManifest(count: 4)))
            _ = try await repository.submit(batchName: "other", manifest: .text(csvManifest(count: 2)))
            let jobs = try await repository.claim(limit: 3, lease: .seconds(60)).sorted { $0.jobID < $1.jobID }
            _ = try await repository.applyProgress([.make(jobs[1], at: 5, bytes: 5)], lease: .seconds(60))
            _ = try await repository.applyResults([.make(jobs[2], .done, at: 10)])

            let cancelled = try await repository.cancel(batch: "stop")
            #expect(cancelled == CancelledBatch(id: batch.id, name: "stop", cancelledJobs: 3))
            #expect(try await repository.applyResults([.make(jobs[1], .done, at: 20)]).settled.isEmpty)
            #expect(try await repository.applyProgress([.make(jobs[0], at: 20, bytes: 9)], lease: .seconds(60)) == 0)
            let status = try await repository.status(batch: "stop")[0]
            #expect(status.count(.cancelled) == 3)
            #expect(status.count(.done) == 1)
            #expect(status.finishedAt != nil)
            #expect(try await repository.status(batch: "other")[0].count(.pending) == 2)
            #expect(try await repository.claim(limit: 10, lease: .seconds(60)).allSatisfy { $0.batchID != batch.id })
        }
    }

    // MARK: Reports

    @Test("status counts per state and bytes agree with the rows, across many writes")
    func statusMatchesRows() async throws {
        try await TestDatabase.withRepository { repository, url in
            _ = try await repository.submit(batchName: "tally", manifest: .text(csvManifest(count: 300)))
            for round in 0..<60 {
                let jobs = try await repository.claim(limit: 5, lease: .seconds(60))
                _ = try await repository.applyProgress(
                    jobs.map { .make($0, at: Int64(round + 1), bytes: 100, total: 1000) }, lease: .seconds(60))
                _ = try await repository.applyResults(
                    jobs.prefix(2).map { .make($0, round % 2 == 0 ? .done : .skipped, at: Int64(round + 2)) })
            }
            let status = try await repository.status(batch: "tally")[0]
            let rows = try rawQuery(url, "SELECT state, count(*) FROM jobs GROUP BY state")
            for row in rows {
                #expect(status.count(JobState(rawValue: row[0]!)!) == Int64(row[1]!)!, "\(row[0]!)")
            }
            #expect(String(status.bytesDone) == (try rawValue(url, "SELECT sum(bytes_done) FROM jobs")))
            #expect(String(status.bytesTotal) == (try rawValue(url, "SELECT sum(coalesce(size, 0)) FROM jobs")))
            let all = try await repository.status()
            #expect(all.map(\.name) == ["tally"])
        }
    }

    @Test("the node registry keeps the newest heartbeat of each node")
    func nodes() async throws {
        try await TestDatabase.withRepository { repository, _ in
            func beat(_ node: String, _ ms: Int64, jobs: [Int64]) -> Heartbeat {
                Heartbeat(
                    node: node, role: .consumer, host: "host-a", startedAt: Timestamp(milliseconds: 1),
                    timestamp: Timestamp(milliseconds: ms), currentJobs: jobs, bytesMoved: ms * 10)
            }
            try await repository.upsertNodes([beat("c1", 100, jobs: [1, 2]), beat("c2", 100, jobs: [])])
            try await repository.upsertNodes([beat("c1", 50, jobs: [9]), beat("c2", 200, jobs: [3])])
            let nodes = try await repository.nodes()
            #expect(nodes.map(\.name) == ["c1", "c2"])
            #expect(nodes[0].currentJobs == [1, 2])
            #expect(nodes[0].lastSeen == Timestamp(milliseconds: 100))
            #expect(nodes[1].currentJobs == [3])
            #expect(nodes[1].bytesMoved == 2000)
        }
    }

    // MARK: Connection

    @Test("a connection killed under the repository is replaced: reads retry, a claim fails retryably")
    func brokenConnection() async throws {
        try await TestDatabase.withRepository { repository, url in
            _ = try await repository.submit(batchName: "kill", manifest: .text(csvManifest(count: 5)))
            let killer = try rawQuery(
                url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            #expect(!killer.isEmpty)
            // An idempotent read is retried once on a new connection.
            #expect(try await repository.status(batch: "kill")[0].count(.pending) == 5)

            _ = try rawQuery(
                url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            do {
                _ = try await repository.claim(limit: 1, lease: .seconds(60))
                Issue.record("a claim on a killed connection should fail")
            } catch let error as PostgresError {
                #expect(error.isRetryable)
                #expect(error.kind == .connection)
                #expect(error.statement == "claim")
            }
            #expect(try await repository.claim(limit: 5, lease: .seconds(60)).count == 5)
        }
    }

    @Test("errors carry the SQLSTATE and the statement name, never the parameter values")
    func typedErrors() async throws {
        let server = try TestDatabase.serverURL()
        var url = server
        url.database = "squall_missing_\(UInt32.random(in: 0...UInt32.max))"
        let repository = JobRepository(url: url, actor: "t", backoff: ReconnectBackoff(giveUpAfter: .milliseconds(200)))
        do {
            _ = try await repository.status()
            Issue.record("status on a missing database should fail")
        } catch let error as PostgresError {
            #expect(error.kind == .connection)
            #expect(error.description.contains(url.database))
            #expect(!error.description.contains(url.password?.revealed ?? "\u{0}"))
        }
        await repository.close()
    }
}
