import Foundation

/// Reads a source once, in order, into part buffers, and hashes the bytes as they pass.
///
/// It is the stream of one GET at a time (a broken download is continued by another GET with a
/// Range, fed to the same reader): libcurl calls ``receive(_:)`` on the transfer thread, the bytes
/// go into the part being filled, and each full part is handed to the uploader as an ``Event``
/// with its own checksum (CRC32C, when the parts go to S3) and the whole-object digest's state
/// after it. Both are computed chunk by chunk as the bytes arrive, while they are in the cache:
/// each byte is read once for the SHA-256 and once for the CRC32C, never again from a full part. The pool of buffers is
/// bounded; when every buffer is out (parts still uploading) the reader pauses the download, and
/// ``release(_:)`` un-pauses it. A chunk is taken whole or not at all, so nothing is copied twice.
/// Buffers are allocated as the bytes need them, and no larger than the bytes the source declared:
/// a 4 KiB object takes one 4 KiB buffer, not a pool of 8 MiB parts.
///
/// A reader made with ``init(multi:)`` is *unconfigured*: its GET can start before the part size
/// is known (the response head says how large the source is), and it takes no byte until
/// ``configure(partSize:buffers:limit:checksumsParts:)``. ``responseHead()`` waits for that head.
final class SourceReader: ResponseStream, @unchecked Sendable {
    struct Part: @unchecked Sendable {
        var number: Int
        var buffer: PartBuffer
        /// S3's per-part checksum of the buffer's bytes (zero when the reader computes none).
        var checksum: PartChecksum
        /// The whole-object digest's state after this part (nil when it cannot be saved).
        var digestState: [UInt32]?
    }

    enum Event: @unchecked Sendable {
        case part(Part)
        /// One GET ended; the engine judges it (success: call ``finish()``; error: retry with a Range).
        case ended(HTTPReply)
        /// After ``finish()``: every byte is in a part.
        case finished
    }

    /// How the first GET began: its body started (with these headers), or it ended before any byte.
    enum Head: @unchecked Sendable {
        case started(ReplyHeaders)
        case ended(HTTPReply)
    }

    let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let multi: CurlMulti
    private let lock = NSLock()
    /// Buffers given back and not yet reused.
    private var pool: [PartBuffer] = []
    private var allocated = 0
    /// The most buffers this reader may own at once (zero until configured).
    private var bufferLimit = 0
    private var partSize = 0
    private var current: PartBuffer?
    private var nextNumber: Int
    private var hasher: ResumableSHA256
    private var checksumsParts = true
    private let startOffset: Int64
    private var partChecksum = PartChecksum()
    private var accepted: Int64
    private var paused = false
    private var request: CurlRequest?
    /// Wakes the local-file reader when a buffer comes back (it has no libcurl request to un-pause).
    private var wakeFileReader: DispatchSemaphore?
    private var fileReadCancelled = false
    private var expectedStart: Int64 = 0
    private var limit: Int64?
    private var headersOfFirstResponse: ReplyHeaders?
    private var problem: String?
    private var head: Head?
    private var headWaiter: CheckedContinuation<Head, Never>?

    /// - Parameters:
    ///   - startOffset: bytes already stored by a previous run (a resumed upload); the first part read is `firstPart`.
    ///   - limit: the size the source declared, when known: a byte more is an error.
    ///   - checksumsParts: compute each part's ``PartChecksum`` (parts bound for S3; a file needs none).
    init(
        multi: CurlMulti, partSize: Int, buffers: Int, firstPart: Int = 1, startOffset: Int64 = 0,
        hasher: ResumableSHA256 = ResumableSHA256(), limit: Int64? = nil, checksumsParts: Bool = true
    ) {
        self.multi = multi
        nextNumber = firstPart
        self.hasher = hasher
        accepted = startOffset
        self.startOffset = startOffset
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
        configure(partSize: partSize, buffers: buffers, limit: limit, checksumsParts: checksumsParts)
    }

    /// An unconfigured reader of a whole source from byte 0: see ``configure(partSize:buffers:limit:checksumsParts:)``.
    init(multi: CurlMulti) {
        self.multi = multi
        nextNumber = 1
        hasher = ResumableSHA256()
        accepted = 0
        startOffset = 0
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
    }

    /// Sets how the bytes are cut and how many buffers may be out at once, and lets a GET that
    /// waited for it go on.
    func configure(partSize: Int, buffers: Int, limit: Int64?, checksumsParts: Bool) {
        let resume: CurlRequest? = lock.withLock {
            self.partSize = partSize
            bufferLimit = max(buffers, 1)
            if self.limit == nil { self.limit = limit }
            self.checksumsParts = checksumsParts
            guard paused else { return nil }
            paused = false
            return request
        }
        if let resume { multi.resume(resume) }
    }

    /// Waits for the first GET's response head (or its end, when it failed or had no body).
    func responseHead() async -> Head {
        await withCheckedContinuation { waiter in
            let ready: Head? = lock.withLock {
                if head == nil { headWaiter = waiter }
                return head
            }
            if let ready { waiter.resume(returning: ready) }
        }
    }

    private func settleHead(_ settled: Head) {
        let waiter: CheckedContinuation<Head, Never>? = lock.withLock {
            guard head == nil else { return nil }
            head = settled
            defer { headWaiter = nil }
            return headWaiter
        }
        waiter?.resume(returning: settled)
    }

    /// Bytes of the source taken so far (the absolute offset the next GET starts at).
    var bytesAccepted: Int64 { lock.withLock { accepted } }

    /// Buffers allocated so far (never more than the configured number).
    var buffersAllocated: Int { lock.withLock { allocated } }

    /// The first response's headers (validators, length), once a body has started.
    var firstResponseHeaders: ReplyHeaders? { lock.withLock { headersOfFirstResponse } }

    /// Why the last GET was refused by the reader (a Range answered with the wrong bytes, too many bytes).
    var lastProblem: String? { lock.withLock { problem } }

    /// The size declared by the first response (`Content-Length` of a 200, or the total of a `Content-Range`).
    var declaredSize: Int64? { lock.withLock { limit } }

    /// Starts a GET whose body continues at ``bytesAccepted``.
    func fetch(_ call: HTTPCall) {
        lock.withLock {
            expectedStart = accepted
            problem = nil
        }
        let started = multi.start(call) { [self, continuation] reply in
            settleHead(.ended(reply))
            continuation.yield(.ended(reply))
        }
        lock.withLock { request = started }
    }

    /// Stops the GET in progress, if any.
    func cancel() {
        let (request, wake) = lock.withLock { () -> (CurlRequest?, DispatchSemaphore?) in
            fileReadCancelled = true
            return (self.request, wakeFileReader)
        }
        if let request { multi.cancel(request) }
        wake?.signal()
        continuation.finish()
    }

    /// Reads a local file from ``bytesAccepted`` on a thread of its own, feeding this reader as a GET would.
    ///
    /// libcurl's `file://` cannot pause its write callback, so local files are read here instead:
    /// a chunk the reader cannot take yet waits until a buffer comes back.
    func readFile(_ path: String) {
        let wake = DispatchSemaphore(value: 0)
        let offset = lock.withLock {
            wakeFileReader = wake
            expectedStart = accepted
            problem = nil
            return accepted
        }
        let thread = Thread { [self, continuation] in
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                continuation.yield(.ended(Self.fileReply(code: 37, "\(path): \(String(cString: strerror(errno)))")))
                return
            }
            defer { close(descriptor) }
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 64)
            defer { chunk.deallocate() }
            var position = off_t(offset)
            while true {
                if lock.withLock({ fileReadCancelled }) { return }
                let count = pread(descriptor, chunk.baseAddress, chunk.count, position)
                if count < 0 {
                    if errno == EINTR { continue }
                    continuation.yield(.ended(Self.fileReply(code: 26, "\(path): \(String(cString: strerror(errno)))")))
                    return
                }
                if count == 0 { break }
                let bytes = UnsafeRawBufferPointer(rebasing: chunk[0..<count])
                var verdict = receive(bytes)
                while verdict == .pause {
                    wake.wait()
                    if lock.withLock({ fileReadCancelled }) { return }
                    verdict = receive(bytes)
                }
                if verdict == .abort {
                    continuation.yield(.ended(Self.fileReply(code: 23, "\(path): \(lastProblem ?? "read stopped")")))
                    return
                }
                position += off_t(count)
            }
            continuation.yield(.ended(Self.fileReply(code: 0, "")))
        }
        thread.name = "squall.file-source"
        thread.start()
    }

    private static func fileReply(code: Int, _ message: String) -> HTTPReply {
        HTTPReply(
            curlCode: code, curlMessage: message, status: 200, headers: ReplyHeaders(), body: [], bytesReceived: 0,
            refusedAddress: nil)
    }

    /// The source has no more bytes: hands over the last, partly filled part and ends the events.
    func finish() {
        let last: Part? = lock.withLock {
            guard let buffer = current, buffer.count > 0 else { return nil }
            current = nil
            return makePart(buffer)
        }
        if let last { continuation.yield(.part(last)) }
        continuation.yield(.finished)
        continuation.finish()
    }

    /// The digest of every byte accepted (complete once ``finish()`` was called).
    func digest() -> [UInt8] { lock.withLock { hasher.digest() } }

    /// Gives a buffer back once its part is stored, un-pausing the download if it waited for one.
    func release(_ buffer: PartBuffer) {
        let (resume, wake): (CurlRequest?, DispatchSemaphore?) = lock.withLock {
            buffer.count = 0
            pool.append(buffer)
            guard paused else { return (nil, nil) }
            paused = false
            return (request, wakeFileReader)
        }
        if let resume { multi.resume(resume) }
        wake?.signal()
    }

    // MARK: ResponseStream (transfer thread)

    func responseStarted(status: Int, headers: ReplyHeaders) -> Bool {
        let taken = lock.withLock { () -> Bool in
            if status == 206 {
                let range = headers["content-range"] ?? ""
                // "bytes START-END/TOTAL"
                let start = range.split(separator: " ").last?.split(separator: "-").first.flatMap { Int64($0) }
                guard start == expectedStart else {
                    problem =
                        "the source answered the range request from byte \(start.map(String.init) ?? "?") (asked \(expectedStart))"
                    return false
                }
                if limit == nil, let total = range.split(separator: "/").last.flatMap({ Int64($0) }) { limit = total }
            } else if expectedStart > 0 {
                problem = "the source changed or ignored the range request (answered \(status), not 206)"
                return false
            } else if limit == nil, let length = headers["content-length"].flatMap({ Int64($0) }) {
                limit = length
            }
            if headersOfFirstResponse == nil { headersOfFirstResponse = headers }
            return true
        }
        if taken { settleHead(.started(headers)) }
        return taken
    }

    func receive(_ bytes: UnsafeRawBufferPointer) -> StreamVerdict {
        var parts: [Part] = []
        let verdict: StreamVerdict = lock.withLock {
            if let limit, accepted + Int64(bytes.count) > limit {
                problem = "the source sent more bytes than the \(limit) it declared"
                return .abort
            }
            guard bufferLimit > 0 else {
                paused = true  // not configured yet: configure(…) resumes
                return .pause
            }
            if current == nil {
                guard let buffer = takeBuffer() else {
                    paused = true
                    return .pause
                }
                current = buffer
            }
            if bytes.count > current!.capacity - current!.count && pool.isEmpty && allocated == bufferLimit {
                paused = true
                return .pause
            }
            var rest = bytes
            while !rest.isEmpty {
                if current == nil { current = takeBuffer() }
                let buffer = current!
                let taken = buffer.append(rest)
                let chunk = UnsafeRawBufferPointer(rebasing: rest[0..<taken])
                hasher.update(chunk)
                if checksumsParts { partChecksum.update(chunk) }
                accepted += Int64(taken)
                rest = UnsafeRawBufferPointer(rebasing: rest[taken...])
                if buffer.isFull {
                    parts.append(makePart(buffer))
                    current = nil
                }
            }
            return .accepted
        }
        for part in parts { continuation.yield(.part(part)) }
        return verdict
    }

    /// A free buffer, allocated now when none is free and the limit allows one (under the lock).
    private func takeBuffer() -> PartBuffer? {
        if let buffer = pool.popLast() { return buffer }
        guard allocated < bufferLimit else { return nil }
        allocated += 1
        var capacity = partSize
        if let limit, limit - startOffset < Int64(partSize) { capacity = Int(max(limit - startOffset, 1)) }
        return PartBuffer(capacity: capacity)
    }

    private func makePart(_ buffer: PartBuffer) -> Part {
        defer {
            nextNumber += 1
            partChecksum = PartChecksum()
        }
        return Part(number: nextNumber, buffer: buffer, checksum: partChecksum, digestState: hasher.savedState)
    }
}
