// Test support only: release builds (static Swift runtime, no Testing module) compile this file empty.
#if canImport(Testing)
    import Foundation
    import Testing

    /// An executable from this package's build folder, run as a child process.
    struct BuiltExecutable {
        let url: URL

        /// Finds `name` beside the test bundle (`.build/debug/`), where `swift build` puts it.
        init(_ name: String) throws {
            var folder = Bundle.main.bundleURL
            for _ in 0..<4 {
                let candidate = folder.appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: candidate.path) {
                    url = candidate
                    return
                }
                folder.deleteLastPathComponent()
            }
            throw NotBuilt(name: name)
        }

        struct NotBuilt: Error, CustomStringConvertible {
            var name: String
            var description: String { "\(name) is not built: run `swift build` before `swift test`" }
        }

        /// Runs to completion and returns the exit status and standard output and error together.
        func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
            let process = try start(arguments, environment: environment)
            process.process.waitUntilExit()
            return (process.process.terminationStatus, process.outputToEnd())
        }

        func start(_ arguments: [String] = [], environment: [String: String] = [:]) throws -> RunningProcess {
            let process = Process()
            process.executableURL = url
            process.arguments = arguments
            var merged = ProcessInfo.processInfo.environment.filter {
                !$0.key.hasPrefix("SQUALL_") && !$0.key.hasPrefix("AWS_")
            }
            merged.merge(environment) { _, new in new }
            process.environment = merged
            let running = RunningProcess(process: process)
            try process.run()
            return running
        }
    }

    /// A child process whose combined output is collected as it arrives.
    final class RunningProcess: @unchecked Sendable {
        let process: Process
        private let pipe = Pipe()
        private let lock = NSLock()
        private var collected = Data()

        init(process: Process) {
            self.process = process
            process.standardOutput = pipe
            process.standardError = pipe
            pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
                let data = handle.availableData
                guard let self, !data.isEmpty else { return }
                self.lock.lock()
                self.collected.append(data)
                self.lock.unlock()
            }
        }

        var output: String {
            lock.lock()
            defer { lock.unlock() }
            return String(decoding: collected, as: UTF8.self)
        }

        /// Everything the process wrote, once it has exited: the readability handler may not have seen the
        /// last chunk yet, so stop it and read the pipe to its end.
        func outputToEnd() -> String {
            pipe.fileHandleForReading.readabilityHandler = nil
            let rest = pipe.fileHandleForReading.readDataToEndOfFile()
            lock.lock()
            defer { lock.unlock() }
            collected.append(rest)
            return String(decoding: collected, as: UTF8.self)
        }

        func signal(_ signal: Int32) {
            kill(process.processIdentifier, signal)
        }

        func waitForOutput(containing text: String, timeout: Duration) async throws -> String {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let current = output
                if current.contains(text) { return current }
                try await Task.sleep(for: .milliseconds(20))
            }
            Issue.record("no \"\(text)\" within \(timeout); output so far:\n\(output)")
            throw CancellationError()
        }

        /// The exit status, or nil (and the process killed) when it outlives `timeout`.
        func waitForExit(timeout: Duration) async throws -> Int32? {
            let deadline = ContinuousClock.now + timeout
            while process.isRunning {
                if ContinuousClock.now >= deadline {
                    process.terminate()
                    return nil
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            return process.terminationStatus
        }

        deinit {
            pipe.fileHandleForReading.readabilityHandler = nil
            if process.isRunning { process.terminate() }
        }
    }
#endif
