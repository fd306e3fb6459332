import Foundation

/// `Tests/Fixtures/source_server.py` as a child process: generated objects at `/gen/SIZE/SEED`,
/// slowed with `?slow_bps=N`, 404 for unknown paths (Tests/Fixtures/README.md).
final class SourceServer: @unchecked Sendable {
    let port: Int
    private let process = Process()
    private let lifeline = Pipe()

    init() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/source_server.py").path
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", script, "--port", "0", "--exit-on-stdin-eof"]
        process.standardOutput = output
        process.standardInput = lifeline
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let data = output.fileHandleForReading.availableData
            if data.isEmpty { break }
            line.append(data)
        }
        let text = String(decoding: line, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        guard text.hasPrefix("listening on "), let port = Int(text.dropFirst("listening on ".count)) else {
            process.terminate()
            throw NotStarted(printed: text)
        }
        self.port = port
    }

    struct NotStarted: Error, CustomStringConvertible {
        var printed: String
        var description: String { "source_server.py did not print its port (printed \(printed.debugDescription))" }
    }

    /// `http://127.0.0.1:PORT/gen/SIZE/SEED`, sent at about `bytesPerSecond` when given.
    func generated(size: Int, seed: Int, bytesPerSecond: Int? = nil) -> String {
        "http://127.0.0.1:\(port)/gen/\(size)/\(seed)" + (bytesPerSecond.map { "?slow_bps=\($0)" } ?? "")
    }

    func missing(_ name: String) -> String { "http://127.0.0.1:\(port)/missing/\(name)" }

    func stop() {
        if process.isRunning { process.terminate() }
        try? lifeline.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit { stop() }
}
