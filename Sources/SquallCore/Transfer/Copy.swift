import Foundation
import Synchronization

/// One run of one ``TransferRequest``: skip when the destination already holds the source's bytes,
/// then stream the source through a ``SourceReader`` into S3 (one PUT, or a multipart upload with
/// parts in flight, resumable across processes) or into a local file.
///
/// The source is asked about (a HEAD) only when the destination holds an object to compare it
/// with. Otherwise the GET starts at once and its response head says what a HEAD would have
/// (length, validators, Range support): one request fewer per object, which for small objects
/// is a third of the requests and a round trip to the source.
struct Copy: Sendable {
    let engine: TransferEngine
    let request: TransferRequest
    let events: @Sendable (TransferEvent) -> Void

    /// The source broke where a Range cannot continue it: the transfer starts again from byte 0.
    struct Restart: Error {
        var reason: String
        var detail: String
    }

    /// What a HEAD, a stat or the GET's response head said about the source.
    struct SourceInfo: Sendable {
        var size: Int64?
        var etag: String?
        var lastModified: String?
        var acceptsRanges: Bool

        /// Whether a broken read can continue where it stopped, and a resumed upload can be trusted to
        /// see the same bytes: a known size, Range support, and a validator to send with `If-Range`.
        var isResumable: Bool { size != nil && acceptsRanges && (etag != nil || lastModified != nil) }
        var validator: String? { etag ?? lastModified }

        init(size: Int64? = nil, etag: String? = nil, lastModified: String? = nil, acceptsRanges: Bool) {
            self.size = size
            self.etag = etag
            self.lastModified = lastModified
            self.acceptsRanges = acceptsRanges
        }

        /// What the headers of a 200 (to a HEAD or a GET from byte 0) say; S3 always serves ranges.
        init(headers: ReplyHeaders, alwaysRanges: Bool) {
            self.init(
                size: headers["content-length"].flatMap { Int64($0) }, etag: headers["etag"],
                lastModified: headers["last-modified"],
                acceptsRanges: alwaysRanges || headers["accept-ranges"]?.lowercased() == "bytes")
        }
    }

    var options: TransferOptions { engine.options }

    var client: S3Client {
        engine.s3Client(onRetry: { [events] reason, attempt in events(.retrying(reason: reason, attempt: attempt)) })
    }

    func backoff(afterAttempt attempt: Int) async throws(TransferError) {
        let policy = RetryPolicy(maxAttempts: options.maxAttempts, maxDelay: options.maxBackoff)
        do {
            try await Task.sleep(for: policy.delay(afterAttempt: attempt, random: Double.random(in: 0..<1)))
        } catch {
            throw .cancelled
        }
    }

    func run() async throws -> TransferReport {
        let asksFirst = request.checksDestinationFirst || !options.createOnly
        if asksFirst, case .s3(let bucket, let key) = request.destination,
            let existing = try await client.head(bucket: bucket, key: key)
        {
            // Something is there. It is the object wanted when it holds the manifest's digest; else
            // learn what the source holds (size, ETag) before fetching a byte of it.
            if let expected = request.expectedSHA256, existing.metadata["squall-sha256"] == expected {
                return skipped(existing, sha256: expected)
            }
            let info = try await probe()
            if let sha = skippable(existing, info) { return skipped(existing, sha256: sha) }
            return try await copy(info: info, lead: nil)
        }
        if request.source.isFile {
            let info = try await probe()
            if !asksFirst, let report = try await skippedBeforeParts(info: info) { return report }
            return try await copy(info: info, lead: nil)
        }
        let (info, lead) = try await openSource()
        if !asksFirst {
            do {
                if let report = try await skippedBeforeParts(info: info) {
                    lead.cancel()
                    return report
                }
            } catch {
                lead.cancel()
                throw error
            }
        }
        return try await copy(info: info, lead: lead)
    }

    /// When the destination was not asked first: an object larger than one part is asked about now,
    /// before its upload, since only the multipart upload's completion would meet the object there.
    /// One that fits a single PUT is not: its create-only PUT finds out (``alreadyThere``).
    private func skippedBeforeParts(info: SourceInfo) async throws -> TransferReport? {
        guard case .s3(let bucket, let key) = request.destination else { return nil }
        if let size = info.size, size <= Int64(PartPlan.partSize(requested: options.partSize, objectSize: size)) {
            return nil
        }
        guard let existing = try await client.head(bucket: bucket, key: key) else { return nil }
        return skippable(existing, info).map { skipped(existing, sha256: $0) }
    }

    /// Streams the source to the destination; `lead` is a GET from byte 0 already waiting to be read.
    private func copy(info: SourceInfo, lead: SourceReader?) async throws -> TransferReport {
        let partSize = PartPlan.partSize(requested: options.partSize, objectSize: info.size)
        let ticker = ProgressTicker(
            multi: engine.multi, interval: options.progressInterval, total: info.size, events: events)
        defer { ticker.stop() }
        do {
            switch request.destination {
            case .s3(let bucket, let key):
                return try await toS3(
                    bucket: bucket, key: key, info: info, partSize: partSize, lead: lead, ticker: ticker)
            case .file(let path):
                return try await toFile(path: path, info: info, partSize: partSize, lead: lead, ticker: ticker)
            case .http:
                throw TransferError(
                    code: "bad_destination", message: "an HTTP URL cannot be a destination", isPermanent: true)
            }
        } catch {
            // Whatever failed before a reader took the GET over, it must not stay paused (a finished one
            // is not touched: cancelling it does nothing).
            lead?.cancel()
            throw error
        }
    }

    // MARK: Source

    func probe() async throws(TransferError) -> SourceInfo {
        switch request.source {
        case .http(let url):
            var call = HTTPCall(method: .head, url: url)
            call.sourcePolicy = sourcePolicy
            applyTimeouts(&call)
            // Some servers refuse HEAD (405, 501; presigned GET URLs answer 403): then nothing is known beforehand.
            let reply = try await client.send(call, what: "HEAD \(url)", expected: [400, 403, 405, 501])
            guard (200..<300).contains(reply.status) else { return SourceInfo(acceptsRanges: false) }
            return SourceInfo(headers: reply.headers, alwaysRanges: false)
        case .s3(let bucket, let key):
            let call = client.call(.head, bucket: bucket, key: key)
            let reply = try await client.send(call, what: "HEAD s3://\(bucket)/\(key)")
            return SourceInfo(headers: reply.headers, alwaysRanges: true)
        case .file(let path):
            let size: Int64
            do {
                size = try await engine.onFileThread {
                    let attributes = try FileManager.default.attributesOfItem(atPath: path)
                    guard attributes[.type] as? FileAttributeType == .typeRegular else { throw NotAFile() }
                    return (attributes[.size] as? NSNumber)?.int64Value ?? 0
                }
            } catch is NotAFile {
                throw TransferError(code: "not_a_file", message: "\(path) is not a regular file", isPermanent: true)
            } catch {
                throw TransferError(code: "not_found", message: "\(path): no such file", isPermanent: true)
            }
            return SourceInfo(size: size, acceptsRanges: false)
        }
    }

    private struct NotAFile: Error {}

    /// Starts the GET of the whole source and waits for its response head, which says what a HEAD
    /// would have. The reader takes no byte until the caller configures it.
    func openSource() async throws -> (SourceInfo, SourceReader) {
        let reader = SourceReader(multi: engine.multi)
        reader.fetch(get(from: 0, info: SourceInfo(acceptsRanges: false), into: reader))
        let head = await withTaskCancellationHandler {
            await reader.responseHead()
        } onCancel: {
            reader.cancel()
        }
        let alwaysRanges: Bool
        if case .s3 = request.source { alwaysRanges = true } else { alwaysRanges = false }
        switch head {
        case .started(let headers):
            return (SourceInfo(headers: headers, alwaysRanges: alwaysRanges), reader)
        case .ended(let reply):
            if Task.isCancelled { throw TransferError.cancelled }
            if reader.lastProblem == nil, reply.curlCode == 0, (200..<300).contains(reply.status) {
                // Over before a byte of body: an empty source. The reader's events still hold the end.
                return (SourceInfo(headers: reply.headers, alwaysRanges: alwaysRanges), reader)
            }
            reader.cancel()
            switch RetryPolicy.judge(reply, what: "GET \(request.source)") {
            case .fail(let error):
                throw error
            case .retry(let reason):
                throw Restart(
                    reason: reason, detail: reply.curlCode != 0 ? reply.curlMessage : "status \(reply.status)")
            case .success:
                throw Restart(reason: "source_changed", detail: "\(request.source): \(reader.lastProblem ?? "no body")")
            }
        }
    }

    var sourcePolicy: HTTPCall.SourcePolicy {
        HTTPCall.SourcePolicy(
            addresses: AddressPolicy(allowPrivate: options.allowPrivateSources), maxRedirects: options.maxRedirects)
    }

    func applyTimeouts(_ call: inout HTTPCall) {
        call.connectTimeoutMilliseconds = Int(options.connectTimeout.components.seconds * 1000)
        call.lowSpeedLimit = options.lowSpeedLimit
        call.lowSpeedSeconds = Int(options.lowSpeedTime.components.seconds)
    }

    /// The GET of the source from byte `offset` (with `If-Range`, so a changed source answers 200, not
    /// the wrong bytes), streaming into `reader`.
    func get(from offset: Int64, info: SourceInfo, into reader: SourceReader) -> HTTPCall {
        var call: HTTPCall
        switch request.source {
        case .http(let url):
            call = HTTPCall(method: .get, url: url)
            call.sourcePolicy = sourcePolicy
            applyTimeouts(&call)
        case .s3(let bucket, let key):
            call = client.call(.get, bucket: bucket, key: key)
        case .file(let path):
            call = HTTPCall(method: .get, url: "file://" + S3Client.encode(path, keeping: "/"))
            call.allowsFile = true
        }
        if offset > 0 {
            call.headers.append(("Range", "bytes=\(offset)-"))
            if let validator = info.validator { call.headers.append(("If-Range", validator)) }
        }
        call.sink = .stream(reader)
        return call
    }

    /// Reads the whole source through `reader`, handing each part to `take` in order; a broken read
    /// is continued with a Range when the source allows it, else the transfer restarts.
    func pump(
        _ reader: SourceReader, info: SourceInfo, from offset: Int64, alreadyFetching: Bool = false,
        take: (SourceReader.Part) async throws -> Void
    ) async throws {
        var attempt = 1
        if alreadyFetching {
            // The GET of openSource(): its first bytes wait for this loop.
        } else if case .file(let path) = request.source {
            reader.readFile(path)
        } else {
            reader.fetch(get(from: offset, info: info, into: reader))
        }
        for await event in reader.events {
            switch event {
            case .part(let part):
                try await take(part)
            case .finished:
                return
            case .ended(let reply):
                let fileOK = request.source.isFile && reply.curlCode == 0
                if reader.lastProblem == nil, reply.curlCode == 0, (200..<300).contains(reply.status) || fileOK {
                    if let size = reader.declaredSize, reader.bytesAccepted != size {
                        try await retry(
                            reason: "short_body", detail: "the source sent \(reader.bytesAccepted) of \(size) bytes",
                            attempt: &attempt, reader: reader, info: info)
                    } else {
                        reader.finish()
                    }
                    continue
                }
                if let problem = reader.lastProblem {
                    throw Restart(reason: "source_changed", detail: "\(request.source): \(problem)")
                }
                if reply.status == 416 {
                    // The bytes continued from are past the real end: the declared length was wrong.
                    throw Restart(reason: "short_body", detail: "\(request.source): the range asked is past its end")
                }
                switch RetryPolicy.judge(reply, what: "GET \(request.source)") {
                case .success:
                    reader.finish()
                case .fail(let error):
                    throw error
                case .retry(let reason):
                    try await retry(
                        reason: reason, detail: reply.curlCode != 0 ? reply.curlMessage : "status \(reply.status)",
                        attempt: &attempt, reader: reader, info: info)
                }
            }
        }
        throw TransferError.cancelled
    }

    private func retry(
        reason: String, detail: String, attempt: inout Int, reader: SourceReader, info: SourceInfo
    ) async throws {
        guard info.isResumable, !request.source.isFile else { throw Restart(reason: reason, detail: detail) }
        guard attempt < options.maxAttempts else {
            throw TransferError(
                code: reason,
                message: "GET \(request.source): gave up after \(attempt) attempts (last: \(reason), \(detail))",
                isPermanent: false)
        }
        events(.retrying(reason: reason, attempt: attempt))
        try await backoff(afterAttempt: attempt)
        attempt += 1
        reader.fetch(get(from: reader.bytesAccepted, info: info, into: reader))
    }

    // MARK: Skip

    private func skipped(_ existing: S3Client.ObjectHead, sha256: String) -> TransferReport {
        engine.logger.debug("destination already holds the bytes", metadata: ["destination": "\(request.destination)"])
        return TransferReport(
            outcome: .skipped, bytes: existing.size, etag: existing.etag, sha256: sha256, bytesFetched: 0)
    }

    /// The destination's SHA-256 when it already holds the source's bytes, else nil.
    func skippable(_ existing: S3Client.ObjectHead, _ info: SourceInfo) -> String? {
        guard let sha = existing.metadata["squall-sha256"] else { return nil }
        if let size = info.size, size != existing.size { return nil }
        if let expected = request.expectedSHA256 { return sha == expected ? sha : nil }
        guard info.size != nil else { return nil }
        if let etag = info.etag, let recorded = existing.metadata["squall-source-etag"], Self.bare(etag) != recorded {
            return nil
        }
        return sha
    }

    /// An ETag without its quotes (and weakness mark), as it can be stored in a metadata header.
    /// Every `W/` goes, then every quote (what earlier releases stored, so their records still compare);
    /// done on the bytes, as Foundation's `replacingOccurrences` cost a small job more than its JSON.
    static func bare(_ etag: String) -> String {
        let bytes = Array(etag.utf8)
        var kept = [UInt8]()
        kept.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "W"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "/") {
                index += 2
            } else {
                kept.append(bytes[index])
                index += 1
            }
        }
        kept.removeAll { $0 == UInt8(ascii: "\"") }
        return String(decoding: kept, as: UTF8.self)
    }

    func expectSHA256(_ digest: String) throws(TransferError) {
        if let expected = request.expectedSHA256, expected != digest {
            throw TransferError(
                code: "checksum_mismatch",
                message: "\(request.source): the bytes have sha256 \(digest), the manifest expects \(expected)",
                isPermanent: true)
        }
    }

    // MARK: S3 destination

    func toS3(
        bucket: String, key: String, info: SourceInfo, partSize: Int, lead: SourceReader?, ticker: ProgressTicker
    ) async throws
        -> TransferReport
    {
        let client = self.client
        let destination = "s3://\(bucket)/\(key)"
        var metadata: [String: String] = [:]
        if let etag = info.etag { metadata["squall-source-etag"] = Self.bare(etag) }
        let resumable = info.isResumable && !request.source.isFile && (info.size ?? 0) > Int64(partSize)
        let resume =
            resumable ? try await findResumable(client, bucket: bucket, key: key, info: info, partSize: partSize) : nil
        let firstPart = (resume?.partsDone ?? 0) + 1
        let startOffset = Int64(firstPart - 1) * Int64(partSize)
        let buffers = max(options.concurrency, 2)
        let reader: SourceReader
        if let lead, resume == nil {
            lead.configure(partSize: partSize, buffers: buffers, limit: info.size, checksumsParts: true)
            reader = lead
        } else {
            lead?.cancel()  // a resumed upload reads from its first missing part instead
            let hasher = resume.flatMap { ResumableSHA256(restoring: $0.digestState) } ?? ResumableSHA256()
            reader = SourceReader(
                multi: engine.multi, partSize: partSize, buffers: buffers, firstPart: firstPart,
                startOffset: startOffset, hasher: hasher, limit: info.size)
        }
        ticker.watch(reader)
        let ledger = UploadLedger(resumed: resume)
        let state = UploadState(
            uploadID: resume?.uploadID, multipart: resume != nil || (info.size ?? 0) > Int64(partSize))
        let writer = RecordWriter(client: client, bucket: bucket, key: key)
        if let resume {
            engine.logger.info(
                "resuming an upload left by an earlier run",
                metadata: ["destination": "\(destination)", "transfer.parts_done": "\(resume.partsDone)"])
        }

        func record(partsDone: Int) -> ResumeRecord? {
            guard resumable, let uploadID = state.uploadID, let done = ledger.prefix(upTo: partsDone) else {
                return nil
            }
            return ResumeRecord(
                key: key, uploadID: uploadID, source: request.source.description, sourceETag: info.etag,
                sourceLastModified: info.lastModified, size: info.size ?? 0, partSize: partSize, partsDone: partsDone,
                digestState: done.state, parts: done.parts)
        }

        func startUpload(_ part: SourceReader.Part, uploadID: String) {
            let task = Task {
                do {
                    let etag = try await client.uploadPart(
                        bucket: bucket, key: key, uploadID: uploadID, number: part.number, part: part.buffer,
                        checksum: part.checksum)
                    let prefix = ledger.completed(
                        S3Client.CompletedPart(number: part.number, etag: etag, checksum: part.checksum),
                        state: part.digestState)
                    reader.release(part.buffer)
                    if let prefix, let record = record(partsDone: prefix) { await writer.write(record) }
                } catch {
                    ledger.fail(error)
                    reader.cancel()
                }
            }
            ledger.track(task)
        }

        do {
            try await withTaskCancellationHandler {
                try await pump(reader, info: info, from: startOffset, alreadyFetching: reader === lead) { part in
                    if let error = ledger.error { throw error }
                    guard part.number <= PartPlan.maximumParts else {
                        throw TransferError(
                            code: "too_many_parts",
                            message:
                                "\(request.source) is larger than \(PartPlan.maximumParts) parts of \(partSize) bytes; raise the part size",
                            isPermanent: true)
                    }
                    if !state.multipart && part.number == 1 {
                        state.held = part  // one part so far: a single PUT unless another follows
                        return
                    }
                    state.multipart = true
                    if state.uploadID == nil {
                        // Not cancelled once sent: S3 may create the upload though nobody hears the answer,
                        // and only the answer names it for the abort below.
                        let create = metadata
                        state.uploadID = try await Task.detached {
                            try await client.createMultipartUpload(bucket: bucket, key: key, metadata: create)
                        }.value
                        if let record = record(partsDone: 0) { await writer.write(record) }
                    }
                    if let held = state.held {
                        state.held = nil
                        startUpload(held, uploadID: state.uploadID!)
                    }
                    startUpload(part, uploadID: state.uploadID!)
                }
            } onCancel: {
                reader.cancel()
                ledger.cancelAll()
            }
            let wholeDigest = reader.digest()
            let digest = ResumableSHA256.hex(wholeDigest)
            let total = reader.bytesAccepted
            metadata["squall-sha256"] = digest
            if !state.multipart {
                try expectSHA256(digest)
                // One part is the whole object: its digest, computed anyway, is what SigV4 signs.
                let body: HTTPCall.Body = state.held.map { .part($0.buffer) } ?? .none
                let etag = try await client.put(
                    bucket: bucket, key: key, body: body, sha256: wholeDigest,
                    checksum: state.held?.checksum ?? PartChecksum(), metadata: metadata,
                    conditional: options.createOnly)
                guard let etag else {
                    return try await alreadyThere(client, bucket: bucket, key: key, digest: digest, fetched: total)
                }
                return TransferReport(outcome: .done, bytes: total, etag: etag, sha256: digest, bytesFetched: total)
            }
            let parts = try await ledger.waitForAll()
            try expectSHA256(digest)
            guard let uploadID = state.uploadID else { throw TransferError.cancelled }
            await writer.finish()  // no record write may land after the record is deleted below
            let etag = try await client.completeMultipartUpload(
                bucket: bucket, key: key, uploadID: uploadID, parts: parts, conditional: options.createOnly)
            state.uploadID = nil  // completed: nothing to abort any more
            if resumable { try? await client.delete(bucket: bucket, key: ResumeRecord.key(for: key)) }
            guard let etag else {
                return try await alreadyThere(
                    client, bucket: bucket, key: key, digest: digest, fetched: total - startOffset)
            }
            // The digest is known only now. Metadata cannot change without copying the whole object,
            // so it goes into the object's tags, which a HEAD's x-amz-tagging-count points to.
            var tags = ["squall-sha256": digest]
            if let source = metadata["squall-source-etag"] { tags["squall-source-etag"] = source }
            try await client.putTags(bucket: bucket, key: key, tags: tags)
            let finalETag = etag
            return TransferReport(
                outcome: .done, bytes: total, etag: finalETag, sha256: digest, bytesFetched: total - startOffset)
        } catch {
            ledger.cancelAll()
            reader.cancel()
            if let uploadID = state.uploadID {
                // Runs even when this task is cancelled: an aborted transfer leaves no upload behind.
                await Task.detached {
                    await writer.finish()
                    try? await client.abortMultipartUpload(bucket: bucket, key: key, uploadID: uploadID)
                    if resumable { try? await client.delete(bucket: bucket, key: ResumeRecord.key(for: key)) }
                }.value
            }
            throw error
        }
    }

    /// A create-only write found an object already there: the same bytes are a skip, others an error.
    /// `fetched` is what this run read of the source before it found out.
    func alreadyThere(
        _ client: S3Client, bucket: String, key: String, digest: String, fetched: Int64
    ) async throws(TransferError)
        -> TransferReport
    {
        if let existing = try await client.head(bucket: bucket, key: key), existing.metadata["squall-sha256"] == digest
        {
            return TransferReport(
                outcome: .skipped, bytes: existing.size, etag: existing.etag, sha256: digest, bytesFetched: fetched)
        }
        throw TransferError(
            code: "destination_exists",
            message: "s3://\(bucket)/\(key) was written by someone else meanwhile, with other bytes",
            isPermanent: true)
    }

    /// An upload left by an earlier run that can be continued, or nil (after aborting a stale one).
    func findResumable(
        _ client: S3Client, bucket: String, key: String, info: SourceInfo, partSize: Int
    ) async throws(TransferError) -> ResumeRecord? {
        let recordKey = ResumeRecord.key(for: key)
        guard let bytes = try await client.getSmall(bucket: bucket, key: recordKey) else { return nil }
        guard let record = try? JSONDecoder().decode(ResumeRecord.self, from: Data(bytes)), record.key == key,
            record.version == ResumeRecord.currentVersion
        else {
            // A record this version cannot use (an older engine's, or damaged): its upload is not continued,
            // so it is aborted, not left to be billed as an incomplete upload.
            engine.logger.info(
                "aborting an upload whose resume record cannot be used",
                metadata: ["destination": "s3://\(bucket)/\(key)", "transfer.record_bytes": "\(bytes.count)"])
            if let stale = try? JSONDecoder().decode(ResumeRecord.UploadOnly.self, from: Data(bytes)) {
                try? await client.abortMultipartUpload(bucket: bucket, key: key, uploadID: stale.uploadID)
            }
            try? await client.delete(bucket: bucket, key: recordKey)
            return nil
        }
        let matches = record.matches(
            source: request.source.description, etag: info.etag, lastModified: info.lastModified, size: info.size ?? -1,
            partSize: partSize)
        let why: String
        if !matches {
            why = "the source or the part size changed"
        } else if record.partsDone == 0 {
            why = "no part was recorded as stored"
        } else if ResumableSHA256(restoring: record.digestState) == nil {
            why = "the digest state cannot be restored"
        } else if let stored = try await client.listParts(bucket: bucket, key: key, uploadID: record.uploadID) {
            let byNumber = Dictionary(stored.map { ($0.number, $0) }, uniquingKeysWith: { first, _ in first })
            let intact = record.parts.allSatisfy { part in
                byNumber[part.number]?.etag == part.etag && byNumber[part.number]?.size == Int64(partSize)
            }
            if intact && record.parts.count == record.partsDone { return record }
            why = "S3 no longer holds the recorded parts"
        } else {
            why = "the upload no longer exists"
        }
        engine.logger.info(
            "aborting a stale upload left by an earlier run",
            metadata: [
                "destination": "s3://\(bucket)/\(key)", "transfer.reason": "\(why)",
                "transfer.parts_done": "\(record.partsDone)",
            ])
        try? await client.abortMultipartUpload(bucket: bucket, key: key, uploadID: record.uploadID)
        try? await client.delete(bucket: bucket, key: recordKey)
        return nil
    }

    // MARK: File destination

    func toFile(
        path: String, info: SourceInfo, partSize: Int, lead: SourceReader?, ticker: ProgressTicker
    ) async throws -> TransferReport {
        let temporary = "\(path).squall-partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let file = try await openForWriting(temporary, finalPath: path)
        let reader: SourceReader
        if let lead {
            lead.configure(partSize: partSize, buffers: 2, limit: info.size, checksumsParts: false)
            reader = lead
        } else {
            reader = SourceReader(
                multi: engine.multi, partSize: partSize, buffers: 2, limit: info.size, checksumsParts: false)
        }
        ticker.watch(reader)
        do {
            try await withTaskCancellationHandler {
                try await pump(reader, info: info, from: 0, alreadyFetching: lead != nil) { part in
                    try await engine.onFileThread { try file.write(part.buffer.bytes) }
                    reader.release(part.buffer)
                }
            } onCancel: {
                reader.cancel()
            }
            let digest = ResumableSHA256.hex(reader.digest())
            try expectSHA256(digest)
            try await engine.onFileThread {
                try file.finish()
                guard rename(temporary, path) == 0 else {
                    throw TransferError(
                        code: "file_error", message: "\(path): \(String(cString: strerror(errno)))", isPermanent: true)
                }
            }
            return TransferReport(
                outcome: .done, bytes: reader.bytesAccepted, etag: nil, sha256: digest,
                bytesFetched: reader.bytesAccepted)
        } catch {
            reader.cancel()
            _ = try? await engine.onFileThread {
                file.close()
                unlink(temporary)
            }
            throw error
        }
    }

    private func openForWriting(_ temporary: String, finalPath: String) async throws -> LocalFile {
        do {
            return try await engine.onFileThread { try LocalFile(creating: temporary) }
        } catch {
            throw TransferError(
                code: "file_error", message: "\(finalPath): cannot write beside it (\(error))", isPermanent: true)
        }
    }
}

extension TransferLocation {
    var isFile: Bool {
        if case .file = self { return true }
        return false
    }
}

/// A file being written by the engine's file thread (never by the cooperative pool).
final class LocalFile: @unchecked Sendable {
    private var descriptor: Int32

    init(creating path: String) throws {
        descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw TransferError(
                code: "file_error", message: "\(path): \(String(cString: strerror(errno)))", isPermanent: true)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = Foundation.write(
                descriptor, bytes.baseAddress! + offset, min(bytes.count - offset, Self.writeSize))
            if written < 0 {
                if errno == EINTR { continue }
                throw TransferError(code: "file_error", message: String(cString: strerror(errno)), isPermanent: true)
            }
            offset += written
        }
    }

    /// At most this much per write(2): measured on this machine's kernel (bench/engine), one 8 MiB write
    /// cost several times the system CPU of the same bytes in 256 KiB writes.
    static let writeSize = 256 * 1024

    /// Flushes to disk and closes.
    func finish() throws {
        guard fsync(descriptor) == 0 else {
            throw TransferError(code: "file_error", message: String(cString: strerror(errno)), isPermanent: true)
        }
        close()
    }

    func close() {
        if descriptor >= 0 { _ = Foundation.close(descriptor) }
        descriptor = -1
    }

    deinit { close() }
}

/// The mutable state of one S3 upload while its parts stream (touched by the pump, one step at a time).
final class UploadState: @unchecked Sendable {
    var uploadID: String?
    var multipart: Bool
    var held: SourceReader.Part?

    init(uploadID: String?, multipart: Bool) {
        self.uploadID = uploadID
        self.multipart = multipart
    }
}
