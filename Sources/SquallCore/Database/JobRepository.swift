import Foundation
import Logging

/// PostgreSQL as the truth about every job: submit, claim, apply packets, rescue, reset, cancel, report.
///
/// Each operation is one statement or one transaction, so a process killed at any instant leaves
/// either all of it or none. Packets are version-guarded: the attempt is the fencing token and,
/// within an attempt, the millisecond timestamp orders packets, so a stale or repeated packet
/// changes nothing and a settled job is never moved back. One repository is one connection on its
/// own thread (``PQConnection``); concurrent calls on it queue; open several for parallel work.
public final class JobRepository: Sendable {
    let connection: PQConnection
    /// Who this repository acts as in the audit trail (a node name, or `squallctl@host`).
    public let actor: String
    /// How many claims a job gets before a rescue fails it with `attempts_exhausted`.
    public let maxAttempts: Int32
    private let logger: Logger

    public init(
        url: DatabaseURL, actor: String, maxAttempts: Int32 = 5, backoff: ReconnectBackoff = ReconnectBackoff(),
        logger: Logger = Logger(label: "squall.repository")
    ) {
        connection = PQConnection(url: url, logger: logger, backoff: backoff)
        self.actor = actor
        self.maxAttempts = maxAttempts
        self.logger = logger
    }

    /// Closes the connection.
    public func close() async {
        await connection.close()
    }

    /// Brings the schema up to date; safe when several processes run it at once.
    @discardableResult
    public func migrate() async throws -> [Int] {
        try await Migrations.apply(on: connection, logger: logger)
    }

    /// The schema version the database is at: 0 before the first migration. Compare it with
    /// ``Migrations/latestVersion``, the version this build's statements are written for.
    public func schemaVersion() async throws -> Int {
        try await Migrations.recordedVersion(on: connection)
    }

    // MARK: Submit

    /// Writes a batch and its jobs from a manifest, all or nothing.
    ///
    /// Lines are validated as they stream into `COPY`; one bad line rolls the transaction back, so
    /// an invalid manifest leaves nothing behind and its ``ManifestError`` lists the bad lines.
    /// Throws ``JobRepositoryError/batchExists(_:)`` when the name is taken.
    public func submit(batchName: String, manifest: ManifestInput) async throws -> SubmittedBatch {
        let maxAttempts = maxAttempts
        return try await connection.transaction("submit", idempotent: false) { connection in
            let rows: PQRows
            do {
                rows = try connection.query(Self.insertBatch, [batchName])
            } catch let error as PostgresError where error.sqlState == "23505" {
                throw JobRepositoryError.batchExists(batchName)
            }
            guard let batchID = rows.int64(0, 0) else { throw Self.unexpected("submit.batch") }
            let prefix = Array("\(batchID)\t".utf8)
            let suffix = Array("\t\(maxAttempts)\n".utf8)
            var parser = ManifestParser()
            var buffer: [UInt8] = []
            buffer.reserveCapacity(1 << 18)
            var copying = true
            try connection.beginCopy(Self.copyJobs)
            do {
                try manifest.forEachLine { line in
                    guard let entry = parser.read(line: line) else {
                        if parser.problemCount > 0 { copying = false }
                        return
                    }
                    guard copying else { return }
                    buffer.append(contentsOf: prefix)
                    buffer.append(contentsOf: String(entry.priority).utf8)
                    buffer.append(UInt8(ascii: "\t"))
                    Self.appendCopyField(entry.source, to: &buffer)
                    buffer.append(UInt8(ascii: "\t"))
                    Self.appendCopyField(entry.destination, to: &buffer)
                    buffer.append(UInt8(ascii: "\t"))
                    Self.appendCopyField(entry.sha256, to: &buffer)
                    buffer.append(contentsOf: suffix)
                    if buffer.count >= 1 << 18 {
                        try connection.sendCopyData(buffer, statement: Self.copyJobs.name)
                        buffer.removeAll(keepingCapacity: true)
                    }
                }
                try parser.finish()
            } catch {
                try? connection.endCopy(statement: Self.copyJobs.name, abortReason: "manifest rejected")
                throw error
            }
            if !buffer.isEmpty { try connection.sendCopyData(buffer, statement: Self.copyJobs.name) }
            try connection.endCopy(statement: Self.copyJobs.name)
            let count = Int64(parser.entryCount)
            _ = try connection.query(Self.setJobCount, [String(batchID), String(count)])
            return SubmittedBatch(id: batchID, name: batchName, jobCount: count)
        }
    }

    // MARK: Claim and release

    /// Claims up to `limit` pending jobs, highest priority then oldest first, for publishing.
    ///
    /// Rows are taken with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never get the same job.
    /// Each claim moves the job to queued, increments its attempt (the new fencing token) and
    /// gives it a lease of `lease`; a job not heard of before the lease ends is rescued.
    public func claim(limit: Int, lease: Duration) async throws -> [JobMessage] {
        let rows = try await connection.execute(
            Self.claimJobs, [String(limit), String(Self.milliseconds(lease)), actor], idempotent: false)
        let now = Timestamp.now()
        var messages: [JobMessage] = []
        messages.reserveCapacity(rows.rowCount)
        for row in 0..<rows.rowCount {
            guard let id = rows.int64(row, 0), let batchID = rows.int64(row, 1), let attempt = rows.int32(row, 2),
                let source = rows[row, 3], let destination = rows[row, 4], let priority = rows.int32(row, 5)
            else { throw Self.unexpected(Self.claimJobs.name) }
            messages.append(
                JobMessage(
                    jobID: id, batchID: batchID, attempt: attempt, source: source, destination: destination,
                    priority: priority, expectedSHA256: rows[row, 6], enqueuedAt: now,
                    freshDestination: rows[row, 7] == "t"))
        }
        return messages.sorted { ($0.priority, -$0.jobID) > ($1.priority, -$1.jobID) }
    }

    /// Puts claimed jobs whose publish failed back to pending. Only the claim that produced the
    /// message is undone: a job claimed again since (a newer attempt) is left alone.
    @discardableResult
    public func release(_ jobs: [JobMessage]) async throws -> Int {
        guard !jobs.isEmpty else { return 0 }
        let sorted = jobs.sorted { $0.jobID < $1.jobID }
        let rows = try await connection.execute(
            Self.releaseJobs,
            [
                PostgresArray.literal(sorted.map(\.jobID)), PostgresArray.literal(sorted.map(\.attempt)), actor,
            ],
            idempotent: true)
        return Int(rows.int64(0, 0) ?? 0)
    }

    // MARK: Packets

    /// Applies progress packets in one transaction; returns how many rows moved.
    ///
    /// A packet applies only to the job's current attempt, with a newer timestamp than the row's,
    /// while the job is queued or running. It moves a queued job to running and renews its lease.
    @discardableResult
    public func applyProgress(_ packets: [ProgressPacket], lease: Duration) async throws -> Int {
        let newest = Self.newestPerJob(packets, attempt: \.attempt, timestamp: \.timestamp, job: \.jobID)
        guard !newest.isEmpty else { return 0 }
        let values: [String?] = [
            PostgresArray.literal(newest.map(\.jobID)), PostgresArray.literal(newest.map(\.attempt)),
            PostgresArray.literal(newest.map { $0.node as String? }),
            PostgresArray.literal(newest.map(\.timestamp.milliseconds)),
            PostgresArray.literal(newest.map(\.bytesDone)), PostgresArray.literal(newest.map(\.bytesTotal)),
            String(Self.milliseconds(lease)),
        ]
        return try await connection.transaction("progress", idempotent: true) { connection in
            // Queued rows first: a row a concurrent writer moves to running in between is then
            // seen by the second statement, which takes a fresh snapshot.
            let started = try connection.query(Self.applyProgressStatement, values + [JobState.queued.rawValue])
            let advanced = try connection.query(Self.applyProgressStatement, values + [JobState.running.rawValue])
            return Int(started.int64(0, 0) ?? 0) + Int(advanced.int64(0, 0) ?? 0)
        }
    }

    /// Settles jobs from result packets in one transaction, writes their audit events, and marks
    /// the batches whose every job is now terminal as finished.
    ///
    /// A result applies only to the job's current attempt while it is queued or running, so a
    /// redelivered or stale result changes nothing and a settled job stays settled.
    public func applyResults(_ packets: [ResultPacket]) async throws -> AppliedResults {
        let newest = Self.newestPerJob(packets, attempt: \.attempt, timestamp: \.timestamp, job: \.jobID)
        guard !newest.isEmpty else { return AppliedResults(settled: [], finishedBatches: []) }
        let values: [String?] = [
            PostgresArray.literal(newest.map(\.jobID)), PostgresArray.literal(newest.map(\.attempt)),
            PostgresArray.literal(newest.map { $0.node as String? }),
            PostgresArray.literal(newest.map(\.timestamp.milliseconds)),
            PostgresArray.literal(newest.map { $0.outcome.rawValue as String? }),
            PostgresArray.literal(newest.map(\.bytes)), PostgresArray.literal(newest.map(\.etag)),
            PostgresArray.literal(newest.map(\.sha256)), PostgresArray.literal(newest.map(\.errorCode)),
            PostgresArray.literal(newest.map(\.errorMessage)),
        ]
        return try await connection.transaction("results", idempotent: true) { connection in
            var settled: [SettledJob] = []
            for from in [JobState.queued, .running] {
                let rows = try connection.query(Self.applyResultsStatement, values + [from.rawValue])
                for row in 0..<rows.rowCount {
                    guard let id = rows.int64(row, 0), let batchID = rows.int64(row, 1),
                        let attempt = rows.int32(row, 2), let state = rows[row, 3].flatMap(JobState.init(rawValue:))
                    else { throw Self.unexpected(Self.applyResultsStatement.name) }
                    settled.append(SettledJob(jobID: id, batchID: batchID, attempt: attempt, state: state))
                }
            }
            let finished = try Self.finishBatches(Set(settled.map(\.batchID)), on: connection)
            return AppliedResults(settled: settled.sorted { $0.jobID < $1.jobID }, finishedBatches: finished)
        }
    }

    /// One UPDATE per progress packet in autocommit: the naive path the benchmark compares with
    /// ``applyProgress(_:lease:)``. Not for production use.
    @_spi(Benchmark)
    public func applyProgressOneByOne(_ packets: [ProgressPacket], lease: Duration) async throws -> Int {
        var applied = 0
        for packet in packets {
            let rows = try await connection.execute(
                Self.applyOneProgress,
                [
                    String(packet.jobID), String(packet.attempt), packet.node, String(packet.timestamp.milliseconds),
                    String(packet.bytesDone), packet.bytesTotal.map(String.init), String(Self.milliseconds(lease)),
                ], idempotent: true)
            applied += rows.affected
        }
        return applied
    }

    /// The same statements as ``applyProgressOneByOne(_:lease:)``, each still its own transaction,
    /// but sent in libpq's pipeline mode: what pipelining alone buys the one-by-one path.
    @_spi(Benchmark)
    public func applyProgressOneByOnePipelined(_ packets: [ProgressPacket], lease: Duration) async throws -> Int {
        let leaseText = String(Self.milliseconds(lease))
        let lists: [[String?]] = packets.map { packet in
            [
                String(packet.jobID), String(packet.attempt), packet.node, String(packet.timestamp.milliseconds),
                String(packet.bytesDone), packet.bytesTotal.map(String.init), leaseText,
            ]
        }
        return try await connection.pipelined(Self.applyOneProgress, lists).reduce(0, +)
    }

    // MARK: Rescue, reset, cancel

    /// Jobs queued or running whose lease ended before `now` (the database clock when nil) go
    /// back to pending, or to failed with `attempts_exhausted` when their attempts are used up.
    public func rescueExpired(now: Timestamp? = nil, limit: Int = 10_000) async throws -> RescuedJobs {
        let actor = actor
        return try await connection.transaction("rescue", idempotent: true) { connection in
            let rows = try connection.query(
                Self.rescueStatement, [now.map { String($0.milliseconds) }, String(limit), actor])
            var requeued = 0
            var exhausted = 0
            var failedBatches: Set<Int64> = []
            for row in 0..<rows.rowCount {
                if rows[row, 1] == JobState.failed.rawValue {
                    exhausted += 1
                    if let batch = rows.int64(row, 0) { failedBatches.insert(batch) }
                } else {
                    requeued += 1
                }
            }
            let finished = try Self.finishBatches(failedBatches, on: connection)
            return RescuedJobs(requeued: requeued, exhausted: exhausted, finishedBatches: finished)
        }
    }

    /// Puts a batch's failed and cancelled jobs back to pending with a fresh allowance of attempts.
    @discardableResult
    public func resetFailed(batch: String) async throws -> Int {
        let actor = actor
        let maxAttempts = maxAttempts
        return try await connection.transaction("reset_failed", idempotent: true) { connection in
            let batchID = try Self.batchID(named: batch, on: connection)
            var reset = 0
            for from in [JobState.failed, .cancelled] {
                let rows = try connection.query(
                    Self.resetStatement, [String(batchID), from.rawValue, String(maxAttempts), actor])
                reset += Int(rows.int64(0, 0) ?? 0)
            }
            if reset > 0 { _ = try connection.query(Self.reopenBatch, [String(batchID)]) }
            return reset
        }
    }

    /// Cancels every job of a batch that is not settled yet. Consumers learn of it from a control
    /// message (sent by the caller); their late results find the jobs settled and change nothing.
    public func cancel(batch: String) async throws -> CancelledBatch {
        let actor = actor
        return try await connection.transaction("cancel", idempotent: true) { connection in
            let batchID = try Self.batchID(named: batch, on: connection)
            var cancelled = 0
            for from in [JobState.pending, .queued, .running] {
                let rows = try connection.query(Self.cancelStatement, [String(batchID), from.rawValue, actor])
                cancelled += Int(rows.int64(0, 0) ?? 0)
            }
            _ = try connection.query(Self.markCancelled, [String(batchID)])
            return CancelledBatch(id: batchID, name: batch, cancelledJobs: cancelled)
        }
    }

    // MARK: Reports

    /// Counts per state and bytes for one batch, or for every batch (oldest first) when nil.
    /// Throws ``JobRepositoryError/unknownBatch(_:)`` for a name that does not exist.
    public func status(batch: String? = nil) async throws -> [BatchStatus] {
        // Fold the tallies' deltas first so the read sums a few rows per batch.
        _ = try await connection.execute(Self.compactTallies, [], idempotent: true)
        let rows = try await connection.execute(Self.statusStatement, [batch], idempotent: true)
        var statuses: [BatchStatus] = []
        for row in 0..<rows.rowCount {
            guard let id = rows.int64(row, 0), let name = rows[row, 1], let jobCount = rows.int64(row, 2),
                let created = rows.int64(row, 3)
            else { throw Self.unexpected(Self.statusStatement.name) }
            if statuses.last?.id != id {
                statuses.append(
                    BatchStatus(
                        id: id, name: name, jobCount: jobCount, counts: [:], bytesDone: 0, bytesTotal: 0,
                        createdAt: Timestamp(milliseconds: created),
                        finishedAt: rows.int64(row, 4).map(Timestamp.init(milliseconds:)),
                        cancelledAt: rows.int64(row, 5).map(Timestamp.init(milliseconds:))))
            }
            if let state = rows[row, 6].flatMap(JobState.init(rawValue:)) {
                statuses[statuses.count - 1].counts[state] = rows.int64(row, 7) ?? 0
                statuses[statuses.count - 1].bytesDone += rows.int64(row, 8) ?? 0
                statuses[statuses.count - 1].bytesTotal += rows.int64(row, 9) ?? 0
            }
        }
        if let batch, statuses.isEmpty { throw JobRepositoryError.unknownBatch(batch) }
        return statuses
    }

    /// The jobs of a batch in id order, optionally in one state only.
    public func jobs(batch: String, state: JobState? = nil, limit: Int = 100) async throws -> [JobRecord] {
        let rows = try await connection.transaction("jobs", idempotent: true) { connection in
            let batchID = try Self.batchID(named: batch, on: connection)
            return try connection.query(Self.listJobs, [String(batchID), state?.rawValue, String(limit)])
        }
        return try (0..<rows.rowCount).map { row in
            guard let id = rows.int64(row, 0), let batchID = rows.int64(row, 1),
                let state = rows[row, 2].flatMap(JobState.init(rawValue:)), let attempt = rows.int32(row, 3),
                let maxAttempts = rows.int32(row, 4), let priority = rows.int32(row, 5), let source = rows[row, 6],
                let destination = rows[row, 7], let bytesDone = rows.int64(row, 10),
                let progress = rows.int64(row, 16), let result = rows.int64(row, 17),
                let updated = rows.int64(row, 19)
            else { throw Self.unexpected(Self.listJobs.name) }
            return JobRecord(
                id: id, batchID: batchID, state: state, attempt: attempt, maxAttempts: maxAttempts, priority: priority,
                source: source, destination: destination, expectedSHA256: rows[row, 8], size: rows.int64(row, 9),
                bytesDone: bytesDone, sha256: rows[row, 11], etag: rows[row, 12], errorCode: rows[row, 13],
                errorMessage: rows[row, 14], node: rows[row, 15], progressTimestamp: Timestamp(milliseconds: progress),
                resultTimestamp: Timestamp(milliseconds: result),
                leaseExpiresAt: rows.int64(row, 18).map(Timestamp.init(milliseconds:)),
                updatedAt: Timestamp(milliseconds: updated))
        }
    }

    /// Records heartbeats in the node registry; an older heartbeat never overwrites a newer one.
    public func upsertNodes(_ heartbeats: [Heartbeat]) async throws {
        var newest: [String: Heartbeat] = [:]
        for heartbeat in heartbeats
        where (newest[heartbeat.node]?.timestamp ?? Timestamp(milliseconds: .min)) < heartbeat.timestamp {
            newest[heartbeat.node] = heartbeat
        }
        guard !newest.isEmpty else { return }
        let beats = newest.values.sorted { $0.node < $1.node }
        _ = try await connection.execute(
            Self.upsertNodesStatement,
            [
                PostgresArray.literal(beats.map { $0.node as String? }),
                PostgresArray.literal(beats.map { $0.role.rawValue as String? }),
                PostgresArray.literal(beats.map { $0.host as String? }),
                PostgresArray.literal(beats.map(\.startedAt.milliseconds)),
                PostgresArray.literal(beats.map(\.timestamp.milliseconds)),
                PostgresArray.literal(beats.map { PostgresArray.literal($0.currentJobs) as String? }),
                PostgresArray.literal(beats.map(\.bytesMoved)),
            ], idempotent: true)
    }

    /// Every node the registry knows, by name.
    public func nodes() async throws -> [NodeRecord] {
        let rows = try await connection.execute(Self.listNodes, [], idempotent: true)
        return try (0..<rows.rowCount).map { row in
            guard let name = rows[row, 0], let role = rows[row, 1].flatMap(Heartbeat.Role.init(rawValue:)),
                let host = rows[row, 2], let started = rows.int64(row, 3), let seen = rows.int64(row, 4),
                let jobs = rows[row, 5], let bytes = rows.int64(row, 6)
            else { throw Self.unexpected(Self.listNodes.name) }
            let currentJobs = jobs.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",")
                .compactMap { Int64($0) }
            return NodeRecord(
                name: name, role: role, host: host, startedAt: Timestamp(milliseconds: started),
                lastSeen: Timestamp(milliseconds: seen), currentJobs: currentJobs, bytesMoved: bytes)
        }
    }

    // MARK: Helpers

    private static func finishBatches(
        _ batchIDs: Set<Int64>, on connection: isolated PQConnection
    ) throws
        -> [FinishedBatch]
    {
        guard !batchIDs.isEmpty else { return [] }
        let ids = PostgresArray.literal(batchIDs.sorted())
        // Lock the batches, then check with a fresh snapshot: two transactions settling the last
        // jobs of one batch at once then cannot both miss each other's jobs.
        _ = try connection.query(lockBatches, [ids])
        let rows = try connection.query(markFinished, [ids])
        return (0..<rows.rowCount).compactMap { row in
            guard let id = rows.int64(row, 0), let name = rows[row, 1] else { return nil }
            return FinishedBatch(id: id, name: name)
        }.sorted { $0.id < $1.id }
    }

    private static func batchID(named name: String, on connection: isolated PQConnection) throws -> Int64 {
        let rows = try connection.query(findBatch, [name])
        guard rows.rowCount == 1, let id = rows.int64(0, 0) else { throw JobRepositoryError.unknownBatch(name) }
        return id
    }

    /// The packet with the newest (attempt, timestamp) per job, in job order: one row is updated
    /// once per statement, and a stable lock order keeps concurrent writers from deadlocking.
    private static func newestPerJob<Packet>(
        _ packets: [Packet], attempt: KeyPath<Packet, Int32>, timestamp: KeyPath<Packet, Timestamp>,
        job: KeyPath<Packet, Int64>
    ) -> [Packet] {
        var newest: [Int64: Packet] = [:]
        for packet in packets {
            if let current = newest[packet[keyPath: job]],
                (current[keyPath: attempt], current[keyPath: timestamp]) >= (
                    packet[keyPath: attempt], packet[keyPath: timestamp]
                )
            {
                continue
            }
            newest[packet[keyPath: job]] = packet
        }
        return newest.keys.sorted().map { newest[$0]! }
    }

    private static func appendCopyField(_ value: String?, to buffer: inout [UInt8]) {
        guard let value else {
            buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")])
            return
        }
        // Most fields need no escaping: copy their bytes at once.
        if !value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 < 0x20 }) {
            buffer.append(contentsOf: value.utf8)
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\t"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case UInt8(ascii: "\n"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            default: buffer.append(byte)
            }
        }
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    private static func unexpected(_ statement: String) -> PostgresError {
        PostgresError(kind: .unexpectedResult, statement: statement, message: "a column is missing or malformed")
    }
}

// MARK: Statements

extension JobRepository {
    static let insertBatch = PQStatement(
        name: "submit.batch", sql: "INSERT INTO batches (name) VALUES ($1::text) RETURNING id")

    static let copyJobs = PQStatement(
        name: "submit.copy",
        sql: "COPY jobs (batch_id, priority, source, destination, expected_sha256, max_attempts) FROM STDIN")

    /// Creation is not an audit event per job (a million inserts more); `jobs.created_at` records it.
    static let setJobCount = PQStatement(
        name: "submit.count", sql: "UPDATE batches SET job_count = $2::bigint WHERE id = $1::bigint")

    static let claimJobs = PQStatement(
        name: "claim",
        sql: """
            WITH picked AS (
                SELECT id FROM jobs WHERE state = 'pending'
                ORDER BY priority DESC, id LIMIT $1::integer
                FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE jobs AS j
                SET state = 'queued', attempt = j.attempt + 1,
                    lease_expires_at = now() + $2::bigint * interval '1 millisecond',
                    progress_ts = 0, result_ts = 0, bytes_done = 0, node = NULL,
                    error_code = NULL, error_message = NULL, updated_at = now()
                FROM picked WHERE j.id = picked.id
                RETURNING j.id, j.batch_id, j.attempt, j.source, j.destination, j.priority, j.expected_sha256,
                    NOT EXISTS (
                        SELECT 1 FROM jobs AS w WHERE w.destination = j.destination AND w.state IN ('done', 'skipped')
                    ) AS fresh_destination
            ), logged AS (
                INSERT INTO job_events (job_id, attempt, from_state, to_state, actor)
                SELECT id, attempt, 'pending', 'queued', $3::text FROM claimed
            )
            SELECT * FROM claimed
            """)

    static let releaseJobs = PQStatement(
        name: "release",
        sql: """
            WITH released AS (
                UPDATE jobs AS j
                SET state = 'pending', lease_expires_at = NULL, updated_at = now()
                FROM unnest($1::bigint[], $2::integer[]) AS r(id, attempt)
                WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = 'queued'
                RETURNING j.id, j.attempt
            ), logged AS (
                INSERT INTO job_events (job_id, attempt, from_state, to_state, actor, detail)
                SELECT id, attempt, 'queued', 'pending', $3::text, 'publish failed' FROM released
            )
            SELECT count(*) FROM released
            """)

    /// `$8` is the state the rows are in now: queued rows start running (an audit event), running
    /// rows only advance.
    static let applyProgressStatement = PQStatement(
        name: "progress",
        sql: """
            WITH moved AS (
                UPDATE jobs AS j
                SET state = 'running', node = p.node, progress_ts = p.ts, bytes_done = p.bytes_done,
                    size = coalesce(p.bytes_total, j.size),
                    lease_expires_at = now() + $7::bigint * interval '1 millisecond', updated_at = now()
                FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
                    AS p(id, attempt, node, ts, bytes_done, bytes_total)
                WHERE j.id = p.id AND j.attempt = p.attempt AND j.progress_ts < p.ts AND j.state = $8::text
                RETURNING j.id, j.attempt, j.node
            ), logged AS (
                INSERT INTO job_events (job_id, attempt, from_state, to_state, actor)
                SELECT id, attempt, 'queued', 'running', node FROM moved WHERE $8::text = 'queued'
            )
            SELECT count(*) FROM moved
            """)

    static let applyOneProgress = PQStatement(
        name: "progress.one",
        sql: """
            UPDATE jobs
            SET state = 'running', node = $3::text, progress_ts = $4::bigint, bytes_done = $5::bigint,
                size = coalesce($6::bigint, size),
                lease_expires_at = now() + $7::bigint * interval '1 millisecond', updated_at = now()
            WHERE id = $1::bigint AND attempt = $2::integer AND progress_ts < $4::bigint
                AND state IN ('queued', 'running')
            """)

    /// `$11` is the state the rows are in now (queued or running), for the audit event.
    static let applyResultsStatement = PQStatement(
        name: "results",
        sql: """
            WITH settled AS (
                UPDATE jobs AS j
                SET state = r.outcome, node = r.node, result_ts = r.ts, bytes_done = r.bytes,
                    size = CASE WHEN r.outcome IN ('done', 'skipped') THEN r.bytes ELSE j.size END,
                    etag = r.etag, sha256 = r.sha256, error_code = r.error_code, error_message = r.error_message,
                    lease_expires_at = NULL, updated_at = now()
                FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                            $7::text[], $8::text[], $9::text[], $10::text[])
                    AS r(id, attempt, node, ts, outcome, bytes, etag, sha256, error_code, error_message)
                WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = $11::text
                RETURNING j.id, j.batch_id, j.attempt, j.state, j.node, j.error_code
            ), logged AS (
                INSERT INTO job_events (job_id, attempt, from_state, to_state, actor, detail)
                SELECT id, attempt, $11::text, state, node, error_code FROM settled
            )
            SELECT id, batch_id, attempt, state FROM settled
            """)

    static let lockBatches = PQStatement(
        name: "finish.lock",
        sql: "SELECT id FROM batches WHERE id = ANY($1::bigint[]) AND finished_at IS NULL ORDER BY id FOR UPDATE")

    static let markFinished = PQStatement(
        name: "finish.mark",
        sql: """
            UPDATE batches AS b SET finished_at = now()
            WHERE b.id = ANY($1::bigint[]) AND b.finished_at IS NULL
                AND NOT EXISTS (
                    SELECT 1 FROM jobs WHERE jobs.batch_id = b.id AND jobs.state IN ('pending', 'queued', 'running'))
            RETURNING b.id, b.name
            """)

    static let rescueStatement = PQStatement(
        name: "rescue",
        sql: """
            WITH expired AS (
                SELECT id, state FROM jobs
                WHERE state IN ('queued', 'running')
                    AND lease_expires_at < coalesce(to_timestamp($1::bigint / 1000.0), now())
                ORDER BY id LIMIT $2::integer
                FOR UPDATE SKIP LOCKED
            ), rescued AS (
                UPDATE jobs AS j
                SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'pending' END,
                    error_code = CASE WHEN j.attempt >= j.max_attempts THEN 'attempts_exhausted' END,
                    error_message = CASE WHEN j.attempt >= j.max_attempts
                        THEN 'lease expired on attempt ' || j.attempt || ' of ' || j.max_attempts END,
                    lease_expires_at = NULL, updated_at = now()
                FROM expired WHERE j.id = expired.id
                RETURNING j.id, j.batch_id, j.attempt, j.state, expired.state AS from_state
            ), logged AS (
                INSERT INTO job_events (job_id, attempt, from_state, to_state, actor, detail)
                SELECT id, attempt, from_state, state, $3::text, 'lease expired' FROM rescued
            )
            SELECT batch_id, state FROM rescued
            """)

    static let resetStatement = PQStatement(
        name: "reset_failed",
        sql: """
            WITH reset AS (
                UPDATE jobs AS j
                SET state = 'pending', max_attempts = j.attempt + $3::integer, error_code = NULL,
                    error_message = NULL, lease_expires_at = NULL, bytes_done = 0, updated_at = now()
                WHERE j.batch_id = $1::bigint AND j.state = $2::text
                RETURNING j.id, j.attempt
            ), logged AS (
                INSERT INTO job_events (job_id, attempt, from_state, to_state, actor, detail)
                SELECT id, attempt, $2::text, 'pending', $4::text, 'reset-failed' FROM reset
            )
            SELECT count(*) FROM reset
            """)

    static let reopenBatch = PQStatement(
        name: "reset_failed.batch",
        sql: "UPDATE batches SET finished_at = NULL, cancelled_at = NULL WHERE id = $1::bigint")

    static let cancelStatement = PQStatement(
        name: "cancel",
        sql: """
            WITH cancelled AS (
                UPDATE jobs AS j
                SET state = 'cancelled', lease_expires_at = NULL, updated_at = now()
                WHERE j.batch_id = $1::bigint AND j.state = $2::text
                RETURNING j.id, j.attempt
            ), logged AS (
                INSERT INTO job_events (job_id, attempt, from_state, to_state, actor, detail)
                SELECT id, attempt, $2::text, 'cancelled', $3::text, 'cancel' FROM cancelled
            )
            SELECT count(*) FROM cancelled
            """)

    static let markCancelled = PQStatement(
        name: "cancel.batch",
        sql: """
            UPDATE batches SET cancelled_at = coalesce(cancelled_at, now()), finished_at = coalesce(finished_at, now())
            WHERE id = $1::bigint
            """)

    static let findBatch = PQStatement(name: "batch.find", sql: "SELECT id FROM batches WHERE name = $1::text")

    static let compactTallies = PQStatement(
        name: "status.compact",
        sql: """
            WITH crowded AS (
                SELECT batch_id FROM batch_tallies GROUP BY batch_id HAVING count(*) > 32
            ), moved AS (
                DELETE FROM batch_tallies AS t USING crowded WHERE t.batch_id = crowded.batch_id RETURNING t.*
            )
            INSERT INTO batch_tallies (batch_id, state, jobs, bytes_done, bytes_total)
            SELECT batch_id, state, sum(jobs), sum(bytes_done), sum(bytes_total) FROM moved
            GROUP BY batch_id, state
            HAVING sum(jobs) <> 0 OR sum(bytes_done) <> 0 OR sum(bytes_total) <> 0
            """)

    static let statusStatement = PQStatement(
        name: "status",
        sql: """
            SELECT b.id, b.name, b.job_count, (extract(epoch FROM b.created_at) * 1000)::bigint,
                (extract(epoch FROM b.finished_at) * 1000)::bigint, (extract(epoch FROM b.cancelled_at) * 1000)::bigint,
                t.state, t.jobs, t.bytes_done, t.bytes_total
            FROM batches AS b
            LEFT JOIN LATERAL (
                SELECT state, sum(jobs) AS jobs, sum(bytes_done) AS bytes_done, sum(bytes_total) AS bytes_total
                FROM batch_tallies WHERE batch_tallies.batch_id = b.id GROUP BY state
            ) AS t ON true
            WHERE $1::text IS NULL OR b.name = $1::text
            ORDER BY b.id, t.state
            """)

    static let listJobs = PQStatement(
        name: "jobs",
        sql: """
            SELECT id, batch_id, state, attempt, max_attempts, priority, source, destination, expected_sha256, size,
                bytes_done, sha256, etag, error_code, error_message, node, progress_ts, result_ts,
                (extract(epoch FROM lease_expires_at) * 1000)::bigint, (extract(epoch FROM updated_at) * 1000)::bigint
            FROM jobs
            WHERE batch_id = $1::bigint AND ($2::text IS NULL OR state = $2::text)
            ORDER BY id LIMIT $3::integer
            """)

    static let upsertNodesStatement = PQStatement(
        name: "nodes.upsert",
        sql: """
            INSERT INTO nodes AS n (name, role, host, started_at, last_seen, current_jobs, bytes_moved)
            SELECT name, role, host, started_at, last_seen, current_jobs::bigint[], bytes_moved
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[])
                AS h(name, role, host, started_at, last_seen, current_jobs, bytes_moved)
            ON CONFLICT (name) DO UPDATE
            SET role = excluded.role, host = excluded.host, started_at = excluded.started_at,
                last_seen = excluded.last_seen, current_jobs = excluded.current_jobs, bytes_moved = excluded.bytes_moved
            WHERE n.last_seen < excluded.last_seen
            """)

    static let listNodes = PQStatement(
        name: "nodes",
        sql: "SELECT name, role, host, started_at, last_seen, current_jobs, bytes_moved FROM nodes ORDER BY name")
}
