import Foundation
import Testing

@testable import SquallCore

@Suite("Message schemas")
struct MessageCodecTests {
    let now = Timestamp(milliseconds: 1_795_000_000_123)

    @Test("a job survives the round trip with its version and type on the wire")
    func jobRoundTrip() throws {
        let job = JobMessage(
            jobID: 42, batchID: 7, attempt: 3, source: "https://example.com/a.bin", destination: "s3://bucket/a.bin",
            priority: 5, expectedSHA256: String(repeating: "ab", count: 32), enqueuedAt: now)
        let body = MessageCodec.encode(job)
        let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        #expect(object["v"] as? Int == 1)
        #expect(object["type"] as? String == "job")
        #expect(object["job_id"] as? Int == 42)
        #expect(object["enqueued_at"] as? Int == 1_795_000_000_123)
        #expect(try MessageCodec.decode(JobMessage.self, from: body) == job)
    }

    @Test("a job's fresh-destination hint survives the round trip, and a job without it reads as not fresh")
    func freshDestinationHint() throws {
        var job = JobMessage(
            jobID: 1, batchID: 2, attempt: 1, source: "https://example.com/a", destination: "s3://b/a", enqueuedAt: now)
        job.freshDestination = true
        let body = MessageCodec.encode(job)
        let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        #expect(object["fresh_destination"] as? Bool == true)
        #expect(try MessageCodec.decode(JobMessage.self, from: body).freshDestination)

        // What a Producer of an earlier release sends: no hint at all.
        let older = Data(
            #"{"v":1,"type":"job","job_id":1,"batch_id":2,"attempt":1,"source":"https://example.com/a","destination":"s3://b/a","priority":0,"enqueued_at":5}"#
                .utf8)
        let decoded = try MessageCodec.decode(JobMessage.self, from: older)
        #expect(!decoded.freshDestination)
        #expect(decoded.expectedSHA256 == nil)
        #expect(decoded.enqueuedAt == Timestamp(milliseconds: 5))
    }

    @Test("progress and heartbeats share a queue and decode to the right case")
    func progressStream() throws {
        let progress = ProgressPacket(
            jobID: 1, attempt: 1, node: "n1", timestamp: now, bytesDone: 10, bytesTotal: nil, bytesPerSecond: .infinity,
            phase: .transferring)
        let heartbeat = Heartbeat(
            node: "n1", role: .consumer, host: "h", startedAt: now, timestamp: now, currentJobs: [1, 2], bytesMoved: 99)
        #expect(try MessageCodec.decodeProgressStream(MessageCodec.encode(progress)) == .progress(progress))
        #expect(try MessageCodec.decodeProgressStream(MessageCodec.encode(heartbeat)) == .heartbeat(heartbeat))
    }

    @Test("results and control messages round-trip")
    func resultAndControl() throws {
        let result = ResultPacket(
            jobID: 9, attempt: 2, node: "n", timestamp: now, outcome: .failed, bytes: 0, errorCode: "http_404",
            errorMessage: "GET https://example.com/x: 404 Not Found", durationMilliseconds: 12)
        #expect(try MessageCodec.decode(ResultPacket.self, from: MessageCodec.encode(result)) == result)
        for command in [ControlMessage.Command.cancelBatch(batchID: 3), .cancelJob(jobID: 4)] {
            let control = ControlMessage(command: command, issuedAt: now)
            #expect(try MessageCodec.decode(ControlMessage.self, from: MessageCodec.encode(control)) == control)
        }
    }

    @Test(
        "a malformed body is an error value naming what is wrong",
        arguments: [
            ("not json", "malformed message: not valid JSON"),
            ("{\"v\":1}", "malformed message: field \"type\" is missing"),
            ("{\"v\":1,\"type\":\"job\",\"job_id\":\"x\"}", "malformed message: job: field \"job_id\" is not Int64"),
            ("{\"v\":1,\"type\":\"job\",\"job_id\":1}", "malformed message: job: field \"batch_id\" is missing"),
            ("[]", "malformed message: body is not Dictionary<String, Any>"),
        ])
    func malformedBody(body: String, message: String) {
        #expect {
            try MessageCodec.decode(JobMessage.self, from: Data(body.utf8))
        } throws: { error in
            (error as? MessageDecodingError)?.description == message
        }
    }

    @Test("an unknown schema version is refused, not guessed at")
    func unknownVersion() {
        let body = Data(#"{"v":2,"type":"job","job_id":1}"#.utf8)
        #expect(throws: MessageDecodingError.unsupportedVersion(found: 2, supported: 1)) {
            try MessageCodec.decode(JobMessage.self, from: body)
        }
    }

    @Test("a message of another kind is refused on a queue that does not carry it")
    func wrongType() {
        let control = MessageCodec.encode(ControlMessage(command: .cancelJob(jobID: 1), issuedAt: now))
        #expect(throws: MessageDecodingError.unexpectedType(found: "control", expected: ["job"])) {
            try MessageCodec.decode(JobMessage.self, from: control)
        }
        #expect(throws: MessageDecodingError.unexpectedType(found: "control", expected: ["progress", "heartbeat"])) {
            try MessageCodec.decodeProgressStream(control)
        }
    }

    @Test("an unknown control command is malformed")
    func unknownCommand() {
        let body = Data(#"{"v":1,"type":"control","command":"explode","issued_at":1}"#.utf8)
        #expect(throws: MessageDecodingError.self) { try MessageCodec.decode(ControlMessage.self, from: body) }
    }

    @Test("timestamps are whole milliseconds and print as UTC")
    func timestamps() {
        #expect(Timestamp(milliseconds: 0).description == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(milliseconds: 1_795_427_407_089).description == "2026-11-23T09:50:07.089Z")
        #expect(Timestamp(milliseconds: 951_825_600_005).description == "2000-02-29T12:00:00.005Z")
        #expect(Timestamp(milliseconds: -1).description == "1969-12-31T23:59:59.999Z")
        let before = Timestamp.now()
        #expect(before.milliseconds > 1_700_000_000_000)
        #expect(before <= Timestamp.now())
    }
}
