/// Why a database operation failed, with what an operator needs to act on it.
///
/// It names the statement (a constant such as `claim`) and carries PostgreSQL's SQLSTATE and
/// primary message, never the parameter values, which can hold URLs with credentials.
public struct PostgresError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Where the failure happened.
    public enum Kind: Sendable, Equatable {
        /// The server could not be reached, or the connection broke during the operation.
        case connection
        /// The server ran the statement and refused it (constraint, syntax, serialization…).
        case server
        /// The server answered something this code did not expect (a bug, or a mismatched schema).
        case unexpectedResult
    }

    public var kind: Kind
    /// The five-character SQLSTATE, when the server sent one.
    public var sqlState: String?
    /// The name of the statement that failed (`claim`, `submit.copy`, `connect`…).
    public var statement: String
    /// The server's primary message or libpq's error text.
    public var message: String

    public init(kind: Kind, sqlState: String? = nil, statement: String, message: String) {
        self.kind = kind
        self.sqlState = sqlState
        self.statement = statement
        self.message = message
    }

    /// Whether the statement named a table, column or function the database does not have: the
    /// schema is older than the statement (`squallctl migrate` has not run), or it is not Squall's.
    public var isMissingSchemaObject: Bool {
        [Self.undefinedTable, "42703", "42883"].contains(sqlState)
    }

    /// SQLSTATE `undefined_table`.
    static let undefinedTable = "42P01"

    /// Whether trying the same operation again later can succeed: a lost connection, a server
    /// shutting down, a serialization failure or a deadlock. A constraint violation cannot.
    public var isRetryable: Bool {
        if kind == .connection { return true }
        guard let sqlState else { return false }
        return sqlState.hasPrefix("08") || ["40001", "40P01", "55P03", "57P01", "57P02", "57P03"].contains(sqlState)
    }

    /// Whether the error means this connection is unusable: it must be dropped and made anew.
    var breaksConnection: Bool {
        if kind == .connection { return true }
        guard let sqlState else { return false }
        return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(sqlState)
    }

    public var description: String {
        let state = sqlState.map { " (SQLSTATE \($0))" } ?? ""
        return "postgres \(statement): \(message)\(state)"
    }
}
