import Foundation
import Synchronization

/// The conditions under which a service is ready for work, asked on every `GET /readyz`.
///
/// Each service registers what it depends on ("broker connected", "database connected") as an
/// async closure; Kubernetes sends traffic and counts the pod as available only while all pass.
/// A check that does not answer within ``timeout`` counts as failing: a hung dependency must not
/// hang the probe. Checks may be registered at any time, before or after the endpoint starts.
public final class ReadinessChecks: Sendable {
    public typealias Check = @Sendable () async -> Bool

    public let timeout: Duration
    private let checks = Mutex<[(name: String, check: Check)]>([])

    public init(timeout: Duration = .seconds(2)) {
        self.timeout = timeout
    }

    /// Adds a check named `name` (shown in the `/readyz` body when it fails).
    public func register(_ name: String, _ check: @escaping Check) {
        checks.withLock { $0.append((name, check)) }
    }

    /// Runs every check concurrently and reports which pass and which fail.
    public func evaluate() async -> ReadinessReport {
        let registered = checks.withLock { $0 }
        let timeout = self.timeout
        let results = await withTaskGroup(of: (Int, Bool).self) { group in
            for (index, entry) in registered.enumerated() {
                group.addTask { (index, await Self.within(timeout, entry.check)) }
            }
            var results = [Bool](repeating: false, count: registered.count)
            for await (index, passed) in group { results[index] = passed }
            return results
        }
        var report = ReadinessReport()
        for (entry, passed) in zip(registered, results) {
            if passed { report.passing.append(entry.name) } else { report.failing.append(entry.name) }
        }
        return report
    }

    private static func within(_ timeout: Duration, _ check: @escaping Check) async -> Bool {
        await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await check() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? false
        }
    }
}

/// The outcome of the readiness checks, and the JSON body `/readyz` answers with.
public struct ReadinessReport: Sendable, Equatable, Codable {
    public var passing: [String] = []
    public var failing: [String] = []

    public init(passing: [String] = [], failing: [String] = []) {
        self.passing = passing
        self.failing = failing
    }

    public var isReady: Bool { failing.isEmpty }

    /// `{"failing":[…],"passing":[…],"ready":true|false}`, keys sorted, for probes and people alike.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    enum CodingKeys: String, CodingKey { case passing, failing, ready }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        passing = try container.decode([String].self, forKey: .passing)
        failing = try container.decode([String].self, forKey: .failing)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(passing, forKey: .passing)
        try container.encode(failing, forKey: .failing)
        try container.encode(isReady, forKey: .ready)
    }
}
