import Foundation
import Testing

@testable import SquallCore

/// The reader is fed here as libcurl would feed it (``SourceReader/responseStarted(status:headers:)``
/// and ``SourceReader/receive(_:)``), without a request: what is checked is how it cuts, bounds and
/// allocates, and when it asks libcurl to wait.
@Suite("Transfer engine: the source reader's buffers")
struct SourceReaderTests {
    let multi = CurlMulti()

    static func bytes(_ count: Int, _ value: UInt8 = 7) -> [UInt8] { [UInt8](repeating: value, count: count) }

    func feed(_ reader: SourceReader, _ bytes: [UInt8]) -> StreamVerdict {
        bytes.withUnsafeBytes { reader.receive($0) }
    }

    /// Every event up to `.finished`, or up to `count` events when given.
    func events(_ reader: SourceReader, count: Int? = nil) async -> [SourceReader.Event] {
        var seen: [SourceReader.Event] = []
        for await event in reader.events {
            seen.append(event)
            if case .finished = event { break }
            if let count, seen.count == count { break }
        }
        return seen
    }

    func parts(_ events: [SourceReader.Event]) -> [SourceReader.Part] {
        events.compactMap {
            if case .part(let part) = $0 { return part }
            return nil
        }
    }

    @Test("an object smaller than a part takes one buffer of its own size, not a part-size buffer")
    func smallObjectBuffer() async {
        let reader = SourceReader(multi: multi, partSize: 8 << 20, buffers: 4, limit: 4096)
        #expect(feed(reader, Self.bytes(4096)) == .accepted)
        reader.finish()
        let parts = parts(await events(reader))
        #expect(parts.count == 1)
        #expect(parts.first?.buffer.capacity == 4096)
        #expect(parts.first?.buffer.count == 4096)
        #expect(reader.buffersAllocated == 1)
    }

    @Test("buffers are allocated as bytes need them, and no more than the limit are ever out")
    func buffersBounded() async throws {
        let partSize = 1 << 20
        let reader = SourceReader(multi: multi, partSize: partSize, buffers: 2)
        #expect(reader.buffersAllocated == 0)
        #expect(feed(reader, Self.bytes(100)) == .accepted)
        #expect(reader.buffersAllocated == 1)
        #expect(feed(reader, Self.bytes(partSize)) == .accepted)  // fills part 1, starts part 2
        #expect(reader.buffersAllocated == 2)
        #expect(feed(reader, Self.bytes(partSize)) == .pause)  // part 2 cannot take it all, no third buffer
        #expect(reader.buffersAllocated == 2)
        let first = parts(await events(reader, count: 1))
        #expect(first.map(\.number) == [1])
        reader.release(try #require(first.first).buffer)
        #expect(feed(reader, Self.bytes(partSize)) == .accepted)
        #expect(reader.buffersAllocated == 2)
        #expect(reader.bytesAccepted == Int64(2 * partSize + 100))
    }

    @Test("an unconfigured reader takes no byte until configured, then cuts by the part size it was given")
    func unconfiguredWaits() async {
        let reader = SourceReader(multi: multi)
        #expect(reader.responseStarted(status: 200, headers: ReplyHeaders(values: ["content-length": "3000"])))
        #expect(feed(reader, Self.bytes(1000)) == .pause)
        #expect(reader.bytesAccepted == 0)
        reader.configure(partSize: 2000, buffers: 2, limit: nil, checksumsParts: false)
        #expect(reader.declaredSize == 3000)  // from the response head, not from configure's nil
        #expect(feed(reader, Self.bytes(1000)) == .accepted)
        #expect(feed(reader, Self.bytes(2000)) == .accepted)
        #expect(feed(reader, Self.bytes(1)) == .abort)  // past the 3000 bytes declared
        reader.finish()
        let parts = parts(await events(reader))
        #expect(parts.map(\.buffer.count) == [2000, 1000])
    }

    @Test("the response head is handed to whoever waits for it, before or after it arrived")
    func responseHead() async {
        let early = SourceReader(multi: multi)
        let headers = ReplyHeaders(values: ["etag": "\"abc\"", "content-length": "5"])
        async let waited = early.responseHead()
        try? await Task.sleep(for: .milliseconds(50))
        #expect(early.responseStarted(status: 200, headers: headers))
        guard case .started(let got) = await waited else {
            Issue.record("no .started head")
            return
        }
        #expect(got == headers)

        let late = SourceReader(multi: multi)
        #expect(late.responseStarted(status: 200, headers: headers))
        #expect(late.responseStarted(status: 200, headers: ReplyHeaders()))  // a later response changes nothing
        guard case .started(let kept) = await late.responseHead() else {
            Issue.record("no .started head")
            return
        }
        #expect(kept == headers)
    }
}
