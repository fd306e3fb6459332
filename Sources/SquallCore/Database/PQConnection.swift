internal import CLibPQ
import Foundation
import Logging

/// A constant SQL statement and the name it is prepared under and reported by.
///
/// Statements are constants of the code; whatever comes from input travels as a bind parameter.
struct PQStatement: Sendable, Hashable {
    let name: String
    let sql: String
}

/// The rows a statement returned, copied out of libpq's result as text.
struct PQRows: Sendable {
    let rowCount: Int
    let columnCount: Int
    /// Rows the command touched (`PQcmdTuples`): updated, inserted or deleted.
    let affected: Int
    private let values: [String?]

    fileprivate init(_ result: OpaquePointer) {
        rowCount = Int(PQntuples(result))
        columnCount = Int(PQnfields(result))
        affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        var values: [String?] = []
        values.reserveCapacity(rowCount * columnCount)
        for row in 0..<Int32(rowCount) {
            for column in 0..<Int32(columnCount) {
                values.append(
                    PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column)))
            }
        }
        self.values = values
    }

    subscript(row: Int, column: Int) -> String? {
        values[row * columnCount + column]
    }

    func int64(_ row: Int, _ column: Int) -> Int64? {
        self[row, column].flatMap { Int64($0) }
    }

    func int32(_ row: Int, _ column: Int) -> Int32? {
        self[row, column].flatMap { Int32($0) }
    }
}

/// One libpq connection (`PGconn`), owned by its own thread.
///
/// libpq blocks the calling thread for every round trip. This actor's executor is a
/// ``DedicatedThread``, so every libpq call runs there and never on Swift's cooperative pool;
/// callers simply `await` its methods. Statements are prepared once per connection and run with
/// bind parameters only. When the connection breaks, the next operation reconnects with capped
/// backoff (``ReconnectBackoff``); the operation in flight is retried once when the caller marked
/// it idempotent, and otherwise fails with a retryable ``PostgresError``.
actor PQConnection {
    private let thread: DedicatedThread
    nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }

    private let parameters: [(keyword: String, value: String)]
    /// `host:port/database`, for messages; never the password.
    nonisolated let label: String
    private let logger: Logger
    private let backoffPolicy: ReconnectBackoff
    private var handle: OpaquePointer?
    private var prepared: Set<String> = []
    private var inTransaction = false

    init(url: DatabaseURL, logger: Logger, backoff: ReconnectBackoff = ReconnectBackoff()) {
        thread = DedicatedThread(name: "squall-pq")
        parameters = url.connectionParameters
        label = "\(url.host):\(url.port)/\(url.database)"
        self.logger = logger
        backoffPolicy = backoff
    }

    isolated deinit {
        if let handle { PQfinish(handle) }
        thread.shutdown()
    }

    /// Closes the connection; a later operation would open a new one.
    func close() {
        drop()
    }

    /// Whether the connection is open now (for tests and health checks).
    var isConnected: Bool {
        handle.map { PQstatus($0) == CONNECTION_OK } ?? false
    }

    /// The server process serving this connection (tests use it to break the connection).
    func backendPID() throws(PostgresError) -> Int32 {
        PQbackendPID(try connection(for: "backend_pid"))
    }

    // MARK: Operations

    /// Runs one statement in autocommit mode. `idempotent` statements are retried once on a new
    /// connection when the connection breaks under them.
    func execute(_ statement: PQStatement, _ values: [String?], idempotent: Bool) throws(PostgresError) -> PQRows {
        var retried = false
        while true {
            do {
                return try query(statement, values)
            } catch  where error.breaksConnection || !isConnected {
                drop()
                if idempotent && !retried {
                    retried = true
                    logger.info("retrying after a broken connection", metadata: ["db.statement": "\(statement.name)"])
                    continue
                }
                throw Self.lost(error, statement: statement.name)
            }
        }
    }

    /// Runs `body` inside `BEGIN … COMMIT`; any error rolls back. `idempotent` transactions are run
    /// again once on a new connection when the connection breaks under them.
    func transaction<T: Sendable>(
        _ name: String, idempotent: Bool, _ body: @Sendable (isolated PQConnection) throws -> T
    ) throws -> T {
        precondition(!inTransaction, "transactions do not nest")
        var retried = false
        while true {
            do {
                try command("BEGIN", statement: name)
                inTransaction = true
                let value = try body(self)
                inTransaction = false
                try command("COMMIT", statement: name)
                return value
            } catch {
                inTransaction = false
                let postgresError = error as? PostgresError
                if postgresError?.breaksConnection == true || !isConnected {
                    drop()
                    if idempotent && !retried {
                        retried = true
                        logger.info("retrying after a broken connection", metadata: ["db.statement": "\(name)"])
                        continue
                    }
                    throw Self.lost(
                        postgresError
                            ?? PostgresError(kind: .connection, statement: name, message: "connection lost"),
                        statement: name)
                }
                if let handle, PQtransactionStatus(handle) != PQTRANS_IDLE {
                    try? command("ROLLBACK", statement: name)
                }
                // A deadlock or serialization failure aborted the whole transaction: an idempotent
                // one can simply run again.
                if idempotent && !retried, let sqlState = postgresError?.sqlState,
                    ["40P01", "40001"].contains(sqlState)
                {
                    retried = true
                    continue
                }
                throw error
            }
        }
    }

    /// Runs a prepared statement with text parameters (`nil` is SQL NULL).
    func query(_ statement: PQStatement, _ values: [String?]) throws(PostgresError) -> PQRows {
        let connection = try connection(for: statement.name)
        try prepare(statement, on: connection)
        let result = Self.withCStrings(values) { pointers in
            PQexecPrepared(connection, statement.name, Int32(values.count), pointers, nil, nil, 0)
        }
        defer { PQclear(result) }
        try check(result, connection, statement: statement.name)
        return PQRows(result!)
    }

    /// Runs one prepared statement per parameter list in libpq's pipeline mode, each in its own
    /// implicit transaction (a sync after each): every statement of a chunk is sent before any
    /// result is read, so a chunk costs one round trip instead of one per statement, while each
    /// statement still commits on its own. Returns the rows each statement touched, in order.
    ///
    /// Not retried on a broken connection; the caller decides (statements may have committed).
    func pipelined(
        _ statement: PQStatement, _ valueLists: [[String?]], chunk: Int = 500
    ) throws(PostgresError) -> [Int] {
        precondition(!inTransaction, "a pipeline of autocommit statements cannot run inside a transaction")
        let connection = try connection(for: statement.name)
        try prepare(statement, on: connection)
        guard PQenterPipelineMode(connection) == 1 else { throw failure(connection, statement: statement.name) }
        var affected: [Int] = []
        affected.reserveCapacity(valueLists.count)
        do throws(PostgresError) {
            for start in stride(from: 0, to: valueLists.count, by: chunk) {
                let lists = valueLists[start..<min(start + chunk, valueLists.count)]
                for values in lists {
                    let sent = Self.withCStrings(values) { pointers in
                        PQsendQueryPrepared(connection, statement.name, Int32(values.count), pointers, nil, nil, 0)
                    }
                    guard sent == 1, PQpipelineSync(connection) == 1 else {
                        throw failure(connection, statement: statement.name)
                    }
                }
                // Per statement: its result, a null, then the sync's own result (no null after it).
                var firstError: PostgresError?
                var syncs = 0
                var nulls = 0
                while syncs < lists.count {
                    guard let result = PQgetResult(connection) else {
                        nulls += 1
                        if nulls > 1 || PQstatus(connection) != CONNECTION_OK {
                            throw failure(connection, statement: statement.name)
                        }
                        continue
                    }
                    nulls = 0
                    defer { PQclear(result) }
                    switch PQresultStatus(result) {
                    case PGRES_PIPELINE_SYNC: syncs += 1
                    case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
                        affected.append(Int(String(cString: PQcmdTuples(result))) ?? 0)
                    default:
                        do { try check(result, connection, statement: statement.name) } catch {
                            if firstError == nil { firstError = error }
                        }
                        affected.append(0)
                    }
                }
                if let firstError { throw firstError }
            }
        } catch {
            if PQstatus(connection) == CONNECTION_OK, PQexitPipelineMode(connection) == 1 { throw error }
            drop()
            throw error
        }
        guard PQexitPipelineMode(connection) == 1 else {
            let error = failure(connection, statement: statement.name)
            drop()
            throw error
        }
        return affected
    }

    /// Runs constant SQL text that takes no parameters, possibly several statements (migrations,
    /// `BEGIN`). Never pass anything built from input here.
    func script(_ sql: StaticString, statement: String) throws(PostgresError) {
        try command(String(describing: sql), statement: statement)
    }

    /// Runs one statement that cannot take bind parameters (`CREATE DATABASE`). Only for text the
    /// caller has checked character by character (``DatabaseAdministration``).
    func unparameterized(_ sql: String, statement: String) throws(PostgresError) {
        try command(sql, statement: statement)
    }

    /// Starts `COPY … FROM STDIN` (text format) inside the current transaction.
    func beginCopy(_ statement: PQStatement) throws(PostgresError) {
        let connection = try connection(for: statement.name)
        let result = PQexec(connection, statement.sql)
        defer { PQclear(result) }
        try check(result, connection, statement: statement.name, expecting: PGRES_COPY_IN)
    }

    /// Sends rows of COPY text data.
    func sendCopyData(_ bytes: [UInt8], statement: String) throws(PostgresError) {
        let connection = try connection(for: statement)
        let sent = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { PQputCopyData(connection, $0.baseAddress, Int32($0.count)) }
        }
        guard sent == 1 else { throw failure(connection, statement: statement) }
    }

    /// Ends the COPY: commits its rows to the transaction, or aborts it with `abortReason`.
    func endCopy(statement: String, abortReason: String? = nil) throws(PostgresError) {
        let connection = try connection(for: statement)
        guard PQputCopyEnd(connection, abortReason) == 1 else { throw failure(connection, statement: statement) }
        var firstError: PostgresError?
        while let result = PQgetResult(connection) {
            defer { PQclear(result) }
            if abortReason == nil, firstError == nil {
                do { try check(result, connection, statement: statement) } catch { firstError = error }
            }
        }
        if let firstError { throw firstError }
    }

    // MARK: Connection

    private func connection(for statement: String) throws(PostgresError) -> OpaquePointer {
        if let handle {
            if PQstatus(handle) == CONNECTION_OK { return handle }
            drop()
        }
        if inTransaction {
            throw PostgresError(kind: .connection, statement: statement, message: "connection lost in a transaction")
        }
        var backoff = backoffPolicy
        while true {
            let attempt = Self.withCStrings(parameters.map(\.keyword)) { keywords in
                Self.withCStrings(parameters.map(\.value)) { values in PQconnectdbParams(keywords, values, 0) }
            }
            if let attempt, PQstatus(attempt) == CONNECTION_OK {
                // libpq prints notices to stderr by default; the repository has no use for them.
                PQsetNoticeProcessor(attempt, { _, _ in }, nil)
                handle = attempt
                prepared.removeAll()
                return attempt
            }
            let message = attempt.map { Self.trimmed(PQerrorMessage($0)) } ?? "out of memory"
            PQfinish(attempt)
            guard let delay = backoff.nextDelay() else {
                throw PostgresError(
                    kind: .connection, statement: statement, message: "cannot connect to \(label): \(message)")
            }
            logger.debug(
                "cannot connect, retrying", metadata: ["db.server": "\(label)", "db.error": "\(message)"])
            Thread.sleep(
                forTimeInterval: Double(delay.components.attoseconds) / 1e18 + Double(delay.components.seconds))
        }
    }

    /// Prepares `statement` under its name once per connection.
    private func prepare(_ statement: PQStatement, on connection: OpaquePointer) throws(PostgresError) {
        guard !prepared.contains(statement.name) else { return }
        let result = PQprepare(connection, statement.name, statement.sql, 0, nil)
        defer { PQclear(result) }
        try check(result, connection, statement: statement.name)
        prepared.insert(statement.name)
    }

    private func drop() {
        if let handle { PQfinish(handle) }
        handle = nil
        prepared.removeAll()
    }

    private func command(_ sql: String, statement: String) throws(PostgresError) {
        let connection = try connection(for: statement)
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        try check(result, connection, statement: statement)
    }

    private func check(
        _ result: OpaquePointer?, _ connection: OpaquePointer, statement: String,
        expecting expected: ExecStatusType? = nil
    ) throws(PostgresError) {
        guard let result else { throw failure(connection, statement: statement) }
        let status = PQresultStatus(result)
        if let expected {
            if status == expected { return }
        } else if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK {
            return
        }
        let sqlState = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
        let message = primary ?? Self.trimmed(PQresultErrorMessage(result))
        if PQstatus(connection) != CONNECTION_OK {
            throw PostgresError(kind: .connection, sqlState: sqlState, statement: statement, message: message)
        }
        if status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR {
            throw PostgresError(kind: .server, sqlState: sqlState, statement: statement, message: message)
        }
        throw PostgresError(
            kind: .unexpectedResult, statement: statement,
            message: "unexpected result \(String(cString: PQresStatus(status)))")
    }

    private func failure(_ connection: OpaquePointer, statement: String) -> PostgresError {
        let kind: PostgresError.Kind = PQstatus(connection) == CONNECTION_OK ? .server : .connection
        return PostgresError(kind: kind, statement: statement, message: Self.trimmed(PQerrorMessage(connection)))
    }

    private static func lost(_ error: PostgresError, statement: String) -> PostgresError {
        var lost = error
        lost.kind = .connection
        lost.message = "connection lost, the operation may not have completed: \(error.message)"
        return lost
    }

    private static func trimmed(_ text: UnsafePointer<CChar>?) -> String {
        guard let text else { return "unknown error" }
        return String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Calls `body` with a C array of C strings (`nil` stays NULL) that lives for the call.
    private static func withCStrings<Result>(
        _ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> Result
    ) -> Result {
        let pointers = strings.map { $0.map { strdup($0) } ?? nil }
        defer { pointers.forEach { free($0) } }
        return body(pointers.map { UnsafePointer($0) } + [nil])
    }
}
