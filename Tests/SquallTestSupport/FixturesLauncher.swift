// Test support only: release builds (static Swift runtime, no Testing module) compile this file empty.
#if canImport(Testing)
    import Foundation

    #if canImport(FoundationNetworking)
        import FoundationNetworking
    #endif

    /// One of the Python fixtures in `Tests/Fixtures/` running as a child process for the length of a test.
    ///
    /// The fixture prints `listening on PORT` first, so tests get a free port without races. Its standard
    /// input is a lifeline: when this process dies without calling ``stop()``, the pipe closes and the
    /// fixture exits instead of lingering. Its standard error goes to a log file shown when it fails to start.
    final class FixtureProcess: @unchecked Sendable {
        /// The fixture scripts, by file name.
        enum Script: String, Sendable {
            case sourceServer = "source_server.py"
            case s3FaultProxy = "s3_fault_proxy.py"
        }

        let script: Script
        /// The port the fixture listens on, on 127.0.0.1.
        let port: Int
        /// `http://127.0.0.1:PORT`, without a trailing slash.
        let baseURL: URL

        private let lock = NSLock()
        private let process: Process
        private let lifeline: Pipe
        private let logFile: URL
        private var stopped = false

        /// A session that never caches: the fixtures' answers carry validators, and a cached answer would hide
        /// a request from the fixture's statistics.
        static let session: URLSession = {
            let configuration = URLSessionConfiguration.ephemeral
            configuration.urlCache = nil
            configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
            return URLSession(configuration: configuration)
        }()

        /// The folder holding the fixture scripts, found from this source file's path.
        static let fixturesDirectory = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // SquallTestSupport
            .deletingLastPathComponent()  // Tests
            .appendingPathComponent("Fixtures")

        /// Starts `script` with `python3` from `PATH` and waits (at most `startupTimeout`) for its port.
        init(
            _ script: Script, arguments: [String] = [], environment extra: [String: String] = [:],
            startupTimeout: TimeInterval = 20
        ) throws {
            self.script = script
            let scriptPath = Self.fixturesDirectory.appendingPathComponent(script.rawValue).path
            logFile = FileManager.default.temporaryDirectory
                .appendingPathComponent("squall-fixture-\(script.rawValue)-\(UUID().uuidString).log")
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)

            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-u", scriptPath, "--port", "0", "--exit-on-stdin-eof"] + arguments
            if !extra.isEmpty {
                process.environment = ProcessInfo.processInfo.environment.merging(extra) { _, given in given }
            }
            let output = Pipe()
            lifeline = Pipe()
            process.standardOutput = output
            process.standardInput = lifeline
            process.standardError = try FileHandle(forWritingTo: logFile)
            try process.run()

            // A fixture that never prints its port is killed, which ends the read below with end-of-file.
            let process = self.process
            let deadline = DispatchWorkItem { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            DispatchQueue.global().asyncAfter(deadline: .now() + startupTimeout, execute: deadline)
            defer { deadline.cancel() }

            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let data = output.fileHandleForReading.availableData
                if data.isEmpty { break }
                line.append(data)
            }
            let text = String(decoding: line, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            guard text.hasPrefix("listening on "), let port = Int(text.dropFirst("listening on ".count)) else {
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
                let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
                try? FileManager.default.removeItem(at: logFile)
                throw FixtureError(
                    "\(script.rawValue) did not print `listening on PORT` (printed \(text.debugDescription)); stderr:\n\(log)"
                )
            }
            self.port = port
            baseURL = URL(string: "http://127.0.0.1:\(port)")!
        }

        deinit { stop() }

        /// Ends the fixture (SIGTERM) and waits for it; calling it again does nothing.
        func stop() {
            let alreadyStopped = lock.withLock {
                defer { stopped = true }
                return stopped
            }
            guard !alreadyStopped else { return }
            // A child spawned from a dispatch thread may inherit a mask blocking SIGTERM (the fixtures unblock
            // it first thing, but not before Python starts): SIGKILL after a grace period, never hang here.
            if process.isRunning { process.terminate() }
            let deadline = Date().addingTimeInterval(3)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            try? lifeline.fileHandleForWriting.close()
            try? FileManager.default.removeItem(at: logFile)
        }

        /// What the fixture wrote to standard error so far (errors, or every request with `--verbose`).
        func log() -> String {
            (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
        }

        /// Sends one request to the fixture and returns the status and body.
        func request(_ method: String, _ path: String, body: Data? = nil) async throws -> (status: Int, body: Data) {
            var request = URLRequest(url: baseURL.appendingPathComponent(path))
            request.httpMethod = method
            if let body {
                request.httpBody = body
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            }
            let (data, response) = try await Self.session.data(for: request)
            guard let http = response as? HTTPURLResponse else {
                throw FixtureError("\(method) \(path) to \(script.rawValue): not an HTTP response")
            }
            return (http.statusCode, data)
        }

        /// Sends a control request and decodes its JSON answer, failing on any status but 200.
        func control<Answer: Decodable>(
            _ method: String, _ path: String, body: Data? = nil, as type: Answer.Type = Answer.self
        ) async throws -> Answer {
            let (status, data) = try await request(method, path, body: body)
            guard status == 200 else {
                throw FixtureError(
                    "\(method) \(path) to \(script.rawValue) answered \(status): \(String(decoding: data, as: UTF8.self))"
                )
            }
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            return try decoder.decode(Answer.self, from: data)
        }
    }

    /// A fixture that did not start or answered a control request with an error.
    struct FixtureError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// An answer whose content does not matter, only that it was 200 and JSON.
    struct FixtureAcknowledgement: Decodable, Sendable {}

    // MARK: - The HTTP source

    /// `Tests/Fixtures/source_server.py`: generated objects with Range, validators and faults chosen by query
    /// parameters (see `Tests/Fixtures/README.md`).
    final class SourceServerFixture: Sendable {
        let process: FixtureProcess

        /// Whether it serves https (its control calls, below, then cannot be used).
        let servesTLS: Bool

        /// Starts a source server; `root` is served under `/static/<name>`; with `tls` (PEM files) it
        /// serves https.
        init(root: String? = nil, tls: (certificate: String, key: String)? = nil) throws {
            var arguments = root.map { ["--root", $0] } ?? []
            if let tls { arguments += ["--tls-cert", tls.certificate, "--tls-key", tls.key] }
            process = try FixtureProcess(.sourceServer, arguments: arguments)
            servesTLS = tls != nil
        }

        var baseURL: URL {
            servesTLS ? URL(string: "https://127.0.0.1:\(process.port)")! : process.baseURL
        }

        /// The URL of a generated object of `size` bytes, with fault or behaviour `parameters`
        /// (e.g. `["fail": "503", "times": "2"]`); `chunked` serves it without a Content-Length.
        func url(size: Int, seed: Int, chunked: Bool = false, parameters: KeyValuePairs<String, String> = [:]) -> URL {
            var components = URLComponents(url: baseURL, resolvingAgainstBaseURL: false)!
            components.path = "/\(chunked ? "chunked" : "gen")/\(size)/\(seed)"
            if parameters.count > 0 {
                components.queryItems = parameters.map { URLQueryItem(name: $0.key, value: $0.value) }
            }
            return components.url!
        }

        /// A URL answering 302 to `target` (e.g. `http://169.254.169.254/latest/meta-data/`).
        func redirectURL(to target: String, code: Int = 302) -> URL {
            var components = URLComponents(url: baseURL, resolvingAgainstBaseURL: false)!
            components.path = "/redirect"
            components.queryItems = [
                URLQueryItem(name: "to", value: target), URLQueryItem(name: "code", value: "\(code)"),
            ]
            return components.url!
        }

        /// The SHA-256 (hex) of the object `/gen/<size>/<seed>`, computed by the fixture.
        func sha256(size: Int, seed: Int) async throws -> String {
            struct Answer: Decodable { var sha256: String }
            return try await process.control("GET", "/_sha256/\(size)/\(seed)", as: Answer.self).sha256
        }

        /// Bytes served and requests seen since start or the last ``reset()``.
        func stats() async throws -> SourceStats {
            try await process.control("GET", "/_stats")
        }

        /// Zeroes the counters, the fault counters and the replacements.
        func reset() async throws {
            _ = try await process.control("POST", "/_reset", as: FixtureAcknowledgement.self)
        }

        /// From now on `path` (e.g. `/gen/20971520/7`) serves the content of `seed`, with new validators:
        /// the source changed under the same URL.
        func replace(path: String, seed: Int) async throws {
            let body = try JSONSerialization.data(withJSONObject: ["path": path, "seed": seed])
            _ = try await process.control("POST", "/_replace", body: body, as: FixtureAcknowledgement.self)
        }

        func stop() { process.stop() }
    }

    /// `GET /_stats` of the source server.
    struct SourceStats: Decodable, Sendable {
        struct Path: Decodable, Sendable {
            /// Body bytes sent for this path (partial bodies count what was sent).
            var bytes: Int
            var requests: Int
            /// Requests per method (`GET`, `HEAD`).
            var methods: [String: Int]
            /// Responses per status code ("200", "206", "503", …).
            var statuses: [String: Int]
            /// The `Range` headers received, in order (the first 200).
            var ranges: [String]
            /// Requests on which a fault fired.
            var faults: Int
        }
        /// Body bytes sent in total.
        var bytesSent: Int
        var requests: Int
        /// TCP connections accepted: fewer than requests means connections were reused.
        var connections: Int
        /// Per path without the query string, e.g. `/gen/20971520/7`.
        var paths: [String: Path]
    }

    // MARK: - The S3 fault proxy

    /// `Tests/Fixtures/s3_fault_proxy.py`: passes requests through to an S3 endpoint, failing the ones a
    /// test programs with ``program(fault:)``.
    final class S3FaultProxyFixture: Sendable {
        let process: FixtureProcess

        /// Starts a proxy in front of `upstream` (moto: `http://127.0.0.1:29000`). With `verifyingWith`,
        /// the proxy checks each request's SigV4 signature and date as S3 does (moto checks neither),
        /// and with `region` the credential's region too; it refuses what fails, as S3 would, and lists
        /// it in ``ProxyStats/signatureFailures``.
        init(upstream: URL, verifyingWith secretAccessKey: String? = nil, region: String? = nil) throws {
            var arguments = ["--upstream", upstream.absoluteString]
            if secretAccessKey != nil { arguments.append("--verify-sigv4") }
            if let region { arguments += ["--region", region] }
            process = try FixtureProcess(
                .s3FaultProxy, arguments: arguments,
                environment: secretAccessKey.map { ["AWS_SECRET_ACCESS_KEY": $0] } ?? [:])
        }

        /// The endpoint to give the engine instead of the emulator's.
        var baseURL: URL { process.baseURL }

        /// Adds a fault; faults are tried in the order they were added, the first that matches fires.
        func program(fault: ProxyFault) async throws {
            let body = try JSONEncoder().encode(fault)
            _ = try await process.control("POST", "/_faults", body: body, as: FixtureAcknowledgement.self)
        }

        /// Removes every fault.
        func clearFaults() async throws {
            _ = try await process.control("DELETE", "/_faults", as: FixtureAcknowledgement.self)
        }

        /// Requests and bytes per method since start or the last ``reset()``, and the programmed faults.
        func stats() async throws -> ProxyStats {
            try await process.control("GET", "/_stats")
        }

        /// Zeroes the statistics (faults stay: see ``clearFaults()``).
        func reset() async throws {
            _ = try await process.control("POST", "/_reset", as: FixtureAcknowledgement.self)
        }

        func stop() { process.stop() }
    }

    /// A fault for ``S3FaultProxyFixture/program(fault:)``: which requests, what happens, how often.
    struct ProxyFault: Encodable, Sendable {
        /// Which requests the fault applies to; every given condition must hold.
        struct Match: Encodable, Sendable {
            var method: String?
            var path: String?
            var pathContains: String?
            /// Substrings the raw query string must all contain, e.g. `uploadId=`, `uploads`.
            var queryContains: [String]?
            /// Substrings the raw query string must not contain.
            var queryAbsent: [String]?
            /// Query parameters that must have exactly these values, e.g. `["partNumber": "2"]`
            /// (unlike `queryContains: ["partNumber=2"]`, which also matches part 20).
            var queryParams: [String: String]?

            init(
                method: String? = nil, path: String? = nil, pathContains: String? = nil, queryContains: [String]? = nil,
                queryAbsent: [String]? = nil, queryParams: [String: String]? = nil
            ) {
                self.method = method
                self.path = path
                self.pathContains = pathContains
                self.queryContains = queryContains
                self.queryAbsent = queryAbsent
                self.queryParams = queryParams
            }

            enum CodingKeys: String, CodingKey {
                case method, path
                case pathContains = "path_contains"
                case queryContains = "query_contains"
                case queryAbsent = "query_absent"
                case queryParams = "query_params"
            }
        }

        enum Action: String, Encodable, Sendable {
            /// 503 with `<Code>SlowDown</Code>`, not forwarded.
            case slowDown = "503_slowdown"
            /// 500 with `<Code>InternalError</Code>`, not forwarded.
            case internalError = "500"
            /// `status` with `<Code>code</Code>`, not forwarded.
            case error
            /// Reads `bytes` of the request body (default half) and resets the connection; nothing forwarded.
            case resetMidBody = "reset_mid_body"
            /// Waits `seconds` before reading the body and forwarding (`phase: "response"`: before relaying the answer).
            case stall
            /// Answers 200 with an `<Error><Code>InternalError</Code>` body; not forwarded unless `forward`.
            case complete200Error = "complete_200_error"
            /// Forwards, relays `bytes` of the response body (default half), then resets the connection.
            case resetMidResponse = "reset_mid_response"
        }

        var match: Match
        var action: Action
        /// How many times it fires; `nil` means every matching request.
        var times: Int? = 1
        /// Matching requests let through before it starts firing.
        var skip: Int = 0
        var seconds: Double?
        var bytes: Int?
        var phase: String?
        var forward: Bool?
        var status: Int?
        var code: String?
        var message: String?

        enum CodingKeys: String, CodingKey {
            case match, action, times, skip, seconds, bytes, phase, forward, status, code, message
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(match, forKey: .match)
            try container.encode(action, forKey: .action)
            if let times {
                try container.encode(times, forKey: .times)
            } else {
                try container.encode("all", forKey: .times)
            }
            try container.encode(skip, forKey: .skip)
            try container.encodeIfPresent(seconds, forKey: .seconds)
            try container.encodeIfPresent(bytes, forKey: .bytes)
            try container.encodeIfPresent(phase, forKey: .phase)
            try container.encodeIfPresent(forward, forKey: .forward)
            try container.encodeIfPresent(status, forKey: .status)
            try container.encodeIfPresent(code, forKey: .code)
            try container.encodeIfPresent(message, forKey: .message)
        }
    }

    /// `GET /_stats` of the fault proxy.
    struct ProxyStats: Decodable, Sendable {
        struct Method: Decodable, Sendable {
            var requests: Int
            /// Request body bytes received from the client (forwarded or not).
            var requestBytes: Int
            /// Response body bytes sent to the client.
            var responseBytes: Int
        }
        /// One request as the proxy saw it.
        struct Entry: Decodable, Sendable {
            var method: String
            var path: String
            var query: String
            /// The HTTP status answered, or `reset` when the proxy reset the connection.
            var status: Status
            /// The fault action that fired, if any.
            var fault: String?
            var requestBytes: Int
            var responseBytes: Int
            /// The request's `x-amz-*` headers (names lowercase), except the session token.
            var amz: [String: String]
            /// The request's `Expect` header (the proxy answers a `100-continue` itself), if it had one.
            var expect: String?
            /// The request's `Content-Type` header, if it had one.
            var contentType: String?
        }
        /// A status code, or the word the proxy logs for a connection it reset.
        enum Status: Decodable, Sendable, Equatable {
            case code(Int)
            case other(String)

            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let code = try? container.decode(Int.self) {
                    self = .code(code)
                } else {
                    self = .other(try container.decode(String.self))
                }
            }
        }
        /// A request whose SigV4 signature failed the check (`--verify-sigv4`): what S3 would have refused.
        struct SignatureFailure: Decodable, Sendable, CustomStringConvertible {
            var method: String
            /// The request target as sent: path and query, encoded.
            var target: String
            /// `mismatch`, `wrong-region`, `skewed`, `unsigned-headers`, `signed-absent`, `missing` or `malformed`.
            var verdict: String
            /// The canonical request S3 would have signed, to compare with the client's; for
            /// `wrong-region` the region the request named, for `skewed` its date.
            var canonicalRequest: String
            var description: String { "\(method) \(target): \(verdict)\n\(canonicalRequest)" }
        }
        var requests: Int
        var connections: Int
        /// The most requests at once (from the head received to the answer's head sent) since the last reset.
        var maxInFlight: Int
        var faultsFired: Int
        var signatureFailures: [SignatureFailure]
        /// Per method: `GET`, `PUT`, `POST`, `DELETE`, `HEAD`.
        var methods: [String: Method]
        var requestBytes: Int
        var responseBytes: Int
        /// The first 2000 requests, in order.
        var log: [Entry]
    }
#endif
