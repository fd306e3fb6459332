import Logging

/// The database schema as an ordered list of versioned steps, applied at most once each.
///
/// Every step runs in its own transaction and is recorded in `schema_migrations`. The whole run
/// holds a session advisory lock, so four services starting at once apply each step exactly
/// once: the others wait for the lock, then find the step recorded and skip it.
public enum Migrations {
    /// One step of the schema. Steps are never edited once released; a change is a new step.
    struct Step: Sendable {
        let version: Int
        let name: String
        let sql: StaticString
    }

    /// The advisory lock key every migrator takes (an arbitrary constant: "squall" in ASCII).
    static let lockKey: Int64 = 0x7371_7561_6c6c

    /// The newest schema version this build knows.
    public static var latestVersion: Int { steps.last!.version }

    static let steps: [Step] = [
        Step(
            version: 1, name: "jobs, batches, events, nodes",
            sql: """
                CREATE TABLE batches (
                    id bigserial PRIMARY KEY,
                    name text NOT NULL UNIQUE,
                    job_count bigint NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    finished_at timestamptz,
                    cancelled_at timestamptz
                );

                CREATE TABLE jobs (
                    id bigserial PRIMARY KEY,
                    batch_id bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
                    state text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'queued', 'running', 'done', 'skipped', 'failed', 'cancelled')),
                    attempt integer NOT NULL DEFAULT 0,
                    max_attempts integer NOT NULL DEFAULT 5,
                    priority integer NOT NULL DEFAULT 0,
                    source text NOT NULL,
                    destination text NOT NULL,
                    expected_sha256 text,
                    size bigint,
                    bytes_done bigint NOT NULL DEFAULT 0,
                    sha256 text,
                    etag text,
                    error_code text,
                    error_message text,
                    node text,
                    progress_ts bigint NOT NULL DEFAULT 0,
                    result_ts bigint NOT NULL DEFAULT 0,
                    lease_expires_at timestamptz,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                );

                -- The claim path: the next pending jobs by priority then age, read from a small index
                -- that holds pending rows only.
                CREATE INDEX jobs_pending_claim ON jobs (priority DESC, id) WHERE state = 'pending';
                -- Listing and status per batch and state; also the finished check of a batch.
                CREATE INDEX jobs_batch_state ON jobs (batch_id, state, id);
                -- Rescue: only queued and running rows have leases.
                CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state IN ('queued', 'running');

                CREATE TABLE job_events (
                    id bigserial PRIMARY KEY,
                    job_id bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
                    attempt integer NOT NULL,
                    from_state text,
                    to_state text NOT NULL,
                    actor text NOT NULL,
                    at timestamptz NOT NULL DEFAULT now(),
                    detail text
                );
                CREATE INDEX job_events_job ON job_events (job_id, id);

                CREATE TABLE nodes (
                    name text PRIMARY KEY,
                    role text NOT NULL,
                    host text NOT NULL,
                    started_at bigint NOT NULL,
                    last_seen bigint NOT NULL,
                    current_jobs bigint[] NOT NULL DEFAULT '{}',
                    bytes_moved bigint NOT NULL DEFAULT 0
                );

                -- Per-batch tallies for status: append-only deltas written by statement triggers from
                -- transition tables, so status at a million jobs sums a few rows instead of scanning
                -- the batch, and concurrent writers never contend on a counter row.
                CREATE TABLE batch_tallies (
                    batch_id bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
                    state text NOT NULL,
                    jobs bigint NOT NULL,
                    bytes_done bigint NOT NULL,
                    bytes_total bigint NOT NULL
                );
                CREATE INDEX batch_tallies_batch ON batch_tallies (batch_id);

                CREATE FUNCTION jobs_tally_insert() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO batch_tallies (batch_id, state, jobs, bytes_done, bytes_total)
                    SELECT batch_id, state, count(*), sum(bytes_done), sum(coalesce(size, 0))
                    FROM new_rows GROUP BY batch_id, state;
                    RETURN NULL;
                END $$;

                CREATE FUNCTION jobs_tally_update() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO batch_tallies (batch_id, state, jobs, bytes_done, bytes_total)
                    SELECT batch_id, state, sum(jobs), sum(bytes_done), sum(bytes_total)
                    FROM (
                        SELECT batch_id, state, 1 AS jobs, bytes_done, coalesce(size, 0) AS bytes_total FROM new_rows
                        UNION ALL
                        SELECT batch_id, state, -1, -bytes_done, -coalesce(size, 0) FROM old_rows
                    ) AS delta
                    GROUP BY batch_id, state
                    HAVING sum(jobs) <> 0 OR sum(bytes_done) <> 0 OR sum(bytes_total) <> 0;
                    RETURN NULL;
                END $$;

                CREATE TRIGGER jobs_tally_insert AFTER INSERT ON jobs
                    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_tally_insert();
                CREATE TRIGGER jobs_tally_update AFTER UPDATE ON jobs
                    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION jobs_tally_update();
                """),
        Step(
            version: 2, name: "job_events without a foreign key",
            sql: """
                -- The key check is a lookup and a row lock on jobs per event, run by a trigger for every
                -- row a claim, apply, rescue or cancel writes, while the event is only ever written by
                -- the statement that changes that very job. Jobs are never deleted.
                ALTER TABLE job_events DROP CONSTRAINT IF EXISTS job_events_job_id_fkey;
                """),
        Step(
            version: 3, name: "progress updates without index writes",
            sql: """
                -- A progress packet of a running job changes its bytes, timestamp and lease, not its state.
                -- With no index on the lease and room left on each page, such an update is a HOT update:
                -- a new row version on the same page and no index entry at all, where it wrote three.
                -- Rescue now reads the in-flight rows in id order and checks their leases; there are as
                -- many as the jobs in the broker window and in transfer, not as many as the table.
                ALTER TABLE jobs SET (fillfactor = 80);
                DROP INDEX jobs_lease;
                CREATE INDEX jobs_in_flight ON jobs (id) WHERE state IN ('queued', 'running');
                """),
        Step(
            version: 4, name: "destinations already written",
            sql: """
                -- A claim tells the Consumer whether any job has finished into the job's destination; if
                -- none has, a first delivery leaves out its destination HEAD. Only finished rows are in
                -- the index, so a claim's lookup and a settle's extra entry stay one index probe each.
                CREATE INDEX jobs_written_destination ON jobs (destination) WHERE state IN ('done', 'skipped');
                """),
    ]

    /// Applies every step not yet recorded; returns the versions this call applied.
    static func apply(on connection: PQConnection, logger: Logger) async throws -> [Int] {
        // The session lock lives as long as the connection: if the connection breaks, it is released.
        _ = try await connection.execute(lock, [String(lockKey)], idempotent: false)
        do {
            try await connection.script(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                statement: "migrate.bookkeeping")
            // The table may be another tool's, which CREATE TABLE IF NOT EXISTS leaves as it was.
            _ = try await hasSquallBookkeeping(on: connection)
            let rows = try await connection.execute(appliedVersions, [], idempotent: true)
            let applied = Set((0..<rows.rowCount).compactMap { Int(rows[$0, 0] ?? "") })
            var newlyApplied: [Int] = []
            for step in steps where !applied.contains(step.version) {
                try await connection.transaction("migrate.\(step.version)", idempotent: false) { connection in
                    try connection.script(step.sql, statement: "migrate.\(step.version)")
                    _ = try connection.query(record, [String(step.version), step.name])
                }
                logger.info("applied migration", metadata: ["db.migration": "\(step.version) \(step.name)"])
                newlyApplied.append(step.version)
            }
            _ = try? await connection.execute(unlock, [String(lockKey)], idempotent: false)
            return newlyApplied
        } catch {
            _ = try? await connection.execute(unlock, [String(lockKey)], idempotent: false)
            throw error
        }
    }

    /// The newest version recorded in `schema_migrations`: 0 when the database has no Squall schema yet.
    /// Throws when the database holds another tool's `schema_migrations` (Rails, golang-migrate and
    /// others use that name), rather than reading its versions as Squall's.
    static func recordedVersion(on connection: PQConnection) async throws(PostgresError) -> Int {
        do throws(PostgresError) {
            guard try await hasSquallBookkeeping(on: connection) else { return 0 }
            let rows = try await connection.execute(newestVersion, [], idempotent: true)
            return rows.int64(0, 0).map(Int.init) ?? 0
        } catch {
            guard error.sqlState == PostgresError.undefinedTable else { throw error }
            return 0
        }
    }

    /// Whether `schema_migrations`, found as every statement here finds it (through the
    /// search_path), exists: false when it does not, and an error when it exists with columns other
    /// than Squall's. Another tool's table would otherwise pass for Squall's: golang-migrate's
    /// `version bigint` reads as a schema far newer than this build, Rails' text versions as
    /// migrations applied, and a service would go on into a database without Squall's tables.
    private static func hasSquallBookkeeping(on connection: PQConnection) async throws(PostgresError) -> Bool {
        let rows = try await connection.execute(bookkeepingColumns, [], idempotent: true)
        guard rows.rowCount > 0 else { return false }
        let columns = (0..<rows.rowCount).map { "\(rows[$0, 0] ?? "?") \(rows[$0, 1] ?? "?")" }
        guard columns.contains("version integer"), columns.contains("name text") else {
            throw PostgresError(
                kind: .unexpectedResult, statement: "migrate.bookkeeping",
                message:
                    "the database already has a schema_migrations table that is not Squall's (columns: \(columns.joined(separator: ", "))), another tool's migrations perhaps; give Squall a database of its own, or a schema of its own first in the search_path"
            )
        }
        return true
    }

    private static let bookkeepingColumns = PQStatement(
        name: "migrate.bookkeeping-columns",
        sql: """
            SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
            WHERE attrelid = to_regclass('schema_migrations') AND attnum > 0 AND NOT attisdropped ORDER BY attnum
            """)
    private static let newestVersion = PQStatement(
        name: "migrate.newest", sql: "SELECT coalesce(max(version), 0) FROM schema_migrations")
    private static let lock = PQStatement(name: "migrate.lock", sql: "SELECT pg_advisory_lock($1::bigint)")
    private static let unlock = PQStatement(name: "migrate.unlock", sql: "SELECT pg_advisory_unlock($1::bigint)")
    private static let appliedVersions = PQStatement(
        name: "migrate.applied", sql: "SELECT version FROM schema_migrations ORDER BY version")
    private static let record = PQStatement(
        name: "migrate.record", sql: "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2::text)")
}
