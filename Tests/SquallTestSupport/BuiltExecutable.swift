// Test support only: release builds (static Swift runtime, no Testing module) compile this file empty.
#if canImport(Testing)
    import Foundation
    import Testing

    #if canImport(Glibc)
        import Glibc
    #endif

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

        /// Any other executable (a script of the checkout's, a system tool), run the same way.
        init(url: URL) {
            self.url = url
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

    /// A child process whose combined output (standard output and error, one pipe) is collected as it
    /// arrives, by a thread of its own that reads the pipe until end of file. Standard input is /dev/null.
    ///
    /// Why a thread and not `readabilityHandler`: a handler that had already taken the last chunk off the
    /// pipe, but not yet stored it, when the handler was removed lost that chunk, and a short-lived
    /// command's whole output with it (a CI run saw `squallctl reset-failed` print nothing).
    final class RunningProcess: @unchecked Sendable {
        let process: Process
        private let pipe = Pipe()
        private let collector = OutputCollector()

        init(process: Process) {
            self.process = process
            process.standardOutput = pipe
            process.standardError = pipe
            process.standardInput = FileHandle.nullDevice
            collector.read(pipe.fileHandleForReading)
        }

        /// What the process has written so far.
        var output: String { collector.text }

        /// Everything the process wrote, once it has exited: waits (up to 10 s) for the pipe's end of file,
        /// which comes when the process and any child still holding the pipe have exited.
        func outputToEnd() -> String {
            _ = collector.finished.wait(timeout: .now() + 10)
            return collector.text
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
                    kill(process.processIdentifier, SIGKILL)
                    return nil
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            return process.terminationStatus
        }

        deinit {
            if process.isRunning { process.terminate() }
        }
    }

    /// Reads one pipe to its end on a thread of its own. Not owned by the thread's closure through
    /// ``RunningProcess``, so a process that is never waited for is still terminated by `deinit`.
    final class OutputCollector: @unchecked Sendable {
        private let lock = NSLock()
        private var collected = Data()
        /// Left when the pipe reached end of file.
        let finished = DispatchGroup()

        var text: String {
            lock.lock()
            defer { lock.unlock() }
            return String(decoding: collected, as: UTF8.self)
        }

        func read(_ handle: FileHandle) {
            finished.enter()
            let thread = Thread { [self] in
                let descriptor = handle.fileDescriptor
                var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                while true {
                    let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
                    if count > 0 {
                        lock.lock()
                        collected.append(contentsOf: buffer[0..<count])
                        lock.unlock()
                    } else if count < 0 && errno == EINTR {
                        continue
                    } else {
                        break
                    }
                }
                finished.leave()
            }
            thread.name = "test child output"
            thread.start()
        }
    }
#endif
