import Testing

@testable import SquallCore

@Suite("Consumer: which cancel orders cover a job")
struct CancellationListTests {
    let t0 = ContinuousClock.now

    func job(id: Int64 = 1, batch: Int64 = 7, enqueuedAt: Int64 = 1_000) -> JobMessage {
        JobMessage(
            jobID: id, batchID: batch, attempt: 1, source: "http://h/a", destination: "s3://b/a",
            enqueuedAt: Timestamp(milliseconds: enqueuedAt))
    }

    func order(_ command: ControlMessage.Command, issuedAt: Int64 = 2_000) -> ControlMessage {
        ControlMessage(command: command, issuedAt: Timestamp(milliseconds: issuedAt))
    }

    @Test("a batch cancel covers the batch's jobs enqueued before it, and no other batch")
    func batchCancel() {
        var list = CancellationList()
        list.record(order(.cancelBatch(batchID: 7)), at: t0)
        #expect(list.covers(job(id: 1, batch: 7)))
        #expect(list.covers(job(id: 2, batch: 7)))
        #expect(!list.covers(job(id: 3, batch: 8)))
    }

    @Test("a job cancel covers that job only")
    func jobCancel() {
        var list = CancellationList()
        list.record(order(.cancelJob(jobID: 2)), at: t0)
        #expect(list.covers(job(id: 2)))
        #expect(!list.covers(job(id: 1)))
    }

    @Test("a job enqueued after the cancel was issued (reset or resubmitted) is not covered")
    func laterJobsRun() {
        var list = CancellationList()
        list.record(order(.cancelBatch(batchID: 7), issuedAt: 2_000), at: t0)
        #expect(list.covers(job(enqueuedAt: 2_000)))
        #expect(!list.covers(job(enqueuedAt: 2_001)))
        #expect(!CancellationList.cancels(order(.cancelBatch(batchID: 7), issuedAt: 2_000), job(enqueuedAt: 2_001)))
        #expect(CancellationList.cancels(order(.cancelBatch(batchID: 7), issuedAt: 2_000), job(enqueuedAt: 1_999)))
    }

    @Test("orders are forgotten after the retention")
    func retention() {
        var list = CancellationList(retention: .seconds(60))
        list.record(order(.cancelBatch(batchID: 7)), at: t0)
        list.record(order(.cancelJob(jobID: 9)), at: t0 + .seconds(61))
        #expect(list.count == 1)
        #expect(!list.covers(job(batch: 7)))
        #expect(list.covers(job(id: 9)))
    }
}

@Suite("Consumer: result packets from transfer outcomes")
struct JobConclusionTests {
    let job = JobMessage(
        jobID: 42, batchID: 7, attempt: 3, source: "http://h/a", destination: "s3://b/a",
        enqueuedAt: Timestamp(milliseconds: 1))
    let report = TransferReport(outcome: .done, bytes: 10, etag: "\"e\"", sha256: "ab", bytesFetched: 10)

    func packet(_ outcome: ResultPacket.Outcome, _ conclusion: JobConclusion?) -> ResultPacket {
        JobConclusion.resultPacket(
            for: job, node: "n1", outcome: outcome, conclusion: conclusion, duration: .milliseconds(1_234),
            timestamp: Timestamp(milliseconds: 99))
    }

    @Test("a copy is done with its bytes, ETag, SHA-256 and duration, under the job's attempt")
    func done() {
        let conclusion = JobConclusion.report(report)
        #expect(conclusion.outcome == .done)
        #expect(conclusion.bytes == 10)
        let result = packet(conclusion.outcome, conclusion)
        #expect(
            result
                == ResultPacket(
                    jobID: 42, attempt: 3, node: "n1", timestamp: Timestamp(milliseconds: 99), outcome: .done,
                    bytes: 10, etag: "\"e\"", sha256: "ab", durationMilliseconds: 1_234))
    }

    @Test("an object already there is skipped, with its size and checksum")
    func skipped() {
        var existing = report
        existing.outcome = .skipped
        existing.bytesFetched = 0
        let conclusion = JobConclusion.report(existing)
        #expect(conclusion.outcome == .skipped)
        #expect(packet(.skipped, conclusion).sha256 == "ab")
        #expect(packet(.skipped, conclusion).bytes == 10)
    }

    @Test("an engine error is failed with its code and message, and no bytes")
    func failed() {
        let conclusion = JobConclusion.error(
            TransferError(code: "http_404", message: "GET http://h/a: 404", isPermanent: true))
        #expect(conclusion.outcome == .failed)
        #expect(conclusion.bytes == 0)
        let result = packet(.failed, conclusion)
        #expect(result.errorCode == "http_404")
        #expect(result.errorMessage == "GET http://h/a: 404")
        #expect(result.etag == nil && result.sha256 == nil)
    }

    @Test("the engine's cancelled error, or a failure that raced a cancel, is reported cancelled")
    func cancelled() {
        #expect(JobConclusion.error(.cancelled).outcome == .cancelled)
        let raced = packet(.cancelled, .error(TransferError(code: "http_503", message: "m", isPermanent: false)))
        #expect(raced.outcome == .cancelled)
        #expect(raced.errorCode == "cancelled")
        #expect(packet(.cancelled, nil).errorCode == "cancelled")
    }

    @Test("only a first delivery of a first attempt into a fresh destination leaves out the destination HEAD")
    func destinationHeadOnlyWhenItCanMatter() throws {
        var fresh = job
        fresh.attempt = 1
        fresh.freshDestination = true
        #expect(!(try fresh.transferRequest(redelivered: false).checksDestinationFirst))
        #expect(try fresh.transferRequest(redelivered: true).checksDestinationFirst, "a redelivery may find its object")
        var retried = fresh
        retried.attempt = 2
        #expect(try retried.transferRequest(redelivered: false).checksDestinationFirst, "an earlier attempt may have")
        var written = fresh
        written.freshDestination = false
        #expect(try written.transferRequest(redelivered: false).checksDestinationFirst, "another job wrote there")
    }

    @Test("a job whose source has a scheme the engine refuses fails with unsupported_scheme")
    func badScheme() {
        var bad = job
        bad.source = "ftp://example.com/a"
        #expect(throws: TransferError.self) { try bad.transferRequest(redelivered: false) }
        do {
            _ = try bad.transferRequest(redelivered: false)
        } catch {
            #expect(error.code == "unsupported_scheme")
        }
        #expect((try? job.transferRequest(redelivered: false))?.source == .http("http://h/a"))
    }
}

@Suite("Consumer settings from flags and environment")
struct ConsumerOptionsTests {
    func resolve(_ arguments: [String], _ environment: [String: String] = [:]) throws -> ConsumerSettings {
        try ConsumerOptions.parse(arguments).resolve(environment: environment)
    }

    @Test("defaults: 4 at once, 25 s grace, 25 min ack deadline, 5 s heartbeat, 8 MiB parts, no S3 request limit")
    func defaults() throws {
        let settings = try resolve([])
        #expect(settings.concurrency == 4)
        #expect(settings.gracePeriod == .seconds(25))
        #expect(settings.abortAfter == .seconds(22))
        #expect(settings.ackDeadline == .seconds(1500))
        #expect(settings.heartbeatInterval == .seconds(5))
        #expect(settings.partSize == 8 << 20)
        #expect(settings.maxS3Requests == 0)
    }

    @Test("the S3 request limit comes from the flag or SQUALL_MAX_S3_REQUESTS, 0 meaning no limit")
    func maxS3Requests() throws {
        #expect(try resolve([], ["SQUALL_MAX_S3_REQUESTS": "3"]).maxS3Requests == 3)
        #expect(
            try resolve(["--max-s3-requests", "0"], ["SQUALL_MAX_S3_REQUESTS": "3"]).maxS3Requests == 0)
        #expect(
            throws: ConfigurationError(
                setting: "SQUALL_MAX_S3_REQUESTS", reason: "\"-1\" is not a number in 0...1000 (0: no limit)")
        ) { try resolve([], ["SQUALL_MAX_S3_REQUESTS": "-1"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["--max-s3-requests", "many"]) }
    }

    @Test("a flag wins over its variable; seconds may be fractional")
    func flagsWin() throws {
        let settings = try resolve(
            ["--concurrency", "8", "--grace-period", "2.5"],
            [
                "SQUALL_CONSUMER_CONCURRENCY": "2", "SQUALL_GRACE_PERIOD": "9", "SQUALL_ACK_DEADLINE": "45",
                "SQUALL_PART_SIZE": "16MiB",
            ])
        #expect(settings.concurrency == 8)
        #expect(settings.gracePeriod == .milliseconds(2_500))
        #expect(settings.abortAfter == .milliseconds(1_250))
        #expect(settings.ackDeadline == .seconds(45))
        #expect(settings.partSize == 16 << 20)
    }

    @Test("a bad value names its setting")
    func badValues() throws {
        #expect(throws: ConfigurationError(setting: "--concurrency", reason: "\"0\" is not a number in 1...1000")) {
            try resolve(["--concurrency", "0"])
        }
        #expect(throws: ConfigurationError.self) { try resolve([], ["SQUALL_GRACE_PERIOD": "soon"]) }
        #expect(throws: ConfigurationError.self) { try resolve([], ["SQUALL_PART_SIZE": "1MiB"]) }
    }
}
