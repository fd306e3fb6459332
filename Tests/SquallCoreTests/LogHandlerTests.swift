import Foundation
import Logging
import Testing

@testable import SquallCore

@Suite("Log lines")
struct LogHandlerTests {
    let at = Timestamp(milliseconds: 0)

    @Test("text lines carry level, label, message and sorted metadata")
    func textLine() {
        let line = SquallLogHandler.render(
            format: .text, timestamp: at, level: .info, label: "squall-consumer", message: "transfer done",
            metadata: ["job.id": "42", "batch.id": "7"])
        #expect(line == "1970-01-01T00:00:00.000Z info squall-consumer: transfer done batch.id=7 job.id=42\n")
    }

    @Test("JSON lines are one valid object each, with escaped text")
    func jsonLine() throws {
        let line = SquallLogHandler.render(
            format: .json, timestamp: at, level: .warning, label: "squall-observer", message: "said \"hi\"\nthen left",
            metadata: ["job.id": "42"])
        #expect(line.hasSuffix("}\n"))
        #expect(line.filter { $0 == "\n" }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["message"] == "said \"hi\"\nthen left")
        #expect(object["level"] == "warning")
        #expect(object["job.id"] == "42")
        #expect(object["ts"] == "1970-01-01T00:00:00.000Z")
    }
}
