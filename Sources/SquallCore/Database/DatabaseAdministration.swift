import Logging

/// Creates and drops whole databases: each test suite and benchmark runs in its own database on
/// the shared server, so runs in parallel never see each other's rows.
public enum DatabaseAdministration {
    /// Creates database `name` on the server `server` points at (its own database is only the
    /// door in) and returns the URL of the new database.
    ///
    /// `CREATE DATABASE` takes no bind parameters, so the name is checked against
    /// `[a-z_][a-z0-9_]{0,62}` before it is put into the statement: nothing else can get in.
    public static func createDatabase(named name: String, on server: DatabaseURL) async throws -> DatabaseURL {
        let statement = "CREATE DATABASE \(try identifier(name))"
        let connection = PQConnection(url: server, logger: Logger(label: "squall.administration"))
        try await connection.unparameterized(statement, statement: "create_database")
        await connection.close()
        var url = server
        url.database = name
        return url
    }

    /// Drops database `name`, ending any session still connected to it.
    public static func dropDatabase(named name: String, on server: DatabaseURL) async throws {
        let statement = "DROP DATABASE IF EXISTS \(try identifier(name)) WITH (FORCE)"
        let connection = PQConnection(url: server, logger: Logger(label: "squall.administration"))
        try await connection.unparameterized(statement, statement: "drop_database")
        await connection.close()
    }

    /// A random database name with `prefix`, for one test suite or benchmark run.
    public static func randomName(prefix: String = "squall_test_") -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return prefix + String((0..<12).map { _ in letters.randomElement()! })
    }

    private static func identifier(_ name: String) throws -> String {
        let bytes = Array(name.utf8)
        func lower(_ byte: UInt8) -> Bool { (97...122).contains(byte) || byte == UInt8(ascii: "_") }
        guard (1...63).contains(bytes.count), lower(bytes[0]),
            bytes.allSatisfy({ lower($0) || (48...57).contains($0) })
        else {
            throw PostgresError(
                kind: .server, statement: "database_name",
                message: "database name \"\(name)\" is not [a-z_][a-z0-9_]{0,62}")
        }
        return name
    }
}
