import Foundation
import Testing

/// Scratch files and tools for the TLS tests (the broker over amqps, https sources).
enum TLSScratch {
    static func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "squall-tls-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A fresh self-signed CA (certificate only; its key is thrown away) made with the `openssl` CLI.
    static func makeCA(in folder: String) async throws -> String {
        let certificate = "\(folder)/foreign-ca.pem"
        let result = try await offPool {
            try run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=Not the Squall CA",
                    "-keyout", "\(folder)/foreign-ca.key", "-out", certificate,
                ])
        }
        try #require(result.status == 0, "openssl: \(result.output)")
        return certificate
    }

    /// A self-signed certificate for 127.0.0.1 and localhost, and its key, for a TLS fixture server.
    static func makeServerCertificate(in folder: String) async throws -> (certificate: String, key: String) {
        let files = (certificate: "\(folder)/server.pem", key: "\(folder)/server.key")
        let result = try await offPool {
            try run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", files.key, "-out",
                    files.certificate,
                ])
        }
        try #require(result.status == 0, "openssl: \(result.output)")
        return files
    }

    /// Runs blocking work (a child process to its end) on a GCD thread, off the cooperative pool.
    static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Runs `executable` to its end; returns its exit status and its standard output and error together.
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}
