import Foundation

@testable import SquallTestSupport

/// `Tests/Fixtures/source_server.py`: generated objects at `/gen/SIZE/SEED`, slowed with
/// `?slow_bps=N`, 404 for unknown paths (Tests/Fixtures/README.md).
typealias SourceServer = FixtureProcess

extension FixtureProcess {
    convenience init() throws {
        try self.init(.sourceServer)
    }

    /// `http://127.0.0.1:PORT/gen/SIZE/SEED`, sent at about `bytesPerSecond` when given.
    func generated(size: Int, seed: Int, bytesPerSecond: Int? = nil) -> String {
        "http://127.0.0.1:\(port)/gen/\(size)/\(seed)" + (bytesPerSecond.map { "?slow_bps=\($0)" } ?? "")
    }

    func missing(_ name: String) -> String { "http://127.0.0.1:\(port)/missing/\(name)" }
}
