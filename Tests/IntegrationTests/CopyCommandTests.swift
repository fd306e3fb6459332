import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

private let MiB = TransferRig.mebibyte

/// `squallctl cp` as an operator runs it: a child process, its exit status and output.
@Suite("squallctl cp: arguments, exit statuses, summary")
struct CopyCommandTests {
    @Test(
        "bad arguments are refused with exit 64 and a message naming the input, before anything runs",
        arguments: [
            (["ftp://host/file", "s3://b/k"], "SOURCE: ftp://host/file: scheme ftp is not allowed"),
            (["http://h/x", "gopher://h/y"], "DEST: gopher://h/y: scheme gopher is not allowed"),
            (["http://h/x", "s3://b/k", "--part-size", "8XB"], "--part-size: \"8XB\" is not a size"),
            (["http://h/x", "s3://b/k", "--part-size", "1M"], "--part-size: 1M is outside S3's part sizes"),
            (["http://h/x", "s3://b/k", "--sha256", "abc"], "--sha256: \"abc\" is not a SHA-256"),
            (["/nonexistent/squall-\(UInt32.random(in: 0...UInt32.max))", "s3://b/k"], ": no such file"),
            (["http://h/x", "s3://b/k", "--s3-endpoint", "ftp://x"], "--s3-endpoint: scheme \"ftp\""),
        ])
    func badArguments(arguments: [String], message: String) async throws {
        let (status, output) = try await SquallCtlProcess.run(["cp"] + arguments)
        #expect(status == 64, "\(output)")
        #expect(output.contains(message), "\(output)")
    }

    @Test("--help documents every exit status")
    func helpDocumentsExitStatuses() async throws {
        let (status, output) = try await SquallCtlProcess.run(["cp", "--help"])
        #expect(status == 0)
        let flattened = output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for code in CopyExitStatus.allCases {
            #expect(flattened.contains("\(code.rawValue) "), "exit status \(code.rawValue) missing from --help")
        }
        for flag in ["--part-size", "--concurrency", "--sha256", "--max-attempts"] {
            #expect(output.contains(flag))
        }
    }

    @Test(
        "a copy exits 0 with a one-line summary, a second one is skipped, a 404 exits 1 naming the error",
        .needs("SQUALL_S3_ENDPOINT"))
    func summaryAndStatuses() async throws {
        try await TransferRig.with("ctl") { rig in
            let size = 6 * MiB + 1
            let url = rig.source.url(size: size, seed: 60).absoluteString
            let expected = try await rig.source.sha256(size: size, seed: 60)
            let destination = "s3://\(rig.bucket.name)/ctl.bin"

            let first = try await SquallCtlProcess.run(["cp", url, destination, "--part-size", "5M"])
            #expect(first.status == 0, "\(first.output)")
            #expect(first.output.contains("done: \(size) bytes (6.0 MiB) in "), "\(first.output)")
            #expect(first.output.contains("sha256 \(expected)"), "\(first.output)")
            try await rig.expectStored("ctl.bin", size: size, seed: 60)

            let second = try await SquallCtlProcess.run(["cp", url, destination])
            #expect(second.status == 0, "\(second.output)")
            #expect(second.output.contains("skipped: \(size) bytes"), "\(second.output)")
            #expect(second.output.contains("fetched 0 bytes"), "\(second.output)")

            let missing = rig.source.url(size: size, seed: 61, parameters: ["status": "404"]).absoluteString
            let third = try await SquallCtlProcess.run(["cp", missing, "s3://\(rig.bucket.name)/missing.bin"])
            #expect(third.status == 1, "\(third.output)")
            #expect(third.output.contains("squallctl cp: failed after "), "\(third.output)")
            #expect(third.output.contains("404"), "\(third.output)")

            let wrongHash = String(repeating: "0", count: 64)
            let fourth = try await SquallCtlProcess.run([
                "cp", url, "s3://\(rig.bucket.name)/bad.bin", "--sha256", wrongHash,
            ])
            #expect(fourth.status == 65, "\(fourth.output)")
        }
    }
}

/// How `squallctl cp` shows progress: a bar redrawn in place on a terminal, plain lines in a pipe.
@Suite("squallctl cp: progress output", .needs("SQUALL_S3_ENDPOINT"), .timeLimit(.minutes(3)))
struct CopyCommandProgressTests {
    @Test("in a pipe, progress is plain periodic lines on standard error, without carriage returns")
    func plainLinesInAPipe() async throws {
        try await TransferRig.with("plain") { rig in
            let url = rig.source.url(size: 12 * MiB, seed: 62, parameters: ["slow_bps": "\(4 * MiB)"]).absoluteString
            let (status, output) = try await SquallCtlProcess.run([
                "cp", url, "s3://\(rig.bucket.name)/plain.bin", "--progress-interval", "0.5",
            ])
            #expect(status == 0, "\(output)")
            let lines = output.split(separator: "\n").filter { $0.hasPrefix("copied ") }
            #expect(lines.count >= 2, "\(output)")
            #expect(lines.allSatisfy { $0.contains("/12.0 MiB (") && $0.contains("elapsed") }, "\(output)")
            #expect(!output.contains("\r"))
        }
    }

    @Test("on a terminal, progress is one bar redrawn in place, and the summary starts on its own line")
    func barOnATerminal() async throws {
        try await TransferRig.with("tty") { rig in
            let url = rig.source.url(size: 12 * MiB, seed: 63, parameters: ["slow_bps": "\(4 * MiB)"]).absoluteString
            let command = try [SquallCtlProcess.executable().path, "cp", url, "s3://\(rig.bucket.name)/tty.bin"]
                .map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            // script(1) gives the child a pseudo-terminal and copies what it writes.
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
            process.arguments = ["-q", "-e", "-c", command, "/dev/null"]
            process.environment = SquallCtlProcess.environment
            let child = RunningProcess(process: process)
            try process.run()
            let status = try await child.waitForExit(timeout: .seconds(60))
            let output = child.outputToEnd()
            #expect(status == 0, "\(output)")
            #expect(output.contains("\r["), "no bar redrawn with a carriage return: \(output.debugDescription)")
            #expect(output.contains("\u{1B}[K"))
            #expect(output.contains("%  "))
            #expect(output.contains("\ndone: ") || output.contains("\r\ndone: "), "\(output.debugDescription)")
        }
    }
}

/// Issue #5 point 5: a transfer killed with SIGKILL halfway resumes from the parts already uploaded.
@Suite("squallctl cp: resume after the process is killed", .needs("SQUALL_S3_ENDPOINT"), .timeLimit(.minutes(5)))
struct CopyCommandResumeTests {
    /// Starts `squallctl cp` on a slow source, kills it once its resume record says `killAfterParts`
    /// parts are stored, and returns the upload's parts at that moment.
    ///
    /// The record, not S3's part list, decides the moment: the record is written after the parts it
    /// names, and on a loaded machine it can trail them by a few parts. A kill between the two loses
    /// only those parts' progress, which is what the engine promises; the test asks about the parts
    /// recorded.
    static func killHalfway(
        _ rig: TransferRig, url: String, key: String, killAfterParts: Int
    ) async throws -> [Int] {
        let child = try SquallCtlProcess.start([
            "cp", url, "s3://\(rig.bucket.name)/\(key)", "--part-size", "5M", "--concurrency", "4",
            "--progress-interval", "0.2",
        ])
        let deadline = ContinuousClock.now + .seconds(90)
        var recorded = 0
        while ContinuousClock.now < deadline, child.process.isRunning {
            recorded = try await rig.bucket.recordedParts(key) ?? 0
            if recorded >= killAfterParts { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        child.signal(SIGKILL)
        _ = try await child.waitForExit(timeout: .seconds(10))
        try #require(
            recorded >= killAfterParts,
            "squallctl did not record \(killAfterParts) parts before finishing or timing out:\n\(child.outputToEnd())")
        let upload = try #require(try await rig.bucket.incompleteUploads().first { $0.key == key })
        return try await rig.bucket.parts(key, uploadID: upload.uploadID)
    }

    @Test("killed at half of an 80 MiB upload, a second run fetches less than 60 % again and stores it exactly")
    func resumesAfterKill() async throws {
        try await TransferRig.with("killed") { rig in
            let size = 80 * MiB  // 16 parts of 5 MiB
            let url = rig.source.url(size: size, seed: 70, parameters: ["slow_bps": "\(12 * MiB)"]).absoluteString
            let partsAtKill = try await Self.killHalfway(rig, url: url, key: "big.bin", killAfterParts: 8)
            #expect(partsAtKill.count < 16)
            try await rig.source.reset()

            let second = try await SquallCtlProcess.run([
                "cp", url, "s3://\(rig.bucket.name)/big.bin", "--part-size", "5M", "--concurrency", "4",
            ])
            #expect(second.status == 0, "\(second.output)")
            let fetched = try await rig.source.stats().bytes("/gen/\(size)/70")
            #expect(
                Double(fetched) < 0.6 * Double(size),
                "the second run fetched \(fetched) of \(size) bytes (\(fetched * 100 / size) %) after \(partsAtKill.count) parts were stored; its output:\n\(second.output)"
            )
            if let reported = SquallCtlProcess.fetchedBytes(in: second.output) {
                #expect(Double(reported) < 0.6 * Double(size), "report says fetched \(reported)")
            }
            try await rig.expectStored("big.bin", size: size, seed: 70)
            #expect(try await rig.bucket.incompleteUploads().isEmpty)
        }
    }

    @Test("when the source changed after the kill, the stale upload is dropped and the new content stored")
    func changedSourceStartsAfresh() async throws {
        try await TransferRig.with("changed") { rig in
            let size = 30 * MiB  // 6 parts
            let url = rig.source.url(size: size, seed: 71, parameters: ["slow_bps": "\(8 * MiB)"]).absoluteString
            _ = try await Self.killHalfway(rig, url: url, key: "changed.bin", killAfterParts: 3)
            try await rig.source.replace(path: "/gen/\(size)/71", seed: 72)

            let second = try await SquallCtlProcess.run([
                "cp", url, "s3://\(rig.bucket.name)/changed.bin", "--part-size", "5M",
            ])
            #expect(second.status == 0, "\(second.output)")
            try await rig.expectStored("changed.bin", size: size, seed: 72)
            #expect(try await rig.bucket.incompleteUploads().isEmpty)
        }
    }
}

/// The `squallctl` this package built, run as a child with the emulator's settings.
enum SquallCtlProcess {
    static func executable() throws -> URL {
        var folder = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = folder.appendingPathComponent("squallctl")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            folder.deleteLastPathComponent()
        }
        throw FixtureError("squallctl is not built: run `swift build` before `swift test`")
    }

    /// The test's own S3 settings (never its database or broker), and loopback sources allowed.
    static var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("SQUALL_") && !$0.key.hasPrefix("AWS_")
        }
        for (name, value) in ServiceEnvironment.environment
        where name.hasPrefix("SQUALL_S3_") || name.hasPrefix("AWS_") {
            environment[name] = value
        }
        environment["SQUALL_S3_PATH_STYLE"] = "1"
        environment["SQUALL_ALLOW_PRIVATE_SOURCES"] = "1"
        return environment
    }

    static func start(_ arguments: [String]) throws -> RunningProcess {
        let process = Process()
        process.executableURL = try executable()
        process.arguments = arguments
        process.environment = environment
        let child = RunningProcess(process: process)
        try process.run()
        return child
    }

    /// Runs to the end (killed after `timeout`); returns the exit status and standard output and error together.
    static func run(
        _ arguments: [String], timeout: Duration = .seconds(120)
    ) async throws -> (status: Int32, output: String) {
        let child = try start(arguments)
        let status = try await child.waitForExit(timeout: timeout)
        return (status ?? -1, child.outputToEnd())
    }

    /// The `fetched N bytes` of a summary line.
    static func fetchedBytes(in output: String) -> Int? {
        guard let range = output.range(of: "fetched ") else { return nil }
        return Int(output[range.upperBound...].prefix { $0.isNumber })
    }
}
