import Foundation

/// The parts of one multipart upload: which are stored (with their ETag, checksum and the digest state
/// after each), the upload tasks still running, and the first failure.
final class UploadLedger: @unchecked Sendable {
    private let lock = NSLock()
    private var parts: [Int: S3Client.CompletedPart] = [:]
    private var states: [Int: [UInt32]] = [:]
    private var tasks: [Task<Void, Never>] = []
    private var failure: (any Error)?
    private var contiguous = 0

    init(resumed: ResumeRecord?) {
        guard let resumed else { return }
        for part in resumed.parts {
            parts[part.number] = S3Client.CompletedPart(
                number: part.number, etag: part.etag, checksum: PartChecksum(base64: part.crc32c) ?? PartChecksum())
        }
        states[resumed.partsDone] = resumed.digestState
        contiguous = resumed.partsDone
    }

    var error: (any Error)? { lock.withLock { failure } }

    func track(_ task: Task<Void, Never>) { lock.withLock { tasks.append(task) } }

    func fail(_ error: any Error) {
        lock.withLock { if failure == nil { failure = error } }
    }

    /// Records a stored part; returns the new length of the run of parts stored from part 1, when it grew.
    func completed(_ part: S3Client.CompletedPart, state: [UInt32]?) -> Int? {
        lock.withLock {
            parts[part.number] = part
            if let state { states[part.number] = state }
            let before = contiguous
            while parts[contiguous + 1] != nil { contiguous += 1 }
            return contiguous > before ? contiguous : nil
        }
    }

    /// Parts 1…`count` with the digest state after the last, for a resume record.
    func prefix(upTo count: Int) -> (parts: [ResumeRecord.StoredPart], state: [UInt32])? {
        lock.withLock {
            if count == 0 { return ([], ResumableSHA256().savedState ?? []) }
            guard let state = states[count] else { return nil }
            let stored = (1...count).compactMap { number in
                parts[number].map {
                    ResumeRecord.StoredPart(number: number, etag: $0.etag, crc32c: $0.checksum.base64)
                }
            }
            return stored.count == count ? (stored, state) : nil
        }
    }

    /// Waits for every upload task; returns the parts in order, or throws the first failure.
    func waitForAll() async throws -> [S3Client.CompletedPart] {
        while true {
            let pending = lock.withLock { () -> [Task<Void, Never>] in
                defer { tasks.removeAll() }
                return tasks
            }
            if pending.isEmpty { break }
            for task in pending { await task.value }
        }
        if let error { throw error }
        return lock.withLock { parts.values.sorted { $0.number < $1.number } }
    }

    func cancelAll() {
        for task in lock.withLock({ tasks }) { task.cancel() }
    }
}

/// Writes resume records one at a time, never an older one after a newer.
///
/// Parts finish faster than records can be PUT, and two PUTs of one key in flight may land in either
/// order (and break some emulators), so one PUT runs at a time and the newest record waiting is the next
/// one written; records overtaken meanwhile are skipped.
actor RecordWriter {
    let client: S3Client
    let bucket: String
    let key: String
    private var newest = -1
    private var waiting: ResumeRecord?
    private var writing: Task<Void, Never>?
    private var closed = false

    init(client: S3Client, bucket: String, key: String) {
        self.client = client
        self.bucket = bucket
        self.key = key
    }

    /// Best effort: a record that cannot be written only costs a resume.
    func write(_ record: ResumeRecord) {
        guard !closed, record.partsDone > newest else { return }
        newest = record.partsDone
        waiting = record
        if writing == nil { writing = Task { await self.drain() } }
    }

    /// Takes no more records and returns once none is being written: called before the record is deleted
    /// (the upload completed or aborted), so that no write lands after the delete, even from a part upload
    /// that was still finishing.
    func finish() async {
        closed = true
        await writing?.value
    }

    private func drain() async {
        while let record = waiting {
            waiting = nil
            await put(record)
        }
        writing = nil
    }

    private func put(_ record: ResumeRecord) async {
        guard let body = try? JSONEncoder().encode(record) else { return }
        let bytes = Array(body)
        let (digest, checksum) = bytes.withUnsafeBytes { (ResumableSHA256.digest(of: $0), PartChecksum.of($0)) }
        _ = try? await client.put(
            bucket: bucket, key: ResumeRecord.key(for: key), body: .bytes(bytes), sha256: digest, checksum: checksum,
            metadata: [:], conditional: false)
    }
}

/// Reports a transfer's progress once per interval while it runs.
///
/// Fired by the engine's libcurl thread (``CurlMulti``) between its turns, which also counts the
/// bytes: no task, timer or thread of its own per transfer (one of each cost a small object more
/// than its bytes did).
final class ProgressTicker: @unchecked Sendable {
    private let multi: CurlMulti
    private let interval: Duration
    private let total: Int64?
    private let events: @Sendable (TransferEvent) -> Void
    // Set before the ticker is scheduled, then touched only by the libcurl thread.
    private var reader: SourceReader?
    private var last: (bytes: Int64, at: ContinuousClock.Instant) = (0, .now)
    private(set) var due: ContinuousClock.Instant = .now

    init(multi: CurlMulti, interval: Duration, total: Int64?, events: @escaping @Sendable (TransferEvent) -> Void) {
        self.multi = multi
        self.interval = interval
        self.total = total
        self.events = events
    }

    /// Starts reporting `reader`'s bytes, the first time one interval from now.
    func watch(_ reader: SourceReader) {
        self.reader = reader
        last = (reader.bytesAccepted, .now)
        due = last.at + interval
        multi.schedule(self)
    }

    func stop() {
        multi.unschedule(self)
    }

    /// Reports the bytes so far and the rate since the last report (on the libcurl thread).
    func fire(at now: ContinuousClock.Instant) {
        guard let reader else { return }
        let bytes = reader.bytesAccepted
        let elapsed = now - last.at
        let seconds = Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds)
        let rate = seconds > 0 ? Double(bytes - last.bytes) / seconds : 0
        events(.progress(TransferProgress(bytesDone: bytes, bytesTotal: total, bytesPerSecond: rate)))
        last = (bytes, now)
        due = now + interval
    }
}
